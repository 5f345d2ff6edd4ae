"""samrepro.data: the dataset registry, dataset families (`families/`, one module each, registering
themselves), readers of the on-disk formats users bring (`formats/`) and fast batched transforms.

Public API (docs/ARCHITECTURE.md Part B): ``build(name, root, *, use_validation, ...) -> DataBundle``,
``prepare(name, root, download=False) -> manifest dict``, ``DatasetMissingError``, ``DataBundle``,
``VerificationSet``, ``TensorImageDataset``, ``DATASETS`` / ``dataset_names()``.
"""

from .datasets import EncodedImageDataset, TensorImageDataset
from .registry import (
    DATASETS,
    DataBundle,
    DatasetMissingError,
    LazyVerificationSets,
    VerificationSet,
    build,
    prepare,
)
from .transforms import BatchTransform


def dataset_names() -> list[str]:
    """Every registered dataset name."""
    from .registry import _load_builtin

    _load_builtin()
    return sorted(DATASETS)


__all__ = [
    "DATASETS",
    "BatchTransform",
    "DataBundle",
    "DatasetMissingError",
    "EncodedImageDataset",
    "LazyVerificationSets",
    "TensorImageDataset",
    "VerificationSet",
    "build",
    "dataset_names",
    "prepare",
]
