"""IResNet (insightface's arcface_torch definition) — DESIGN.md "Face-track details".

Stem conv3×3(64)-BN-PReLU, no max-pool; four stages (64, 128, 256, 512 channels, each starting with stride
2, so 112×112 → 7×7) of blocks BN → conv3×3 → BN → PReLU → conv3×3(stride) → BN, plus a 1×1 conv + BN
shortcut on shape change; head BN2d → flatten → Dropout → Linear(512·7·7, d) → BatchNorm1d(d) with its
weight frozen at 1. IResNet-50 = [3, 4, 14, 3], IResNet-100 = [3, 13, 30, 3]; with d = 512 they have
43.6M and 65.2M parameters as insightface's model zoo lists (tests check the exact counts).
"""

from __future__ import annotations

import torch.nn as nn
from torch import Tensor

LAYERS = {
    "iresnet18": (2, 2, 2, 2),
    "iresnet34": (3, 4, 6, 3),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
}


class _IBasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(c_in, eps=1e-5),
            nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c_out, eps=1e-5),
            nn.PReLU(c_out),
            nn.Conv2d(c_out, c_out, 3, stride, 1, bias=False),
            nn.BatchNorm2d(c_out, eps=1e-5),
        )
        self.shortcut = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out, eps=1e-5))
            if stride != 1 or c_in != c_out
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + (x if self.shortcut is None else self.shortcut(x))


class IResNet(nn.Module):
    """Face-embedding IResNet for 112×112 inputs; outputs ``embedding_dim``-d (un-normalized) embeddings."""

    def __init__(
        self,
        layers: tuple[int, ...],
        embedding_dim: int = 512,
        dropout: float = 0.0,
        in_channels: int = 3,
        input_size: int = 112,
    ) -> None:
        super().__init__()
        if input_size % 16 != 0:
            raise ValueError(
                f"IResNet input_size={input_size} must be a multiple of 16 (112 for face crops)."
            )
        widths = (64, 128, 256, 512)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64, eps=1e-5), nn.PReLU(64)
        )
        blocks: list[nn.Module] = []
        c_in = 64
        for width, n in zip(widths, layers, strict=True):
            for i in range(n):
                blocks.append(_IBasicBlock(c_in, width, 2 if i == 0 else 1))
                c_in = width
        self.blocks = nn.Sequential(*blocks)
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.dropout = nn.Dropout(dropout)
        spatial = input_size // 16
        self.fc = nn.Linear(512 * spatial * spatial, embedding_dim)
        self.features = nn.BatchNorm1d(embedding_dim, eps=1e-5)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.bn2(self.blocks(self.stem(x)))
        return self.features(self.fc(self.dropout(x.flatten(1))))
