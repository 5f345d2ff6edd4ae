"""Fashion-MNIST, in memory: normalize + Cutout(16) (DESIGN.md recipes).

Files: the four idx-ubyte files (``formats.idx_ubyte``); torchvision downloads them when asked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..formats.idx_ubyte import read_idx_ubyte
from ..registry import DataBundle, DatasetMissingError, DatasetSpec, file_entry, register
from ..transforms import FASHION_MNIST_MEAN, FASHION_MNIST_STD
from .in_memory import AUG_OPTIONS, augmentation, in_memory_bundle, torchvision_download

FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _fmnist_folder(root: Path, download: bool) -> Path:
    def find() -> Path | None:
        for cand in (root / "FashionMNIST" / "raw", root / "raw", root):
            if all((cand / f).is_file() for pair in FMNIST_FILES.values() for f in pair):
                return cand
        return None

    folder = find()
    if folder is None and download:
        import torchvision

        torchvision_download(
            "fashion_mnist",
            root / "FashionMNIST" / "raw",
            root,
            lambda: [
                torchvision.datasets.FashionMNIST(root=str(root), train=t, download=True)
                for t in (True, False)
            ],
        )
        folder = find()
    if folder is None:
        raise DatasetMissingError(
            "fashion_mnist",
            root / "FashionMNIST" / "raw",
            f"run `samrepro prepare --dataset fashion_mnist --root {root} --download --out manifest.json` "
            "(torchvision), or put the four unzipped idx files from "
            "https://github.com/zalandoresearch/fashion-mnist there",
        )
    return folder


def _fmnist_split(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    img_file, lab_file = FMNIST_FILES[split]
    x = read_idx_ubyte(folder / img_file)
    y = read_idx_ubyte(folder / lab_file).astype(np.int64)
    if x.ndim != 3 or x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{folder}/{img_file}: expected N×28×28 images with N labels, got {x.shape}, {y.shape}"
        )
    return torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y)


def _build_fmnist(root: Path, *, use_validation, val_fraction, split_seed, download, options) -> DataBundle:
    folder = _fmnist_folder(root, download)
    tf = augmentation(options, FASHION_MNIST_MEAN, FASHION_MNIST_STD, crop_padding=0, flip=False, cutout=16)
    return in_memory_bundle(
        "fashion_mnist",
        _fmnist_split(folder, "train"),
        _fmnist_split(folder, "test"),
        tf,
        10,
        use_validation=use_validation,
        val_fraction=val_fraction,
        split_seed=split_seed,
        options=options,
    )


def _prepare_fmnist(root: Path, download: bool) -> dict[str, Any]:
    folder = _fmnist_folder(root, download)
    counts = {s: int(_fmnist_split(folder, s)[1].numel()) for s in FMNIST_FILES}
    files = [file_entry(folder / f, root) for pair in FMNIST_FILES.values() for f in pair]
    return {"files": files, "counts": {**counts, "classes": 10}}


register(DatasetSpec("fashion_mnist", _build_fmnist, _prepare_fmnist, "torchvision download", AUG_OPTIONS))
