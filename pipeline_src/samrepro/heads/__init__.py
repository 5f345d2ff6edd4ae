"""samrepro.heads — classifier heads with signature forward(embeddings, labels) -> logits and a `.weight`."""

from __future__ import annotations

from typing import Any

from torch import nn

from .adaface import AdaFace
from .arcface import ArcFace
from .linear import LinearHead

HEADS: dict[str, type[nn.Module]] = {"linear": LinearHead, "arcface": ArcFace, "adaface": AdaFace}


def build(name: str, embedding_dim: int, num_classes: int, **kw: Any) -> nn.Module:
    """Head ``name`` ("linear" | "arcface" | "adaface") mapping embedding_dim features to num_classes logits."""
    if name not in HEADS:
        raise ValueError(f"head={name!r} is unknown; use one of {', '.join(HEADS)}.")
    try:
        return HEADS[name](embedding_dim, num_classes, **kw)
    except TypeError as exc:
        raise ValueError(f"bad keyword for head {name!r}: {exc}") from None


__all__ = ["AdaFace", "ArcFace", "HEADS", "LinearHead", "build"]
