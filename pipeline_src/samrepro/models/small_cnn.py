"""A small, fast CNN for the embedded CPU study (8×8 digits; also 28×28, 32×32, 112×112 inputs).

conv3×3(32)-BN-ReLU → conv3×3(64, stride 2)-BN-ReLU → conv3×3(128, stride 2)-BN-ReLU → adaptive avg-pool to
2×2 → dropout → linear. Inputs larger than 32×32 are first average-pooled to 32×32 (parameter-free), so a
112×112 face crop costs about what a CIFAR image does; the same weights work for every size.
"""

from __future__ import annotations

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


def _conv(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)
    )


class SmallCNN(nn.Module):
    """About 0.16M parameters at width 32; ``num_classes`` outputs (logits, or an embedding for face heads)."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 32, dropout: float = 0.0) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"small_cnn width={width} must be ≥ 1.")
        self.features = nn.Sequential(
            _conv(in_channels, width, 1), _conv(width, 2 * width, 2), _conv(2 * width, 4 * width, 2)
        )
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(4 * width * 4, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"small_cnn expects (N, C, H, W) images; got shape {tuple(x.shape)}.")
        if x.shape[-1] > 32 or x.shape[-2] > 32:
            x = F.adaptive_avg_pool2d(x, 32)
        x = F.adaptive_avg_pool2d(self.features(x), 2).flatten(1)
        return self.fc(self.dropout(x))
