"""CIFAR-10 and CIFAR-100, in memory: crop 32 pad 4, flip, normalize, Cutout(16, p=0.5) (DESIGN.md recipes).

Files: the python-pickle batches (``formats.cifar_pickle``); torchvision downloads them when asked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..formats import cifar_pickle
from ..registry import DataBundle, DatasetMissingError, DatasetSpec, file_entry, register
from ..transforms import CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD
from .in_memory import AUG_OPTIONS, augmentation, in_memory_bundle, torchvision_download


def _cifar_folder(name: str, root: Path, layout: cifar_pickle.CifarLayout, download: bool) -> Path:
    folder = cifar_pickle.find_folder(root, layout)
    if folder is None and download:
        import torchvision

        cls = (
            torchvision.datasets.CIFAR10 if layout is cifar_pickle.CIFAR10 else torchvision.datasets.CIFAR100
        )
        torchvision_download(
            name,
            root / layout.folder,
            root,
            lambda: [cls(root=str(root), train=t, download=True) for t in (True, False)],
        )
        folder = cifar_pickle.find_folder(root, layout)
    if folder is None:
        raise DatasetMissingError(
            name,
            root / layout.folder,
            f"run `samrepro prepare --dataset {name} --root {root} --download --out manifest.json` "
            f"(torchvision downloads {layout.url}), or extract that archive into {root}",
        )
    return folder


def _build_cifar(layout: cifar_pickle.CifarLayout, name: str, mean, std):
    def build(root: Path, *, use_validation, val_fraction, split_seed, download, options) -> DataBundle:
        folder = _cifar_folder(name, root, layout, download)
        tf = augmentation(options, mean, std, crop_padding=4, flip=True, cutout=16)
        return in_memory_bundle(
            name,
            cifar_pickle.read_split(folder, layout, True),
            cifar_pickle.read_split(folder, layout, False),
            tf,
            layout.num_classes,
            use_validation=use_validation,
            val_fraction=val_fraction,
            split_seed=split_seed,
            options=options,
        )

    def prepare(root: Path, download: bool) -> dict[str, Any]:
        folder = _cifar_folder(name, root, layout, download)
        ytr = cifar_pickle.read_split(folder, layout, True)[1]
        yte = cifar_pickle.read_split(folder, layout, False)[1]
        files = [file_entry(folder / f, root) for f in layout.train_files + layout.test_files]
        return {
            "files": files,
            "counts": {"train": int(ytr.numel()), "test": int(yte.numel()), "classes": layout.num_classes},
        }

    return build, prepare


for _layout, _name, _mean, _std in (
    (cifar_pickle.CIFAR10, "cifar10", CIFAR10_MEAN, CIFAR10_STD),
    (cifar_pickle.CIFAR100, "cifar100", CIFAR100_MEAN, CIFAR100_STD),
):
    _b, _p = _build_cifar(_layout, _name, _mean, _std)
    register(DatasetSpec(_name, _b, _p, f"torchvision download of {_layout.url}", AUG_OPTIONS))
