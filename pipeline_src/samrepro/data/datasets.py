"""Dataset classes: an in-memory tensor dataset (fast path) and decode-on-demand face image datasets.

Both implement ``__getitems__``, which ``torch.utils.data.DataLoader`` calls with a whole batch of indices
(torch >= 2.0): augmentation then runs once per batch instead of once per image, and the default collate
function only re-stacks the result. Items are ``(float32 normalized image [C,H,W], int label)`` as
docs/ARCHITECTURE.md Part B requires.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .formats.recordio import IndexedRecordIO, unpack
from .transforms import BatchTransform


class TensorImageDataset(Dataset):
    """Images held in one tensor [N, C, H, W] (uint8 or float) with int64 labels; augmentation per batch.

    ``get_batch(indices)`` returns stacked ``(images, labels)`` directly for loops that skip the DataLoader.
    """

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor | Sequence[int], transform: BatchTransform
    ) -> None:
        labels = torch.as_tensor(labels, dtype=torch.long)
        if images.ndim != 4:
            raise ValueError(f"images must be [N, C, H, W], got shape {tuple(images.shape)}")
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = self.transform(self.images[index : index + 1] if index >= 0 else self.images[index].unsqueeze(0))
        return x[0], int(self.labels[index])

    def get_batch(self, indices: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.transform(self.images.index_select(0, idx)), self.labels.index_select(0, idx)

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, int]]:
        x, y = self.get_batch(indices)
        return list(zip(x.unbind(0), y.tolist(), strict=True))

    def subset(
        self, indices: Sequence[int] | torch.Tensor, transform: BatchTransform | None = None
    ) -> TensorImageDataset:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return TensorImageDataset(
            self.images.index_select(0, idx), self.labels.index_select(0, idx), transform or self.transform
        )

    def with_transform(self, transform: BatchTransform) -> TensorImageDataset:
        """A view of the same storage with another transform (e.g. the no-augmentation train_eval view)."""
        return TensorImageDataset(self.images, self.labels, transform)


@contextmanager
def decoding(where: str | Path) -> Iterator[None]:
    """An image that cannot be decoded (PIL raises OSError, ValueError or SyntaxError; a decompression bomb its
    own error) is bad input: a ValueError naming the file, or the record, and the fix."""
    try:
        yield
    except FileNotFoundError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ValueError(
            f"{where}: not a decodable image ({type(exc).__name__}: {str(exc)[:120]}); replace or remove it"
        ) from exc


def _to_rgb_array(im: Image.Image, size: int) -> np.ndarray:
    im = im.convert("RGB")
    if im.size != (size, size):
        im = im.resize((size, size), Image.BILINEAR)
    return np.asarray(im, dtype=np.uint8)


class RecordSource:
    """Decodes image records of an insightface RecordIO file by key (RGB, as mxnet's imdecode)."""

    def __init__(self, reader: IndexedRecordIO) -> None:
        self.reader = reader

    def load(self, key: int, size: int) -> np.ndarray:
        _, img = unpack(self.reader.read(int(key)))
        with decoding(f"{self.reader.rec_path} (record {key})"), Image.open(io.BytesIO(img)) as im:
            return _to_rgb_array(im, size)


class FolderSource:
    """Decodes image files (one folder per identity)."""

    def load(self, path: str | Path, size: int) -> np.ndarray:
        with decoding(path), Image.open(str(path)) as im:
            return _to_rgb_array(im, size)


class EncodedImageDataset(Dataset):
    """Face images decoded on demand from a RecordIO file or an image folder; 112×112 RGB by default."""

    def __init__(
        self,
        source: RecordSource | FolderSource,
        items: Sequence,
        labels: Sequence[int] | np.ndarray,
        transform: BatchTransform,
        image_size: int = 112,
    ) -> None:
        if len(items) != len(labels):
            raise ValueError(f"{len(items)} items but {len(labels)} labels")
        self.source = source
        # a numpy array (ints or fixed-width strings), not a list: no per-item Python objects whose
        # reference counts would un-share DataLoader workers' copy-on-write memory on big sets
        self.items = np.asarray(items)
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        self.transform = transform
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.items)

    def load_uint8(self, indices: Sequence[int]) -> torch.Tensor:
        """Decoded uint8 images [N, 3, S, S] (no augmentation, no normalization)."""
        arr = np.stack([self.source.load(self.items[int(i)], self.image_size) for i in indices])
        return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()

    def get_batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = [int(i) for i in indices]
        return self.transform(self.load_uint8(idx)), self.labels[idx]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x, y = self.get_batch([index])
        return x[0], int(y[0])

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, int]]:
        x, y = self.get_batch(indices)
        return list(zip(x.unbind(0), y.tolist(), strict=True))

    def subset(self, indices: Sequence[int], transform: BatchTransform | None = None) -> EncodedImageDataset:
        idx = [int(i) for i in indices]
        return EncodedImageDataset(
            self.source,
            [self.items[i] for i in idx],
            self.labels[idx].numpy(),
            transform or self.transform,
            self.image_size,
        )
