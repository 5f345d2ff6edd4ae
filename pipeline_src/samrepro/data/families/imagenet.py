"""ImageNet (ILSVRC2012): the standard RandomResizedCrop(224) + flip; images decoded per item by the loader.

Files: the ImageFolder layout train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (no automatic download: license).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from ..datasets import decoding
from ..registry import DataBundle, DatasetMissingError, DatasetSpec, register
from ..splits import stratified_split, subsample
from ..transforms import IMAGENET_MEAN, IMAGENET_STD
from .in_memory import DEFAULT_TRAIN_EVAL_MAX


class PathImageDataset(Dataset):
    """(path, label) samples decoded with PIL and transformed per image (torchvision transforms)."""

    def __init__(self, samples: list[tuple[str, int]], transform) -> None:
        self.samples = samples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        with decoding(path), Image.open(path) as im:
            return self.transform(im.convert("RGB")), int(label)


def _imagenet_dirs(root: Path) -> tuple[Path, Path]:
    train, val = root / "train", root / "val"
    for d in (train, val):
        if not d.is_dir() or not any(p.is_dir() for p in d.iterdir()):
            raise DatasetMissingError(
                "imagenet",
                d,
                "ImageNet cannot be downloaded automatically (license): get ILSVRC2012 from "
                "https://image-net.org/download.php and arrange train/<wnid>/*.JPEG and val/<wnid>/*.JPEG "
                "(e.g. with the valprep.sh script of the PyTorch ImageNet example)",
            )
    return train, val


def _scan(folder: Path) -> tuple[list[str], list[tuple[str, int]]]:
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    idx = {c: i for i, c in enumerate(classes)}
    return classes, make_dataset(str(folder), idx, extensions=IMG_EXTENSIONS)


def _build_imagenet(root: Path, *, use_validation, val_fraction, split_seed, download, options) -> DataBundle:
    from torchvision import transforms as T

    train_dir, val_dir = _imagenet_dirs(root)
    size = int(options.get("image_size", 224))
    classes, samples = _scan(train_dir)
    normalize = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train_tf = T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor(), normalize])
    eval_tf = T.Compose([T.Resize(int(round(size * 256 / 224))), T.CenterCrop(size), T.ToTensor(), normalize])
    if use_validation:
        tr, va = stratified_split([s[1] for s in samples], val_fraction, split_seed)
        train_samples = [samples[i] for i in tr]
        eval_samples = [samples[i] for i in va]
    else:
        val_classes, eval_samples = _scan(val_dir)
        if val_classes != classes:
            raise ValueError(
                f"imagenet: {val_dir} has {len(val_classes)} class folders, {train_dir} has "
                f"{len(classes)}; both need the same class folders"
            )
        train_samples = samples
    keep = subsample(len(train_samples), options.get("train_eval_max", DEFAULT_TRAIN_EVAL_MAX))
    return DataBundle(
        name="imagenet",
        task="classification",
        num_classes=len(classes),
        input_shape=(3, size, size),
        train=PathImageDataset(train_samples, train_tf),
        train_eval=PathImageDataset([train_samples[i] for i in keep], eval_tf),
        eval=PathImageDataset(eval_samples, eval_tf),
        info={
            "train_size": len(train_samples),
            "eval_size": len(eval_samples),
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
        },
    )


def _prepare_imagenet(root: Path, download: bool) -> dict[str, Any]:
    train_dir, val_dir = _imagenet_dirs(root)
    classes, train = _scan(train_dir)
    _, val = _scan(val_dir)
    return {"files": [], "counts": {"train": len(train), "val": len(val), "classes": len(classes)}}


register(
    DatasetSpec(
        "imagenet",
        _build_imagenet,
        _prepare_imagenet,
        "https://image-net.org/download.php (ImageFolder layout train/ val/)",
        frozenset({"train_eval_max", "image_size"}),
    )
)
