"""Input checks shared by the losses and the margin heads (docs/ARCHITECTURE.md: errors are ValueErrors naming the fix)."""

from __future__ import annotations

from torch import Tensor


def check_logits_target(logits: Tensor, target: Tensor, *, name: str = "logits") -> None:
    """Raise ValueError unless ``logits`` is (N, C) with C ≥ 2 and ``target`` is (N,) integer labels.

    Why: a (N, 1) or one-hot target silently broadcasts in hand-written losses; we refuse it instead.
    Label range is not checked here (it would need a device sync on GPU); torch's gather raises on it.
    """
    if logits.dim() != 2:
        raise ValueError(
            f"{name} must have shape (N, C); got {tuple(logits.shape)}. Flatten the batch first."
        )
    if logits.shape[1] < 2:
        raise ValueError(f"{name} needs at least 2 classes (C ≥ 2); got C={logits.shape[1]}.")
    if target.dim() != 1 or target.shape[0] != logits.shape[0]:
        raise ValueError(
            f"target must have shape (N,) = ({logits.shape[0]},) of class indices; got {tuple(target.shape)}. "
            "Pass integer labels, not one-hot vectors."
        )
    if target.dtype.is_floating_point or target.dtype == bool or target.is_complex():
        raise ValueError(
            f"target must hold integer class indices; got dtype {target.dtype}. Use target.long()."
        )
