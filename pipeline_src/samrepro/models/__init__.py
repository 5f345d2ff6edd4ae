"""samrepro.models — backbones by name (docs/ARCHITECTURE.md Part A) and the Network wrapper.

Classification nets output ``num_classes`` logits; embedding nets (iresnet*, small_cnn as a face backbone)
output ``num_classes``-d embeddings — pass the embedding dimension as ``num_classes``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch.nn as nn

from .iresnet import LAYERS, IResNet
from .network import Network
from .pyramidnet import PyramidNet
from .small_cnn import SmallCNN
from .wrn import WideResNet


def _wrn28_10(num_classes: int, *, dropout: float = 0.0, in_channels: int = 3) -> nn.Module:
    return WideResNet(28, 10, num_classes, dropout, in_channels)


def _wrn(
    num_classes: int, *, depth: int = 28, width: int = 10, dropout: float = 0.0, in_channels: int = 3
) -> nn.Module:
    return WideResNet(depth, width, num_classes, dropout, in_channels)


def _pyramidnet(
    num_classes: int,
    *,
    depth: int = 110,
    alpha: float = 48,
    bottleneck: bool = False,
    in_channels: int = 3,
    dropout: float = 0.0,
) -> nn.Module:
    return PyramidNet(depth, alpha, num_classes, bottleneck, in_channels, dropout)


def _resnet50(num_classes: int, *, in_channels: int = 3, dropout: float = 0.0) -> nn.Module:
    """torchvision's ResNet-50, randomly initialised (weights=None); optional dropout before the classifier.

    torchvision is imported here, not at module level: it costs seconds per job and only this net needs it."""
    import torchvision

    net = torchvision.models.resnet50(weights=None, num_classes=num_classes)
    if in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    if dropout > 0:
        net.fc = nn.Sequential(nn.Dropout(dropout), net.fc)
    return net


def _iresnet(name: str) -> Callable[..., nn.Module]:
    def make(
        num_classes: int, *, dropout: float = 0.0, in_channels: int = 3, input_size: int = 112
    ) -> nn.Module:
        return IResNet(LAYERS[name], num_classes, dropout, in_channels, input_size)

    make.__name__ = f"_{name}"
    return make


def _small_cnn(num_classes: int, *, in_channels: int = 3, width: int = 32, dropout: float = 0.0) -> nn.Module:
    return SmallCNN(num_classes, in_channels, width, dropout)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "wrn28_10": _wrn28_10,
    "wrn": _wrn,
    "pyramidnet": _pyramidnet,
    "resnet50": _resnet50,
    **{name: _iresnet(name) for name in LAYERS},
    "small_cnn": _small_cnn,
}


def build(name: str, num_classes: int, **kw: Any) -> nn.Module:
    """Backbone ``name`` with ``num_classes`` outputs; ValueError for an unknown name or keyword."""
    if name not in MODELS:
        raise ValueError(f"model={name!r} is unknown; use one of {', '.join(MODELS)}.")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(
            f"num_classes={num_classes!r} must be a positive integer (embedding dim for face backbones)."
        )
    fn = MODELS[name]
    allowed = [p for p in inspect.signature(fn).parameters if p != "num_classes"]
    unknown = sorted(set(kw) - set(allowed))
    if unknown:
        raise ValueError(
            f"model {name!r} does not take {', '.join(unknown)}; its options are {', '.join(allowed)}."
        )
    return fn(num_classes, **kw)


def count_parameters(net: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with requires_grad)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad or not trainable_only)


__all__ = [
    "MODELS",
    "IResNet",
    "Network",
    "PyramidNet",
    "SmallCNN",
    "WideResNet",
    "build",
    "count_parameters",
]
