"""AdaFace margin head (Kim et al. 2022) — DESIGN.md "Margin heads", "Face-track details" (reference behaviour).

With n = clip(‖x‖, 0.001, 100) detached, μ, σ the EMA of the batch mean/std of n (start 20 and 100,
μ ← t_α·mean + (1 − t_α)·μ, same for σ, updated *before* use as in the reference), and
n̂ = clip(h·(n − μ)/(σ + 1e-3), −1, 1):

    g_angle = −m·n̂,  g_add = m·n̂ + m,
    logit_y = s·(cos(clip(θ_y + g_angle, 1e-3, π − 1e-3)) − g_add),   logit_j = s·cos θ_j  (j ≠ y),

θ from the cosine clamped to ±(1 − 1e-3). The EMA is updated only in training mode and only while
``update_stats`` is True — the SAM step turns it off for the perturbed second pass (DESIGN "Second pass").
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor

from ._common import at_least_fp32, check_embeddings_labels, cosine_matrix, init_class_weight


class AdaFace(nn.Module):
    """Quality-adaptive margin from the feature norm; owns ``.weight`` (num_classes × embedding_dim)."""

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        s: float = 64.0,
        m: float = 0.4,
        h: float = 0.33,
        t_alpha: float = 0.01,
        eps: float = 1e-3,
    ) -> None:
        super().__init__()
        if s <= 0 or m < 0 or h <= 0 or not 0 < t_alpha <= 1:
            raise ValueError(
                f"AdaFace needs s > 0, m ≥ 0, h > 0, 0 < t_alpha ≤ 1; got s={s}, m={m}, h={h}, t_alpha={t_alpha}."
            )
        self.embedding_dim, self.num_classes = embedding_dim, num_classes
        self.s, self.m, self.h, self.t_alpha, self.eps = s, m, h, t_alpha, eps
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        init_class_weight(self.weight)
        self.register_buffer("batch_mean", torch.full((1,), 20.0))
        self.register_buffer("batch_std", torch.full((1,), 100.0))
        self.update_stats = True  # the SAM step clears it during the perturbed pass

    @torch.no_grad()
    def _update_ema(self, norms: Tensor) -> None:
        a = self.t_alpha
        self.batch_mean.mul_(1 - a).add_(a * norms.mean())
        if norms.numel() > 1:  # unbiased std of one sample is NaN: keep σ rather than poison it
            self.batch_std.mul_(1 - a).add_(a * norms.std())

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        check_embeddings_labels(embeddings, labels, self.embedding_dim, required=True)
        with torch.autocast(embeddings.device.type, enabled=False):
            norms = at_least_fp32(embeddings.detach()).norm(dim=1).clamp(0.001, 100.0)
            if self.training and self.update_stats:
                self._update_ema(norms)
            n_hat = (
                (norms - self.batch_mean.to(norms.dtype))
                / (self.batch_std.to(norms.dtype) + self.eps)
                * self.h
            ).clamp(-1.0, 1.0)
            cos = cosine_matrix(embeddings, self.weight).clamp(-1.0 + self.eps, 1.0 - self.eps)
            idx = labels.unsqueeze(1)
            theta_y = torch.acos(cos.gather(1, idx)).squeeze(1)
            g_angle, g_add = -self.m * n_hat, self.m * n_hat + self.m
            target = torch.cos((theta_y + g_angle).clamp(self.eps, math.pi - self.eps)) - g_add
            return cos.scatter(1, idx, target.unsqueeze(1)) * self.s

    def extra_repr(self) -> str:
        return f"embedding_dim={self.embedding_dim}, num_classes={self.num_classes}, s={self.s}, m={self.m}, h={self.h}"
