"""Shared pieces of the heads: input checks and the normalized cosine matrix."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def check_embeddings_labels(embeddings: Tensor, labels: Tensor | None, dim: int, *, required: bool) -> None:
    """ValueError unless embeddings is (N, dim) and labels (N,) integers (labels optional when not required)."""
    if embeddings.dim() != 2 or embeddings.shape[1] != dim:
        raise ValueError(f"embeddings must have shape (N, {dim}); got {tuple(embeddings.shape)}.")
    if labels is None:
        if required:
            raise ValueError("labels are required by margin heads (the margin is applied to the true class).")
        return
    if labels.dim() != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(
            f"labels must have shape (N,) = ({embeddings.shape[0]},); got {tuple(labels.shape)}. "
            "Pass integer class indices, not one-hot vectors."
        )
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer class indices; got dtype {labels.dtype}.")


def at_least_fp32(t: Tensor) -> Tensor:
    """Half/bfloat16 → float32, else unchanged: acos near ±1 and the clamp 1 − 1e-7 need ≥ fp32 precision."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def cosine_matrix(embeddings: Tensor, weight: Tensor) -> Tensor:
    """cos θ_ij = x̂_i · ŵ_j in ≥ float32 (margin heads also run outside autocast, for the same reason)."""
    return F.linear(F.normalize(at_least_fp32(embeddings), dim=1), F.normalize(at_least_fp32(weight), dim=1))


def init_class_weight(weight: Tensor) -> None:
    """Rows uniform in [−1, 1] then unit-normalized (as the AdaFace/insightface kernels start)."""
    with torch.no_grad():
        weight.uniform_(-1.0, 1.0)
        weight.copy_(F.normalize(weight, dim=1))
