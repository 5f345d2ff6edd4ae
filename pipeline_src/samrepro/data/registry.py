"""The dataset registry: ``build(name, root, ...) -> DataBundle`` and ``prepare(name, root) -> manifest``.

Every dataset of the three papers (and the bundled digits sets of the embedded study) is one
``DatasetSpec``: how to build it, how to verify it, and how a user obtains it when its files are missing
(DESIGN.md, "The DAG" step 1: missing data → an error naming the dataset, the expected path and how to
get it).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from samrepro import catalog

SMALL_FILE_BYTES = 64 * 1024 * 1024  # files up to this size get a sha256 in the manifest


class DatasetMissingError(ValueError):
    """The files of a dataset are not where they should be; says where and how to obtain them."""

    def __init__(self, dataset: str, expected: str | os.PathLike[str], how: str) -> None:
        self.dataset = dataset
        self.expected = str(expected)
        self.how = how
        super().__init__(
            f"dataset '{dataset}': expected {self.expected} but it is missing. How to obtain it: {how}"
        )


@dataclass
class VerificationSet:
    """Pairs for face verification: pair i is (images[2i], images[2i+1]); issame[i] says same identity.

    ``images`` are normalized float32 [2N, C, H, W], as the model consumes them (DESIGN.md protocol).
    """

    name: str
    images: torch.Tensor
    issame: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[0] != 2 * self.issame.shape[0]:
            raise ValueError(
                f"verification set '{self.name}': {tuple(self.images.shape)} images for "
                f"{self.issame.shape[0]} pairs (need [2N, C, H, W])"
            )

    @property
    def num_pairs(self) -> int:
        return int(self.issame.shape[0])


class LazyVerificationSets(Mapping[str, VerificationSet]):
    """Benchmarks built on access, one at a time, so five 12,000-image float tensors never sit in memory
    together. Decoding is cached by the loaders; the float tensors are rebuilt on each access."""

    def __init__(self, loaders: dict[str, Callable[[], VerificationSet]]) -> None:
        self._loaders = dict(loaders)

    def __getitem__(self, key: str) -> VerificationSet:
        try:
            loader = self._loaders[key]
        except KeyError:
            raise KeyError(f"no verification set '{key}'; available: {sorted(self._loaders)}") from None
        return loader()

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaders)

    def __len__(self) -> int:
        return len(self._loaders)

    def __repr__(self) -> str:
        return f"LazyVerificationSets({list(self._loaders)})"


@dataclass
class DataBundle:
    """Everything a training run needs from a dataset (docs/ARCHITECTURE.md Part B).

    train: augmented items (image float32 normalized, int label); train_eval: the same images without
    augmentation (a fixed subset for very large sets); eval: classification: the validation split when
    tuning else the test set; face tasks: None (they are scored by verification). verification: face
    only; {"val": ...} when tuning, else one entry per benchmark.
    """

    name: str
    task: str
    num_classes: int
    input_shape: tuple[int, int, int]
    train: Dataset
    train_eval: Dataset
    eval: Dataset | None
    verification: Mapping[str, VerificationSet] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


BuildFn = Callable[..., DataBundle]
PrepareFn = Callable[[Path, bool], dict[str, Any]]


@dataclass(frozen=True)
class DatasetSpec:
    """How to build, verify and obtain one dataset; its name and task come from `samrepro.catalog`."""

    name: str
    build: BuildFn
    prepare: PrepareFn
    how_to_obtain: str
    options: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not (callable(self.build) and callable(self.prepare)):
            raise TypeError(
                f"DatasetSpec({self.name!r}, ...): the arguments are (name, build, prepare, how_to_obtain, "
                "options); the task is no argument, it comes from samrepro/catalog.py DATASETS"
            )

    @property
    def task(self) -> str:
        return catalog.dataset_task(self.name)


DATASETS: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    """Add a dataset family's builder; its name must be a catalog entry (which gives its task)."""
    if spec.name not in catalog.DATASETS:
        raise ValueError(f"dataset '{spec.name}' is not in samrepro/catalog.py DATASETS; add it there first")
    if spec.name in DATASETS:
        raise ValueError(f"dataset '{spec.name}' registered twice")
    DATASETS[spec.name] = spec
    return spec


def get_spec(name: str) -> DatasetSpec:
    _load_builtin()
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset '{name}'; known datasets: {', '.join(sorted(DATASETS))}") from None


def _load_builtin() -> None:
    # the builders register themselves on import; imported here to keep `samrepro.data` import cheap
    from . import families  # noqa: F401


def build(
    name: str,
    root: str | os.PathLike[str] | None,
    *,
    use_validation: bool,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    download: bool = False,
    options: dict[str, Any] | None = None,
) -> DataBundle:
    """Build the datasets of one run. ``use_validation`` (ρ tuning) carves a seeded validation split from
    the training set and evaluates on it; otherwise the model trains on the full training set and is
    evaluated on the test set / benchmarks."""
    spec = get_spec(name)
    options = dict(options or {})
    unknown = sorted(set(options) - spec.options)
    if unknown:
        raise ValueError(
            f"dataset '{name}': unknown option(s) {unknown}; known options: {sorted(spec.options) or 'none'}"
        )
    if not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction={val_fraction} must lie strictly between 0 and 1 (e.g. 0.1)")
    root_path = Path(root).expanduser() if root not in (None, "") else Path(".")
    return spec.build(
        root_path,
        use_validation=bool(use_validation),
        val_fraction=float(val_fraction),
        split_seed=int(split_seed),
        download=bool(download),
        options=options,
    )


def file_entry(path: Path, base: Path) -> dict[str, Any]:
    """Manifest entry: relative path, size, and sha256 for files small enough to hash quickly."""
    size = path.stat().st_size
    digest = None
    if size <= SMALL_FILE_BYTES:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        digest = h.hexdigest()
    try:
        rel = str(path.relative_to(base))
    except ValueError:
        rel = str(path)
    return {"path": rel, "size": size, "sha256": digest}


def prepare(name: str, root: str | os.PathLike[str] | None, download: bool = False) -> dict[str, Any]:
    """Verify (and, when asked and allowed, download) a dataset; return its manifest.

    The manifest holds no timestamps, so re-preparing unchanged data gives an identical file.
    """
    from samrepro import __version__

    spec = get_spec(name)
    root_path = Path(root).expanduser() if root not in (None, "") else Path(".")
    body = spec.prepare(root_path, bool(download))
    return {
        "dataset": name,
        "task": spec.task,
        "root": str(root_path.resolve()),
        "samrepro_version": __version__,
        **body,
    }


@dataclass(frozen=True)
class DeclaredSize:
    """Published size of a dataset, for `samrepro estimate` when its files are absent: training and test
    images, classes (identities for face sets) and the default input shape (an ``image_size`` option
    overrides the spatial size)."""

    train: int
    test: int
    classes: int
    input_shape: tuple[int, int, int]


# Sizes as published (insightface's face bundles for CASIA-WebFace and MS1MV2; face sets have no test split,
# they are scored on the verification benchmarks). face_rec / face_folder are user data: no declared size.
DECLARED_SIZES: dict[str, DeclaredSize] = {
    "cifar10": DeclaredSize(50_000, 10_000, 10, (3, 32, 32)),
    "cifar100": DeclaredSize(50_000, 10_000, 100, (3, 32, 32)),
    "fashion_mnist": DeclaredSize(60_000, 10_000, 10, (1, 28, 28)),
    "food101": DeclaredSize(75_750, 25_250, 101, (3, 32, 32)),
    "imagenet": DeclaredSize(1_281_167, 50_000, 1000, (3, 224, 224)),
    "casia_webface": DeclaredSize(490_623, 0, 10_572, (3, 112, 112)),
    "ms1mv2": DeclaredSize(5_822_653, 0, 85_742, (3, 112, 112)),
}
# Pairs of the standard face-verification benchmarks (insightface .bin files).
BENCHMARK_PAIRS: dict[str, int] = {
    "lfw": 6000,
    "cfp_fp": 7000,
    "cfp_ff": 7000,
    "agedb_30": 6000,
    "cplfw": 6000,
    "calfw": 6000,
}
