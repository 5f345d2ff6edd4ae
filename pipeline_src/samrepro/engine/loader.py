"""Batches for training and evaluation, reproducible and resumable in the middle of an epoch.

The epoch's order is one `torch.randperm` drawn from a dedicated generator (the data-loader generator whose
state the checkpoint keeps), sliced into batches; under DDP every rank draws the same permutation and takes
its own stride of every global batch. Datasets of `samrepro.data` expose `get_batch(indices)`, which augments
a whole batch at once: with `workers: 0` the engine calls it directly (no DataLoader, no collate: the fastest
path for small in-memory sets, and augmentation draws from torch's global RNG, which the checkpoint keeps, so
a resume is bitwise identical at any step). With `workers > 0` a DataLoader runs `get_batch` in worker
processes, each seeded from the same generator (torch's worker seeding), which keeps runs repeatable.

Device-resident data (`data_on_device`, `DeviceData`): an in-memory set (CIFAR-10/100, Fashion-MNIST, digits,
Food101 as this project decodes it once into uint8 [N,C,H,W]) is copied to the training device once; each
epoch's permutation is uploaded once and sliced on the device, and the batch transform (crop, flip,
normalise, cutout) runs there, drawing from the device's generator: no worker, no per-batch copy, no host
synchronisation. On the CPU it computes exactly what `get_batch` computes in-process (the same indices, the
same draws from the same global generator), so the two paths give identical batches for the same seed.
Decoded-per-batch sets (ImageNet, the face sets) have no such tensor and keep the worker path.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


class _BatchView(Dataset):
    """Index = a list of sample indices -> one augmented batch (so workers build whole batches)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return get_batch(self.dataset, indices)


def get_batch(dataset: Any, indices: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A stacked (images, labels) batch; uses the dataset's batched `get_batch` when it has one."""
    if hasattr(dataset, "get_batch"):
        x, y = dataset.get_batch(indices)
        return x, torch.as_tensor(y, dtype=torch.long)
    items = [dataset[int(i)] for i in indices]
    return torch.stack([it[0] for it in items]), torch.as_tensor(
        [int(it[1]) for it in items], dtype=torch.long
    )


def _seed_worker(worker_id: int) -> None:
    """numpy and python RNGs in a worker follow torch's per-worker seed (itself from the loader generator)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def steps_per_epoch(n: int, batch_size: int, min_last: int = 2) -> int:
    """Number of batches; a last batch smaller than `min_last` is dropped (BatchNorm cannot train on a single
    sample; under DDP every rank needs two: min_last = 2 × processes)."""
    if n <= 0:
        raise ValueError("the training set is empty; check dataset.name / dataset.root")
    steps = -(-n // batch_size)
    if 0 < n % batch_size < min_last and steps > 1:
        steps -= 1
    return steps


def epoch_batches(
    n: int, batch_size: int, generator: torch.Generator, rank: int = 0, world: int = 1, min_last: int = 2
) -> list[list[int]]:
    """This rank's sample indices of every batch of one epoch (draws one permutation from `generator`)."""
    perm = torch.randperm(n, generator=generator).tolist()
    out = []
    for s in range(steps_per_epoch(n, batch_size, min_last)):
        batch = perm[s * batch_size : (s + 1) * batch_size]
        out.append(batch[rank::world])
    return out


def iterate_train(
    dataset: Any, batches: list[list[int]], workers: int, generator: torch.Generator, pin_memory: bool = False
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield the given batches in order (augmented), in-process or through `workers` DataLoader workers."""
    if workers == 0:
        for idx in batches:
            yield get_batch(dataset, idx)
        return
    loader = DataLoader(
        _BatchView(dataset),
        sampler=batches,
        batch_size=None,
        num_workers=workers,
        generator=generator,
        worker_init_fn=_seed_worker,
        pin_memory=pin_memory,
        prefetch_factor=4,
    )
    yield from loader


def iterate_eval(dataset: Any, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The dataset in order, no shuffling (evaluation views carry no augmentation)."""
    n = len(dataset)
    for start in range(0, n, batch_size):
        yield get_batch(dataset, list(range(start, min(n, start + batch_size))))


DEVICE_DATA_MAX_BYTES = 4 * 2**30  # auto keeps a set on the device only up to this many bytes of images


def device_resident_ok(dataset: Any) -> bool:
    """An in-memory image tensor with a batch transform (TensorImageDataset), small enough for `auto`."""
    images = getattr(dataset, "images", None)
    return (
        isinstance(images, torch.Tensor)
        and callable(getattr(dataset, "transform", None))
        and images.numel() * images.element_size() <= DEVICE_DATA_MAX_BYTES
    )


class DeviceData:
    """The training images (as stored, uint8 for images) and labels on `device`; batches augmented there."""

    def __init__(self, dataset: Any, device: torch.device) -> None:
        if not isinstance(getattr(dataset, "images", None), torch.Tensor):
            raise ValueError(
                f"data_on_device: the training set ({type(dataset).__name__}) is not held in memory "
                "as one image tensor; use data_on_device: false (the worker path)"
            )
        self.images = dataset.images.to(device)
        self.labels = dataset.labels.to(device)
        self.transform = dataset.transform
        self.device = device

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def epoch_indices(
        self, batch_size: int, generator: torch.Generator, rank: int = 0, world: int = 1, min_last: int = 2
    ) -> list[torch.Tensor]:
        """`epoch_batches` as index tensors on the device: the same permutation, uploaded once per epoch."""
        n = len(self)
        perm = torch.randperm(n, generator=generator).to(self.device, non_blocking=True)
        return [
            perm[s * batch_size : (s + 1) * batch_size][rank::world]
            for s in range(steps_per_epoch(n, batch_size, min_last))
        ]

    def batches(self, indices: list[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for idx in indices:
            yield self.transform(self.images.index_select(0, idx)), self.labels.index_select(0, idx)
