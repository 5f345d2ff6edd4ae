"""PyramidNet (Han et al. 2017) for CIFAR-size inputs: additive widening, basic or bottleneck blocks.

Channels grow by α/N per block (N = total blocks; N/3 per stage = (depth − 2)/6 basic or (depth − 2)/9
bottleneck). Blocks BN-conv-BN-ReLU-conv-BN (bottleneck: 1×1, 3×3, 1×1 ×4); no ReLU after the addition;
shortcut = 2×2 average pooling when strided, zero-padded channels (no parameters). Published sizes:
PyramidNet-110 α=48 basic 1.7M, PyramidNet-272 α=200 bottleneck 26.0M (tests check both).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .wrn import _init


class _Block(nn.Module):
    def __init__(self, c_in: int, planes: int, stride: int, bottleneck: bool) -> None:
        super().__init__()
        self.c_out = planes * (4 if bottleneck else 1)
        if bottleneck:
            layers = [
                nn.BatchNorm2d(c_in), nn.Conv2d(c_in, planes, 1, bias=False),
                nn.BatchNorm2d(planes), nn.ReLU(inplace=True),
                nn.Conv2d(planes, planes, 3, stride, 1, bias=False),
                nn.BatchNorm2d(planes), nn.ReLU(inplace=True),
                nn.Conv2d(planes, self.c_out, 1, bias=False), nn.BatchNorm2d(self.c_out),
            ]  # fmt: skip
        else:
            layers = [
                nn.BatchNorm2d(c_in), nn.Conv2d(c_in, planes, 3, stride, 1, bias=False),
                nn.BatchNorm2d(planes), nn.ReLU(inplace=True),
                nn.Conv2d(planes, planes, 3, 1, 1, bias=False), nn.BatchNorm2d(planes),
            ]  # fmt: skip
        self.body = nn.Sequential(*layers)
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        y = self.body(x)
        s = F.avg_pool2d(x, 2, 2, ceil_mode=True) if self.stride != 1 else x
        pad = y.shape[1] - s.shape[1]
        if pad > 0:
            s = torch.cat([s, s.new_zeros(s.shape[0], pad, s.shape[2], s.shape[3])], dim=1)
        return y + s


class PyramidNet(nn.Module):
    """PyramidNet-depth (α = ``alpha``); ``bottleneck`` picks the block type."""

    def __init__(
        self,
        depth: int = 110,
        alpha: float = 48,
        num_classes: int = 10,
        bottleneck: bool = False,
        in_channels: int = 3,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        per = 9 if bottleneck else 6
        if (depth - 2) % per != 0 or depth < 2 + per:
            raise ValueError(
                f"PyramidNet depth={depth} must be {per}n + 2 for {'bottleneck' if bottleneck else 'basic'} blocks "
                f"(e.g. {'164, 272' if bottleneck else '110, 272'})."
            )
        if alpha <= 0:
            raise ValueError(f"PyramidNet alpha={alpha} must be > 0 (the total widening, e.g. 48 or 200).")
        n = (depth - 2) // per
        add = alpha / (3 * n)
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        width, c_in = 16.0, 16
        blocks: list[nn.Module] = []
        for stage in range(3):
            for i in range(n):
                width += add
                block = _Block(c_in, int(round(width)), 2 if (stage > 0 and i == 0) else 1, bottleneck)
                blocks.append(block)
                c_in = block.c_out
        self.blocks = nn.Sequential(*blocks)
        self.bn_final = nn.BatchNorm2d(c_in)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(c_in, num_classes)
        _init(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.blocks(self.bn1(self.conv1(x)))
        x = F.adaptive_avg_pool2d(F.relu(self.bn_final(x)), 1).flatten(1)
        return self.fc(self.dropout(x))
