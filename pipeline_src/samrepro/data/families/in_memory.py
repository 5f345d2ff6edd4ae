"""What the in-memory classification families share: the batched augmentation recipe, the bundle of an
in-memory set (train, train_eval, and the validation split or the test set) and torchvision downloads whose
failures name the fix.

Small sets live in memory as uint8 tensors and are augmented per batch (``transforms.BatchTransform``);
each family module holds its own recipe (DESIGN.md, "Recipes the authors' code uses").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..datasets import TensorImageDataset
from ..registry import DataBundle, DatasetMissingError
from ..splits import stratified_split, subsample
from ..transforms import BatchTransform

AUG_OPTIONS = frozenset({"cutout", "cutout_p", "crop_padding", "flip", "train_eval_max"})
DEFAULT_TRAIN_EVAL_MAX = 50_000


def augmentation(
    options: dict[str, Any],
    mean,
    std,
    *,
    crop_padding: int,
    flip: bool,
    cutout: int,
    scale: float = 1.0 / 255.0,
) -> BatchTransform:
    """The training transform: the family's augmentation defaults, each overridable through `options`."""
    size = int(options.get("cutout", cutout))
    p = float(options.get("cutout_p", 0.5))
    pad = int(options.get("crop_padding", crop_padding))
    if size < 0 or pad < 0 or not 0.0 <= p <= 1.0:
        raise ValueError(f"options cutout={size}, crop_padding={pad} must be >= 0 and cutout_p={p} in [0, 1]")
    return BatchTransform(
        mean,
        std,
        scale=scale,
        train=True,
        crop_padding=pad,
        flip=bool(options.get("flip", flip)),
        cutout=size,
        cutout_p=p,
    )


def in_memory_bundle(
    name: str,
    train_xy: tuple[torch.Tensor, torch.Tensor],
    test_xy: tuple[torch.Tensor, torch.Tensor],
    train_tf: BatchTransform,
    num_classes: int,
    *,
    use_validation: bool,
    val_fraction: float,
    split_seed: int,
    options: dict[str, Any],
    info: dict[str, Any] | None = None,
) -> DataBundle:
    """Bundle for an in-memory classification set: train (augmented), train_eval, eval = val or test."""
    eval_tf = train_tf.eval_copy()
    full = TensorImageDataset(train_xy[0], train_xy[1], train_tf)
    if use_validation:
        tr, va = stratified_split(full.labels.numpy(), val_fraction, split_seed)
        train = full.subset(tr)
        evaluation = full.subset(va, eval_tf)
    else:
        train = full
        evaluation = TensorImageDataset(test_xy[0], test_xy[1], eval_tf)
    keep = subsample(len(train), options.get("train_eval_max", DEFAULT_TRAIN_EVAL_MAX))
    train_eval = train.with_transform(eval_tf) if len(keep) == len(train) else train.subset(keep, eval_tf)
    c, h, w = train_xy[0].shape[1:]
    return DataBundle(
        name=name,
        task="classification",
        num_classes=num_classes,
        input_shape=(int(c), int(h), int(w)),
        train=train,
        train_eval=train_eval,
        eval=evaluation,
        info={
            "train_size": len(train),
            "eval_size": len(evaluation),
            "mean": list(train_tf.mean),
            "std": list(train_tf.std),
            **(info or {}),
        },
    )


def torchvision_download(name: str, expected: Path, root: Path, fetch) -> None:
    """Run a torchvision download; a failure (no network, e.g. on a compute node; a bad checksum) becomes a
    DatasetMissingError naming the dataset and path instead of a urllib traceback."""
    try:
        fetch()
    except (OSError, RuntimeError) as exc:
        raise DatasetMissingError(
            name,
            expected,
            f"the download failed ({type(exc).__name__}: {exc}); on a machine with network access run "
            f"`samrepro prepare --dataset {name} --root {root} --download --out manifest.json` and copy "
            f"{root} here, or place the files by hand",
        ) from exc
