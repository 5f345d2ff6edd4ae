"""insightface verification ``.bin`` files (lfw.bin, cfp_fp.bin, agedb_30.bin, cplfw.bin, calfw.bin).

Format (DESIGN.md, "Formats users bring"): a pickle of ``(bins, issame_list)`` where ``bins`` holds 2·N
encoded images (pair i is ``bins[2i]``, ``bins[2i+1]``) and ``issame_list`` N booleans. Files written by
Python 2 store the images as ``str``; unpickling with ``encoding="bytes"`` turns them into ``bytes``. The file
is read with `safe_pickle` (bytes, lists, booleans, numpy arrays only): a crafted ``.bin`` runs nothing.

Decoding 12,000 JPEGs takes seconds, and the engine evaluates every epoch, so decoded uint8 tensors are
cached in memory (per process) and, when the data folder is writable, on disk next to the file.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from samrepro.data.formats import safe_pickle

CACHE_DIR = ".samrepro_cache"
_MEMO: dict[tuple[str, int, int, int], tuple[torch.Tensor, torch.Tensor]] = {}


class VerificationBinError(ValueError):
    """A ``.bin`` file that is not a pickle of (bins, issame) with 2·N images for N pairs."""


def _as_bytes(item: object) -> bytes:
    if isinstance(item, bytes | bytearray | memoryview):
        return bytes(item)
    if isinstance(item, np.ndarray):
        return item.tobytes()
    if isinstance(item, str):  # a Python 2 pickle read without encoding="bytes"
        return item.encode("latin-1")
    raise VerificationBinError(f"unsupported image entry of type {type(item).__name__} in verification .bin")


def decode_image(data: bytes, size: int) -> np.ndarray:
    """Decode one encoded image to an RGB uint8 array of shape (size, size, 3), resizing if needed."""
    with Image.open(io.BytesIO(data)) as im:
        im = im.convert("RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.BILINEAR)
        return np.asarray(im, dtype=np.uint8)


def decode_images(blobs: Sequence[bytes], size: int, threads: int | None = None) -> torch.Tensor:
    """Decode encoded images into a uint8 tensor [N, 3, size, size] (threads: PIL releases the GIL)."""
    out = np.empty((len(blobs), size, size, 3), dtype=np.uint8)

    def work(i: int) -> None:
        out[i] = decode_image(blobs[i], size)

    workers = threads or min(8, os.cpu_count() or 1)
    if workers > 1 and len(blobs) > 64:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(work, range(len(blobs))))
    else:
        for i in range(len(blobs)):
            work(i)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def read_bin_raw(path: str | os.PathLike[str]) -> tuple[list[bytes], list[bool]]:
    """Load the pickle and validate its shape; return (encoded images, issame)."""
    try:
        obj = safe_pickle.load(path, "verification .bin")
    except safe_pickle.UnsafePickleError as exc:
        raise VerificationBinError(str(exc)) from exc
    if not isinstance(obj, tuple | list) or len(obj) != 2:
        raise VerificationBinError(
            f"{path}: expected a pickle of (bins, issame_list), got {type(obj).__name__}"
        )
    bins, issame = obj
    if not isinstance(bins, list | tuple) or not isinstance(issame, list | tuple | np.ndarray):
        raise VerificationBinError(
            f"{path}: expected (list of encoded images, list of booleans), got "
            f"({type(bins).__name__}, {type(issame).__name__})"
        )
    try:
        bins = [_as_bytes(b) for b in bins]
        issame_list = [bool(v) for v in issame]
    except (VerificationBinError, TypeError, ValueError) as exc:
        raise VerificationBinError(f"{path}: {exc}") from None
    if len(bins) != 2 * len(issame_list):
        raise VerificationBinError(
            f"{path}: {len(bins)} images for {len(issame_list)} pairs (a .bin holds exactly 2 images per pair)"
        )
    return bins, issame_list


def _cache_file(path: Path, size: int, st: os.stat_result) -> Path:
    return path.parent / CACHE_DIR / f"{path.stem}.{st.st_size}.{st.st_mtime_ns}.{size}.pt"


def load_bin(
    path: str | os.PathLike[str], image_size: int = 112, *, disk_cache: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (uint8 images [2N, 3, S, S], bool issame [N]), decoded once per file version.

    The cache key is (path, size, mtime, image size), so a replaced file is decoded again.
    """
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, image_size)
    if key in _MEMO:
        return _MEMO[key]
    cache = _cache_file(path, image_size, st)
    result = None
    if disk_cache and cache.is_file():
        try:
            blob = torch.load(cache, map_location="cpu", weights_only=True)
            result = (blob["images"], blob["issame"])
        except Exception:  # noqa: BLE001 - a corrupt cache is simply rebuilt
            result = None
    if result is None:
        bins, issame = read_bin_raw(path)
        result = (_decode_all(path, bins, image_size), torch.tensor(issame, dtype=torch.bool))
        if disk_cache:
            _write_cache(cache, result)
    _MEMO[key] = result
    return result


def _decode_all(path: Path, bins: list[bytes], size: int) -> torch.Tensor:
    """decode_images, with an undecodable entry reported as a bad .bin file naming it."""
    try:
        return decode_images(bins, size)
    except (
        OSError,
        ValueError,
        SyntaxError,
    ) as exc:  # PIL: UnidentifiedImageError, truncated data, bad header
        raise VerificationBinError(
            f"{path}: an image in it cannot be decoded ({type(exc).__name__}: "
            f"{str(exc)[:120]}); replace the file with a genuine copy"
        ) from exc


def _write_cache(cache: Path, result: tuple[torch.Tensor, torch.Tensor]) -> None:
    """Atomically write the decoded tensors; silently skip read-only data folders."""
    try:
        cache.parent.mkdir(exist_ok=True)
        tmp = cache.with_name(cache.name + f".tmp{os.getpid()}")
        torch.save({"images": result[0], "issame": result[1]}, tmp)
        os.replace(tmp, cache)
    except OSError:
        return


def clear_memory_cache() -> None:
    _MEMO.clear()
