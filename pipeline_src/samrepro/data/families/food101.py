"""Food101 at 32×32, in memory: pad to square, resize 32, flip, ImageNet mean/std, Cutout (DESIGN.md recipes).

Files: the official archive's images/ and meta/{train,test}.json; torchvision downloads it when asked. The
images are decoded and resized once, in parallel, into one uint8 tensor.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from samrepro.errors import read_json

from ..datasets import decoding
from ..registry import DataBundle, DatasetMissingError, DatasetSpec, file_entry, register
from ..transforms import IMAGENET_MEAN, IMAGENET_STD
from .in_memory import AUG_OPTIONS, augmentation, in_memory_bundle, torchvision_download

FOOD_URL = "http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz"


def _food_folder(root: Path, download: bool) -> Path:
    def find() -> Path | None:
        for cand in (root / "food-101", root):
            if (
                (cand / "images").is_dir()
                and (cand / "meta" / "train.json").is_file()
                and (cand / "meta" / "test.json").is_file()
            ):
                return cand
        return None

    folder = find()
    if folder is None and download:
        import torchvision

        torchvision_download(
            "food101",
            root / "food-101",
            root,
            lambda: torchvision.datasets.Food101(root=str(root), split="train", download=True),
        )
        folder = find()
    if folder is None:
        raise DatasetMissingError(
            "food101",
            root / "food-101",
            f"run `samrepro prepare --dataset food101 --root {root} --download --out manifest.json` "
            "(torchvision), or extract "
            f"{FOOD_URL} into {root} (folders food-101/images and food-101/meta)",
        )
    return folder


def _food_meta(folder: Path, split: str) -> tuple[list[str], list[Path], np.ndarray]:
    meta = read_json(
        folder / "meta" / f"{split}.json",
        "re-extract food-101/meta from the archive (or delete food-101 and prepare with --download)",
    )
    if not isinstance(meta, dict):
        raise ValueError(
            f"{folder / 'meta' / f'{split}.json'}: expected {{class: [image ids]}}; re-extract it"
        )
    classes = sorted(meta)  # torchvision's Food101 orders classes the same way
    index = {c: i for i, c in enumerate(classes)}
    paths: list[Path] = []
    labels: list[int] = []
    for c in classes:
        for rel in meta[c]:
            paths.append(folder / "images" / f"{rel}.jpg")
            labels.append(index[c])
    return classes, paths, np.asarray(labels, dtype=np.int64)


def pad_resize(path: Path, size: int) -> np.ndarray:
    """Pad to a centred black square, then resize to size×size (the AACE papers' Food101 recipe)."""
    with decoding(path), Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = max(w, h)
        canvas = Image.new("RGB", (s, s))
        canvas.paste(im, ((s - w) // 2, (s - h) // 2))
        return np.asarray(canvas.resize((size, size), Image.BILINEAR), dtype=np.uint8)


def _food_split(folder: Path, split: str, size: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Decode a split once into uint8 [N,3,size,size]; cached on disk beside the data when writable."""
    classes, paths, labels = _food_meta(folder, split)
    meta_stat = (folder / "meta" / f"{split}.json").stat()
    cache = folder / ".samrepro_cache" / f"{split}_{size}_{meta_stat.st_size}.pt"
    if cache.is_file():
        try:
            blob = torch.load(cache, map_location="cpu", weights_only=True)
            return blob["images"], blob["labels"], len(classes)
        except Exception:  # noqa: BLE001 - rebuild a corrupt cache
            pass
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DatasetMissingError(
            "food101",
            missing[0],
            f"{len(missing)} image(s) listed in meta/{split}.json are missing; re-extract {FOOD_URL}",
        )
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)

    def work(i: int) -> None:
        out[i] = pad_resize(paths[i], size)

    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(work, range(len(paths))))
    images = torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(labels)
    try:
        cache.parent.mkdir(exist_ok=True)
        tmp = cache.with_name(cache.name + f".tmp{os.getpid()}")
        torch.save({"images": images, "labels": y}, tmp)
        os.replace(tmp, cache)
    except OSError:
        pass
    return images, y, len(classes)


def _build_food(root: Path, *, use_validation, val_fraction, split_seed, download, options) -> DataBundle:
    folder = _food_folder(root, download)
    size = int(options.get("image_size", 32))
    xtr, ytr, n_classes = _food_split(folder, "train", size)
    xte, yte, _ = _food_split(folder, "test", size)
    tf = augmentation(options, IMAGENET_MEAN, IMAGENET_STD, crop_padding=0, flip=True, cutout=16)
    return in_memory_bundle(
        "food101",
        (xtr, ytr),
        (xte, yte),
        tf,
        n_classes,
        use_validation=use_validation,
        val_fraction=val_fraction,
        split_seed=split_seed,
        options=options,
    )


def _prepare_food(root: Path, download: bool) -> dict[str, Any]:
    folder = _food_folder(root, download)
    counts: dict[str, int] = {}
    for split in ("train", "test"):
        classes, paths, _ = _food_meta(folder, split)
        missing = sum(not p.is_file() for p in paths)
        if missing:
            raise DatasetMissingError(
                "food101",
                folder / "images",
                f"{missing} image(s) of meta/{split}.json are missing; re-extract {FOOD_URL}",
            )
        counts[split] = len(paths)
        counts["classes"] = len(classes)
    files = [file_entry(folder / "meta" / f, root) for f in ("train.json", "test.json")]
    return {"files": files, "counts": counts}


register(
    DatasetSpec(
        "food101",
        _build_food,
        _prepare_food,
        f"torchvision download of {FOOD_URL}",
        AUG_OPTIONS | {"image_size"},
    )
)
