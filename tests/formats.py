"""Writers of tiny datasets in the REAL on-disk formats users bring (DESIGN.md, "Formats users bring").

Tests of every part write fixtures with these and read them back through ``samrepro.data.build`` — the
same code path a user's files take. The writers follow the reference implementations byte for byte:
dmlc-core's ``RecordIOWriter::WriteRecord`` (continuation parts when the magic word sits at a 4-byte
boundary of a payload), mxnet's ``recordio.pack`` (``IfQQ`` header, float32 label array when the label is
a list), insightface's face sets (header record 0 with flag 2 and labels [N+1, N+1+num_ids], identity
records after the images), insightface's ``.bin`` pickles, the CIFAR python batches, MNIST's IDX files,
torchvision's Food101 layout and ImageFolder layouts.

Import from a test as ``from formats import write_recordio`` (pytest puts tests/ on sys.path).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)

__all__ = [
    "MAGIC",
    "encode_image",
    "face_images",
    "pack_record",
    "write_bin",
    "write_cifar",
    "write_cifar_batches",
    "write_fashion_mnist_raw",
    "write_food101",
    "write_image_folder",
    "write_record",
    "write_recordio",
]


# ------------------------------------------------------------------------------------------- images
def encode_image(img: np.ndarray, fmt: str = "png", quality: int = 95) -> bytes:
    """Encode an HxWx3 (or HxW) uint8 array as PNG (lossless) or JPEG bytes."""
    buf = io.BytesIO()
    im = Image.fromarray(np.ascontiguousarray(img))
    if fmt.lower() in ("jpg", "jpeg"):
        im.save(buf, format="JPEG", quality=quality)
    else:
        im.save(buf, format=fmt.upper())
    return buf.getvalue()


def face_images(
    num_ids: int, per_id: int | Sequence[int], size: int = 112, seed: int = 0
) -> dict[int, list[np.ndarray]]:
    """Synthetic 'faces': each identity a distinct smooth colour pattern plus per-image noise (uint8 RGB)."""
    rng = np.random.default_rng(seed)
    counts = [per_id] * num_ids if isinstance(per_id, int) else list(per_id)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out: dict[int, list[np.ndarray]] = {}
    for i in range(num_ids):
        base_colour = rng.uniform(40, 215, size=3)
        fx, fy = rng.uniform(1, 4, size=2)
        pattern = 40 * np.sin(2 * np.pi * (fx * xx + fy * yy))[..., None]
        imgs = []
        for _ in range(counts[i]):
            noise = rng.normal(0, 8, size=(size, size, 3))
            imgs.append(np.clip(base_colour + pattern + noise, 0, 255).astype(np.uint8))
        out[i] = imgs
    return out


# ----------------------------------------------------------------------------------------- RecordIO
def write_record(f, payload: bytes) -> int:
    """Write one record as dmlc-core's RecordIOWriter::WriteRecord does; return its start offset.

    Every occurrence of the magic word at a 4-byte-aligned position of the payload ends a part (flag 1 for
    the first, 2 for the middle ones) and is dropped; the last part has flag 3 (0 when there was no
    split). Only the last part is padded (the others have 4-aligned lengths by construction).
    """
    start = f.tell()
    length = len(payload)
    if length >= 1 << 29:
        raise ValueError("RecordIO payloads must be shorter than 2**29 bytes")
    lower_align = (length >> 2) << 2
    upper_align = ((length + 3) >> 2) << 2
    dptr = 0
    for i in range(0, lower_align, 4):
        if payload[i : i + 4] == MAGIC_BYTES:
            cflag = 1 if dptr == 0 else 2
            f.write(MAGIC_BYTES)
            f.write(struct.pack("<I", (cflag << 29) | (i - dptr)))
            f.write(payload[dptr:i])
            dptr = i + 4
    cflag = 3 if dptr != 0 else 0
    f.write(MAGIC_BYTES)
    f.write(struct.pack("<I", (cflag << 29) | (length - dptr)))
    f.write(payload[dptr:])
    f.write(b"\x00" * (upper_align - length))
    return start


def pack_record(label: float | Sequence[float], image: bytes = b"", id1: int = 0, id2: int = 0) -> bytes:
    """mxnet.recordio.pack: header ``IfQQ``; a list label sets flag = len(label) and follows as float32."""
    if isinstance(label, int | float | np.integer | np.floating):
        return struct.pack("<IfQQ", 0, float(label), id1, id2) + image
    arr = np.asarray(label, dtype="<f4")
    return struct.pack("<IfQQ", arr.size, 0.0, id1, id2) + arr.tobytes() + image


def write_recordio(
    directory: str | os.PathLike[str],
    images_by_identity: Mapping[int, Sequence[np.ndarray]] | Sequence[Sequence[np.ndarray]],
    split_magic_record: bool = True,
    *,
    fmt: str = "png",
    label_as_array: bool = False,
    with_header: bool = True,
    prefix: str = "train",
) -> dict[str, object]:
    """Write ``train.rec`` + ``train.idx`` (+ ``property``) as insightface's face sets are laid out.

    Record 0: header, flag 2, labels [N+1, N+1+num_ids]. Records 1..N: images in identity order (label =
    identity index; as a 1-element float array when ``label_as_array``). Records N+1..N+num_ids: one per
    identity, labels [start, end) of its image keys, no image. With ``split_magic_record`` the first image
    record carries the magic word twice at 4-byte boundaries (in its header's id2 field and after the
    image bytes), so it is stored in three parts (continuation flags 1, 2, 3).
    Returns {"num_images", "num_ids", "labels" (per key 1..N), "split_keys"}.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    groups = (
        [list(images_by_identity[k]) for k in sorted(images_by_identity)]
        if isinstance(images_by_identity, Mapping)
        else [list(g) for g in images_by_identity]
    )
    n_images = sum(len(g) for g in groups)
    n_ids = len(groups)
    entries: list[tuple[int, bytes]] = []
    if with_header:
        entries.append((0, pack_record([n_images + 1, n_images + 1 + n_ids])))
    key = 1
    ranges: list[tuple[int, int]] = []
    labels: list[int] = []
    split_keys: list[int] = []
    for ident, imgs in enumerate(groups):
        start = key
        for img in imgs:
            blob = encode_image(img, fmt)
            id2 = 0
            if split_magic_record and not split_keys:
                id2 = MAGIC  # header bytes 16..19: the magic word at an aligned offset
                pad = (-(24 + (4 if label_as_array else 0) + len(blob))) % 4
                blob = blob + b"\x00" * pad + MAGIC_BYTES + b"tail"  # decoders ignore bytes after the image
                split_keys.append(key)
            label = [float(ident)] if label_as_array else float(ident)
            entries.append((key, pack_record(label, blob, id1=key, id2=id2)))
            labels.append(ident)
            key += 1
        ranges.append((start, key))
    if with_header:
        for ident, (s, e) in enumerate(ranges):
            entries.append((n_images + 1 + ident, pack_record([float(s), float(e)])))
    with open(directory / f"{prefix}.rec", "wb") as rec, open(directory / f"{prefix}.idx", "w") as idx:
        for k, payload in entries:
            idx.write(f"{k}\t{write_record(rec, payload)}\n")
    if groups and groups[0]:
        h, w = groups[0][0].shape[:2]
        (directory / "property").write_text(f"{n_ids},{h},{w}")
    return {"num_images": n_images, "num_ids": n_ids, "labels": labels, "split_keys": split_keys}


# -------------------------------------------------------------------------------- verification .bin
def write_bin(
    path: str | os.PathLike[str],
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    issame: Sequence[bool],
    *,
    fmt: str = "png",
    protocol: int = 2,
    python2: bool = False,
) -> None:
    """insightface's verification .bin: pickle of (bins, issame_list), bins[2i], bins[2i+1] = pair i.

    ``python2=True`` writes the opcodes Python 2's pickle emits for ``str`` (BINSTRING), as in the original
    lfw.bin/cfp_fp.bin files; Python 3 reads them only with ``encoding="bytes"``."""
    if len(pairs) != len(issame):
        raise ValueError(f"{len(pairs)} pairs but {len(issame)} issame flags")
    bins: list[bytes] = []
    for a, b in pairs:
        bins.append(encode_image(a, fmt))
        bins.append(encode_image(b, fmt))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        if python2:
            f.write(_python2_pickle(bins, [bool(s) for s in issame]))
        else:
            pickle.dump((bins, [bool(s) for s in issame]), f, protocol=protocol)


def _python2_pickle(bins: list[bytes], issame: list[bool]) -> bytes:
    """Protocol-2 pickle of (list of py2 str, list of bool) as Python 2.7 writes it."""
    out = [b"\x80\x02(]("]  # PROTO 2, MARK, EMPTY_LIST, MARK
    for blob in bins:
        out.append(b"T" + struct.pack("<I", len(blob)) + blob)  # BINSTRING
    out.append(b"e](")  # APPENDS, EMPTY_LIST, MARK
    out.extend(b"\x88" if s else b"\x89" for s in issame)  # NEWTRUE / NEWFALSE
    out.append(b"et.")  # APPENDS, TUPLE, STOP
    return b"".join(out)


# ---------------------------------------------------------------------------------------- folders
def write_image_folder(
    root: str | os.PathLike[str],
    images_by_identity: Mapping[object, Sequence[np.ndarray]],
    fmt: str = "png",
) -> list[tuple[str, int]]:
    """root/<identity>/<i>.<fmt>; returns (path, sorted-identity index) in the order a scan finds them."""
    root = Path(root)
    names = sorted(str(k) for k in images_by_identity)
    by_name = {str(k): v for k, v in images_by_identity.items()}
    out = []
    ext = "jpg" if fmt.lower() in ("jpg", "jpeg") else fmt.lower()
    for idx, name in enumerate(names):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(by_name[name]):
            p = d / f"{i:04d}.{ext}"
            p.write_bytes(encode_image(img, fmt))
            out.append((str(p), idx))
    return out


def write_food101(
    root: str | os.PathLike[str],
    classes: Sequence[str],
    train_per_class: int,
    test_per_class: int,
    seed: int = 0,
) -> dict[str, list[tuple[np.ndarray, int]]]:
    """torchvision's Food101 layout: food-101/images/<class>/<id>.jpg, meta/{train,test}.json, classes.txt.

    Images are non-square (so the pad-to-square step matters) and stored as JPEG like the real set."""
    rng = np.random.default_rng(seed)
    base = Path(root) / "food-101"
    (base / "meta").mkdir(parents=True, exist_ok=True)
    out: dict[str, list[tuple[np.ndarray, int]]] = {"train": [], "test": []}
    counter = 0
    for split, per in (("train", train_per_class), ("test", test_per_class)):
        meta: dict[str, list[str]] = {}
        for ci, c in enumerate(sorted(classes)):
            (base / "images" / c).mkdir(parents=True, exist_ok=True)
            meta[c] = []
            for _ in range(per):
                h, w = int(rng.integers(40, 64)), int(rng.integers(64, 96))
                img = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
                (base / "images" / c / f"{counter}.jpg").write_bytes(encode_image(img, "jpeg"))
                meta[c].append(f"{c}/{counter}")
                out[split].append((img, ci))
                counter += 1
        (base / "meta" / f"{split}.json").write_text(json.dumps(meta))
    (base / "meta" / "classes.txt").write_text("\n".join(sorted(classes)) + "\n")
    return out


# ------------------------------------------------------------------------------------------ arrays
def write_cifar_batches(
    root: str | os.PathLike[str], n: int, num_classes: int = 10, n_test: int | None = None, seed: int = 0
) -> dict[str, np.ndarray]:
    """CIFAR python batches under root/cifar-10-batches-py (10 classes: five data_batch_i + test_batch) or
    root/cifar-100-python (100 classes: train + test, 'fine_labels' and 'coarse_labels').

    ``n`` training images, labels i % num_classes so every class is present. Returns the arrays written
    (train_x/test_x as N×3×32×32 uint8)."""
    if num_classes not in (10, 100):
        raise ValueError("num_classes must be 10 (CIFAR-10) or 100 (CIFAR-100)")
    rng = np.random.default_rng(seed)
    n_test = max(num_classes, n // 5) if n_test is None else n_test
    train_x = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    test_x = rng.integers(0, 256, size=(n_test, 3072), dtype=np.uint8)
    train_y = np.arange(n) % num_classes
    test_y = np.arange(n_test) % num_classes
    root = Path(root)
    if num_classes == 10:
        d = root / "cifar-10-batches-py"
        d.mkdir(parents=True, exist_ok=True)
        parts = np.array_split(np.arange(n), 5)
        for i, idx in enumerate(parts, 1):
            batch = {
                b"batch_label": f"training batch {i} of 5".encode(),
                b"labels": train_y[idx].tolist(),
                b"data": train_x[idx],
                b"filenames": [f"img{j}.png".encode() for j in idx],
            }
            with open(d / f"data_batch_{i}", "wb") as f:
                pickle.dump(batch, f, protocol=2)
        with open(d / "test_batch", "wb") as f:
            pickle.dump(
                {b"batch_label": b"testing batch 1 of 1", b"labels": test_y.tolist(), b"data": test_x},
                f,
                protocol=2,
            )
        with open(d / "batches.meta", "wb") as f:
            pickle.dump(
                {b"label_names": [f"c{i}".encode() for i in range(10)], b"num_vis": 3072}, f, protocol=2
            )
    else:
        d = root / "cifar-100-python"
        d.mkdir(parents=True, exist_ok=True)
        for name, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
            with open(d / name, "wb") as f:
                pickle.dump(
                    {b"data": x, b"fine_labels": y.tolist(), b"coarse_labels": (y // 5).tolist()},
                    f,
                    protocol=2,
                )
        with open(d / "meta", "wb") as f:
            pickle.dump({b"fine_label_names": [f"c{i}".encode() for i in range(100)]}, f, protocol=2)
    return {
        "train_x": train_x.reshape(-1, 3, 32, 32),
        "train_y": train_y,
        "test_x": test_x.reshape(-1, 3, 32, 32),
        "test_y": test_y,
    }


write_cifar = write_cifar_batches  # the name docs/ARCHITECTURE.md Part B uses


def _write_idx(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack(">HBB", 0, 0x08, arr.ndim))
        f.write(struct.pack(">" + "I" * arr.ndim, *arr.shape))
        f.write(np.ascontiguousarray(arr, dtype=np.uint8).tobytes())


def write_fashion_mnist_raw(
    root: str | os.PathLike[str], n_train: int, n_test: int, seed: int = 0
) -> dict[str, np.ndarray]:
    """torchvision's raw layout root/FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte."""
    rng = np.random.default_rng(seed)
    d = Path(root) / "FashionMNIST" / "raw"
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        _write_idx(d / f"{prefix}-images-idx3-ubyte", x)
        _write_idx(d / f"{prefix}-labels-idx1-ubyte", y)
        out[f"{prefix}_x"], out[f"{prefix}_y"] = x, y
    return out
