"""Adaptive Adversarial Cross-Entropy (AACE) — DESIGN.md "AACE target", FlatFace eq. 11.

τ_ij = 0 for j = y_i and τ_ij = q_ij / (1 − q_iy) for j ≠ y_i, built under stop-gradient; then
L_AACE = −(1/N) Σ_i Σ_j τ_ij log q_ij.

Value form: the **cross-entropy form** above (FlatFace eq. 11), not the authors' KL(τ‖q) = −log(1 − q_y).
Both have the same gradient w.r.t. the logits, q − τ; ours is larger by the entropy H(τ).

τ is computed as ``softmax`` over the logits with the true class masked to −inf — mathematically equal to
q_j / (1 − q_y) but it never divides by zero, even when q_y rounds to 1 in float32 (1 − q_y == 0).
As q_y → 1 the loss grows (≈ logit margin) and its logit gradient tends to (1 at y, −τ elsewhere), of norm
≥ 1, while the CE gradient q − onehot(y) → 0: the papers' mechanism (tested in tests/test_core_losses.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._validate import check_logits_target


@torch.no_grad()
def aace_target(logits: Tensor, target: Tensor) -> Tensor:
    """τ: softmax over the wrong-class logits (true class masked to −inf), detached (stop-gradient)."""
    masked = logits.detach().scatter(1, target.unsqueeze(1), float("-inf"))
    return torch.softmax(masked, dim=1)


def aace_loss(logits: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Mean AACE loss −(1/N) Σ_i Σ_j τ_ij log q_ij (cross-entropy value form, FlatFace eq. 11).

    ``logits``: (N, C) float; ``target``: (N,) integer labels. ``reduction``: "mean" | "sum" | "none".
    Implemented as torch's soft-target cross-entropy with τ as the target — one fused call, so it costs
    little more than plain CE; the gradient w.r.t. the logits is (q − τ)/N.
    """
    check_logits_target(logits, target)
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction={reduction!r} is not one of 'mean', 'sum', 'none'.")
    # float32 even under bf16 autocast: τ rounded to bf16 would no longer sum to 1 and bias the gradient
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    return F.cross_entropy(logits, aace_target(logits, target), reduction=reduction)
