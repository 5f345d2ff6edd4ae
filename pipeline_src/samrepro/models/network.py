"""Backbone + optional head behind one call ``net(x, y) -> logits`` (docs/ARCHITECTURE.md Part A, "Network")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch.nn as nn
from torch import Tensor

if TYPE_CHECKING:
    from ..optim.setups import Setup


class Network(nn.Module):
    """forward(x, y=None) = head(backbone(x), y) when there is a head, else backbone(x).

    Keeping the head inside one module means the optimizer (and SAM's ε) covers the class-weight matrix too
    (FlatFace perturbs it), and checkpoints hold both.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        z = self.backbone(x)
        return z if self.head is None else self.head(z, y)

    def embed(self, x: Tensor) -> Tensor:
        """Backbone output (the embedding used for face verification)."""
        return self.backbone(x)

    @classmethod
    def build(
        cls,
        setup: Setup,
        model_name: str,
        num_classes: int,
        embedding_dim: int | None = None,
        model_kw: dict[str, Any] | None = None,
        head_kw: dict[str, Any] | None = None,
    ) -> Network:
        """Classification: backbone → num_classes logits, no head. Face: backbone → embedding_dim, margin head."""
        from .. import heads
        from . import build as build_model

        model_kw, head_kw = dict(model_kw or {}), dict(head_kw or {})
        if setup.task == "classification":
            return cls(build_model(model_name, num_classes, **model_kw))
        if setup.task != "face":
            raise ValueError(f"setup {setup.name!r}: task={setup.task!r} is not classification | face.")
        if not embedding_dim or embedding_dim < 1:
            raise ValueError(
                f"setup {setup.name!r} is a face setup: set embedding_dim (e.g. 512); got {embedding_dim!r}."
            )
        backbone = build_model(model_name, embedding_dim, **model_kw)
        return cls(backbone, heads.build(setup.head, embedding_dim, num_classes, **head_kw))
