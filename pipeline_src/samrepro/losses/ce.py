"""Cross-entropy with the same input checks as the other losses (a mismatched label shape is a ValueError)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ._validate import check_logits_target


def cross_entropy(logits: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """``F.cross_entropy`` on (N, C) logits and (N,) integer labels; ValueError on other shapes."""
    check_logits_target(logits, target)
    return F.cross_entropy(logits, target, reduction=reduction)
