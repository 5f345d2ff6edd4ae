"""Batched image augmentation on tensors, so that data loading never limits training speed.

The classic per-image torchvision pipeline costs tens of microseconds of Python per image; for the small
images of the studies (8×8 digits, 28×28 Fashion-MNIST, 32×32 CIFAR/Food101) that is slower than a
training step of a small net on a CPU. These transforms act on a whole batch [N, C, H, W] at once and
reproduce the recipes of DESIGN.md ("Recipes"): random crop with zero padding, horizontal flip,
normalization, then Cutout (davda54/sam's Cutout(16, p=0.5), applied after normalization).

Randomness comes from torch's global generator of the batch's device (or an explicit one), so
``torch.manual_seed`` and the DataLoader's per-worker seeding make runs repeatable. Every step works on the
batch's device and none reads a value back to the host: a batch held on a GPU (the engine's device-resident
path, `data_on_device`) is augmented there without a single host synchronisation, and on the CPU the same call
gives exactly the batch the in-process loader gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
FASHION_MNIST_MEAN = (0.2860,)
FASHION_MNIST_STD = (0.3530,)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FACE_MEAN = (0.5, 0.5, 0.5)  # (x/255 - 0.5) / 0.5, DESIGN.md "Face-track details"
FACE_STD = (0.5, 0.5, 0.5)


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero-pad every image by ``padding`` and take a random crop of the original size (one offset per image).

    Two ``gather`` calls (rows, then columns) instead of advanced indexing: about twice as fast on a CPU,
    and it works on uint8 so the crop runs before the float conversion (4× less memory traffic)."""
    if padding <= 0:
        return x
    n, c, h, w = x.shape
    dev = _rng_device(x, generator)
    xp = F.pad(x, (padding, padding, padding, padding))
    oy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=dev).to(x.device)
    ox = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=dev).to(x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None].expand(n, c, h, w + 2 * padding)
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :].expand(n, c, h, w)
    return xp.gather(2, rows).gather(3, cols)


def random_flip(x: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image left-right with probability ``p`` (no early exit: testing the mask would sync)."""
    mask = torch.rand(x.shape[0], generator=generator, device=_rng_device(x, generator)).to(x.device) < p
    return torch.where(mask[:, None, None, None], x.flip(-1), x)


def cutout(
    x: torch.Tensor,
    size: int,
    p: float = 0.5,
    generator: torch.Generator | None = None,
    *,
    inplace: bool = False,
) -> torch.Tensor:
    """Cutout as davda54/sam: with probability p zero a size×size square whose corner is uniform in
    [-size/2, H - size/2), clipped to the image (so squares may be partly outside)."""
    if size <= 0 or p <= 0:
        return x
    n, _, h, w = x.shape
    half = size // 2
    dev = _rng_device(x, generator)
    apply = (torch.rand(n, generator=generator, device=dev) < p).to(x.device)
    top = torch.randint(-half, h - half, (n,), generator=generator, device=dev).to(x.device)
    left = torch.randint(-half, w - half, (n,), generator=generator, device=dev).to(x.device)
    ys = torch.arange(h, device=x.device)[None, :]
    xs = torch.arange(w, device=x.device)[None, :]
    in_y = (ys >= top[:, None]) & (ys < (top + size)[:, None])  # N, H
    in_x = (xs >= left[:, None]) & (xs < (left + size)[:, None])  # N, W
    mask = (in_y[:, :, None] & in_x[:, None, :]) & apply[:, None, None]
    return x.masked_fill_(mask[:, None], 0.0) if inplace else x.masked_fill(mask[:, None], 0.0)


def _rng_device(x: torch.Tensor, generator: torch.Generator | None) -> torch.device:
    """Draw on the generator's device when one is given, else on the batch's (its global generator)."""
    return generator.device if generator is not None else x.device


@dataclass
class BatchTransform:
    """uint8/float batch [N,C,H,W] -> float32 normalized batch, with optional train-time augmentation.

    ``scale`` maps the stored values to [0, 1] (1/255 for 8-bit images, 1/16 for sklearn digits).
    Padding of the crop is applied in [0, 1] space (black, like torchvision's RandomCrop(padding=4)),
    Cutout after normalization (zeros in normalized space, like davda54/sam).
    """

    mean: Sequence[float]
    std: Sequence[float]
    scale: float = 1.0 / 255.0
    train: bool = False
    crop_padding: int = 0
    flip: bool = False
    cutout: int = 0
    cutout_p: float = 0.5
    _mean: torch.Tensor = field(init=False, repr=False)
    _std: torch.Tensor = field(init=False, repr=False)
    _mul: torch.Tensor = field(init=False, repr=False)
    _sub: torch.Tensor = field(init=False, repr=False)
    _on_device: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(
        init=False, repr=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean {self.mean} and std {self.std} must have one value per channel")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std {self.std} must be positive")
        self._mean = torch.tensor(self.mean, dtype=torch.float32)[None, :, None, None]
        self._std = torch.tensor(self.std, dtype=torch.float32)[None, :, None, None]
        self._mul = self.scale / self._std
        self._sub = self._mean / self._std

    def _affine(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The normalisation constants on `device` (copied there once, not per batch: a copy would sync)."""
        if device.type == "cpu":
            return self._mul, self._sub
        key = str(device)
        if key not in self._on_device:
            self._on_device[key] = (self._mul.to(device), self._sub.to(device))
        return self._on_device[key]

    def eval_copy(self) -> BatchTransform:
        """The same normalization without augmentation (train-accuracy and test views)."""
        return BatchTransform(self.mean, self.std, self.scale, train=False)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.train:  # geometric steps on the stored dtype (uint8 for images): zero padding is black
            x = random_crop(x, self.crop_padding, generator)
            if self.flip:
                x = random_flip(x, 0.5, generator)
        # (x·scale − mean)/std as one fused affine map, in place on a fresh float32 tensor
        mul, sub = self._affine(x.device)
        x = x.to(torch.float32, copy=True).mul_(mul).sub_(sub)
        if self.train and self.cutout > 0:
            x = cutout(x, self.cutout, self.cutout_p, generator, inplace=True)
        return x
