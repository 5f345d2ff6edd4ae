"""MNIST's IDX format: a big-endian header (two zero bytes, the type code 0x08 = unsigned byte, the number of
dimensions d, then d 32-bit sizes) followed by the uint8 data in C order.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np


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
