"""Plain softmax classifier head with the margin heads' signature (classification setups)."""

from __future__ import annotations

import torch.nn as nn
from torch import Tensor

from ._common import check_embeddings_labels


class LinearHead(nn.Module):
    """logits = x Wᵀ + b; ``labels`` are accepted (and checked when given) but do not change the logits."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, num_classes)

    @property
    def weight(self) -> nn.Parameter:
        return self.fc.weight

    def forward(self, embeddings: Tensor, labels: Tensor | None = None) -> Tensor:
        check_embeddings_labels(embeddings, labels, self.fc.in_features, required=False)
        return self.fc(embeddings)
