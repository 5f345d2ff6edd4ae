"""CIFAR-10/100 python-pickle batches read into uint8 tensors.

torchvision's CIFAR classes check the md5 of every batch, which rejects the tiny fixtures the tests write in
the same format; reading the pickles directly (DESIGN.md: dicts with ``data`` N×3072 uint8 RGB planes and
``labels``/``fine_labels``) accepts any well-formed batch, keeps the whole set in one tensor (fast batched
augmentation) and gives clear errors. torchvision is still used to download when the user asks.
The batches are read with `safe_pickle` (numpy arrays, bytes, lists, dicts only): a crafted batch runs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from samrepro.data.formats import safe_pickle


@dataclass(frozen=True)
class CifarLayout:
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: str
    num_classes: int
    url: str


CIFAR10 = CifarLayout(
    "cifar-10-batches-py",
    tuple(f"data_batch_{i}" for i in range(1, 6)),
    ("test_batch",),
    "labels",
    10,
    "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
)
CIFAR100 = CifarLayout(
    "cifar-100-python",
    ("train",),
    ("test",),
    "fine_labels",
    100,
    "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
)


def find_folder(root: Path, layout: CifarLayout) -> Path | None:
    """The batch folder: ``root/<folder>`` (torchvision's layout) or ``root`` itself."""
    for cand in (root / layout.folder, root):
        if all((cand / f).is_file() for f in layout.train_files + layout.test_files):
            return cand
    return None


def read_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """One pickle batch -> (uint8 [N,3,32,32], int64 [N])."""
    d = safe_pickle.load(path, "CIFAR python batch")
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a pickled dict, got {type(d).__name__}")
    d = {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
    if "data" not in d or label_key not in d:
        raise ValueError(f"{path}: CIFAR batch must hold 'data' and '{label_key}', has {sorted(map(str, d))}")
    try:
        data = np.asarray(d["data"], dtype=np.uint8)
        labels = np.asarray(d[label_key], dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: 'data' and '{label_key}' must be numeric arrays ({exc})") from None
    if data.ndim != 2 or data.shape[1] != 3072 or data.shape[0] != labels.shape[0]:
        raise ValueError(f"{path}: 'data' must be N×3072 with N labels, got {data.shape} and {labels.shape}")
    return data.reshape(-1, 3, 32, 32), labels


def read_split(folder: Path, layout: CifarLayout, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    parts = [
        read_batch(folder / f, layout.label_key) for f in (layout.train_files if train else layout.test_files)
    ]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    if y.size and (y.min() < 0 or y.max() >= layout.num_classes):
        raise ValueError(f"{folder}: labels outside 0..{layout.num_classes - 1}")
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)
