"""Classification datasets of the AACE papers: CIFAR-10/100, Fashion-MNIST, Food101 (at 32×32), ImageNet.

Recipes (DESIGN.md, "Recipes the authors' code uses"): CIFAR crop 32 pad 4, flip, normalize, Cutout(16,
p=0.5); Fashion-MNIST normalize + Cutout; Food101 pad to square, resize 32, flip, ImageNet mean/std,
Cutout; ImageNet the standard RandomResizedCrop(224) + flip. Small sets live in memory as uint8 tensors
and are augmented per batch (``transforms.BatchTransform``).
"""

from __future__ import annotations

import os
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from samrepro.errors import read_json

from . import cifar
from .datasets import TensorImageDataset, decoding
from .registry import DataBundle, DatasetMissingError, DatasetSpec, file_entry, register
from .splits import stratified_split, subsample
from .transforms import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    BatchTransform,
)

AUG_OPTIONS = frozenset({"cutout", "cutout_p", "crop_padding", "flip", "train_eval_max"})
DEFAULT_TRAIN_EVAL_MAX = 50_000


def _augmentation(
    options: dict[str, Any], mean, std, *, crop_padding: int, flip: bool, cutout: int
) -> BatchTransform:
    size = int(options.get("cutout", cutout))
    p = float(options.get("cutout_p", 0.5))
    pad = int(options.get("crop_padding", crop_padding))
    if size < 0 or pad < 0 or not 0.0 <= p <= 1.0:
        raise ValueError(f"options cutout={size}, crop_padding={pad} must be >= 0 and cutout_p={p} in [0, 1]")
    return BatchTransform(
        mean, std, train=True, crop_padding=pad, flip=bool(options.get("flip", flip)), cutout=size, cutout_p=p
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


def _download(name: str, expected: Path, root: Path, fetch) -> None:
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


# --------------------------------------------------------------------------------------------- CIFAR
def _cifar_folder(name: str, root: Path, layout: cifar.CifarLayout, download: bool) -> Path:
    folder = cifar.find_folder(root, layout)
    if folder is None and download:
        import torchvision

        cls = torchvision.datasets.CIFAR10 if layout is cifar.CIFAR10 else torchvision.datasets.CIFAR100
        _download(
            name,
            root / layout.folder,
            root,
            lambda: [cls(root=str(root), train=t, download=True) for t in (True, False)],
        )
        folder = cifar.find_folder(root, layout)
    if folder is None:
        raise DatasetMissingError(
            name,
            root / layout.folder,
            f"run `samrepro prepare --dataset {name} --root {root} --download --out manifest.json` "
            f"(torchvision downloads {layout.url}), or extract that archive into {root}",
        )
    return folder


def _build_cifar(layout: cifar.CifarLayout, name: str, mean, std):
    def build(root: Path, *, use_validation, val_fraction, split_seed, download, options) -> DataBundle:
        folder = _cifar_folder(name, root, layout, download)
        tf = _augmentation(options, mean, std, crop_padding=4, flip=True, cutout=16)
        return in_memory_bundle(
            name,
            cifar.read_split(folder, layout, True),
            cifar.read_split(folder, layout, False),
            tf,
            layout.num_classes,
            use_validation=use_validation,
            val_fraction=val_fraction,
            split_seed=split_seed,
            options=options,
        )

    def prepare(root: Path, download: bool) -> dict[str, Any]:
        folder = _cifar_folder(name, root, layout, download)
        ytr = cifar.read_split(folder, layout, True)[1]
        yte = cifar.read_split(folder, layout, False)[1]
        files = [file_entry(folder / f, root) for f in layout.train_files + layout.test_files]
        return {
            "files": files,
            "counts": {"train": int(ytr.numel()), "test": int(yte.numel()), "classes": layout.num_classes},
        }

    return build, prepare


# ------------------------------------------------------------------------------------- Fashion-MNIST
FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx_ubyte(path: Path) -> np.ndarray:
    """Read an IDX file (MNIST's format: big-endian magic 0x00000800 | ndim, uint8 data)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 4:
        raise ValueError(f"{path}: too short for an IDX file")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {data[:4].hex()})")
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says shape {dims}, file holds {arr.size} values")
    return arr.reshape(dims)


def _fmnist_folder(root: Path, download: bool) -> Path:
    def find() -> Path | None:
        for cand in (root / "FashionMNIST" / "raw", root / "raw", root):
            if all((cand / f).is_file() for pair in FMNIST_FILES.values() for f in pair):
                return cand
        return None

    folder = find()
    if folder is None and download:
        import torchvision

        _download(
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
    tf = _augmentation(options, FASHION_MNIST_MEAN, FASHION_MNIST_STD, crop_padding=0, flip=False, cutout=16)
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


# -------------------------------------------------------------------------------------------- Food101
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

        _download(
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
    meta = read_json(folder / "meta" / f"{split}.json", "re-extract food-101/meta from the archive (or "
                     "delete food-101 and prepare with --download)")
    if not isinstance(meta, dict):
        raise ValueError(f"{folder / 'meta' / f'{split}.json'}: expected {{class: [image ids]}}; re-extract it")
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
    tf = _augmentation(options, IMAGENET_MEAN, IMAGENET_STD, crop_padding=0, flip=True, cutout=16)
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


# ------------------------------------------------------------------------------------------- ImageNet
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


for _layout, _name, _mean, _std in (
    (cifar.CIFAR10, "cifar10", CIFAR10_MEAN, CIFAR10_STD),
    (cifar.CIFAR100, "cifar100", CIFAR100_MEAN, CIFAR100_STD),
):
    _b, _p = _build_cifar(_layout, _name, _mean, _std)
    register(
        DatasetSpec(_name, _b, _p, f"torchvision download of {_layout.url}", AUG_OPTIONS)
    )
register(
    DatasetSpec(
        "fashion_mnist", _build_fmnist, _prepare_fmnist, "torchvision download", AUG_OPTIONS
    )
)
register(
    DatasetSpec(
        "food101",
        _build_food,
        _prepare_food,
        f"torchvision download of {FOOD_URL}",
        AUG_OPTIONS | {"image_size"},
    )
)
register(
    DatasetSpec(
        "imagenet",
        _build_imagenet,
        _prepare_imagenet,
        "https://image-net.org/download.php (ImageFolder layout train/ val/)",
        frozenset({"train_eval_max", "image_size"}),
    )
)
