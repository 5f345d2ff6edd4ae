"""ArcFace margin head (Deng et al. 2019; FlatFace eq. 3) — DESIGN.md "Margin heads", "Face-track details".

logit_ij = s·cos θ_ij for j ≠ y_i and s·cos(θ_iy + m) for the true class, θ = acos(clamp(cos θ)).
The margin keeps its full gradient (insightface's current code applies it under no_grad; we don't).
Where θ_y + m would pass π, cos(θ_y + m) turns and *rises* with θ_y, so gradient descent pushes the
embedding to the far side of its own class (seen: a from-scratch digits run collapsed to 0 % train accuracy
and chance verification). As insightface's reference ArcFace does, the target logit there is
s·(cos θ_y − m·sin m), which keeps it decreasing in θ_y over all of [0, π].
The class-weight matrix ``.weight`` (num_classes × embedding_dim) is a parameter, so SAM perturbs it (FlatFace).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor

from ._common import check_embeddings_labels, cosine_matrix, init_class_weight


class ArcFace(nn.Module):
    """Additive angular margin: s·cos(θ_y + m) on the true class, s·cos θ elsewhere."""

    def __init__(
        self, embedding_dim: int, num_classes: int, s: float = 64.0, m: float = 0.5, eps: float = 1e-7
    ) -> None:
        super().__init__()
        if s <= 0 or m < 0:
            raise ValueError(f"ArcFace needs s > 0 and m ≥ 0; got s={s}, m={m}.")
        self.embedding_dim, self.num_classes, self.s, self.m, self.eps = embedding_dim, num_classes, s, m, eps
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        init_class_weight(self.weight)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        check_embeddings_labels(embeddings, labels, self.embedding_dim, required=True)
        with torch.autocast(embeddings.device.type, enabled=False):
            cos = cosine_matrix(embeddings, self.weight).clamp(-1.0 + self.eps, 1.0 - self.eps)
            idx = labels.unsqueeze(1)
            cos_y = cos.gather(1, idx)
            theta_y = torch.acos(cos_y)
            past_pi = theta_y + self.m > torch.pi
            target = torch.where(past_pi, cos_y - self.m * math.sin(self.m), torch.cos(theta_y + self.m))
            return cos.scatter(1, idx, target) * self.s

    def extra_repr(self) -> str:
        return f"embedding_dim={self.embedding_dim}, num_classes={self.num_classes}, s={self.s}, m={self.m}"
