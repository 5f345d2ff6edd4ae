"""MXNet indexed RecordIO (``train.rec`` + ``train.idx``) read without mxnet.

insightface ships its face training sets (CASIA-WebFace, MS1MV2 = faces_emore) in this format, and mxnet is
no longer installable alongside current PyTorch, so the reader is re-implemented from dmlc-core's
``recordio.cc`` (DESIGN.md, "Formats users bring"):

- every record is ``uint32 magic 0xced7230a``, ``uint32 lrec`` (low 29 bits payload length, high 3 bits
  continuation flag), the payload, then zero padding up to a multiple of 4 bytes;
- when the writer finds the magic word at a 4-byte boundary inside a payload it cuts the payload there and
  drops the magic: continuation flag 1 = first part, 2 = middle part, 3 = last part (0 = whole record).
  The reader puts the magic bytes back between the parts;
- a payload starts with the 24-byte header ``<IfQQ`` (flag, label, id, id2); when ``flag > 0`` that many
  float32 labels follow (and the header's own label field is unused); the image bytes come last;
- ``train.idx`` has one ``key<TAB>byte offset`` line per record, the offset of its first part.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
HEADER = struct.Struct("<IfQQ")
LENGTH_MASK = (1 << 29) - 1


class RecordIOError(ValueError):
    """A ``.rec``/``.idx`` pair that does not follow the RecordIO format (names the file and offset)."""


@dataclass(frozen=True)
class IRHeader:
    """The header of an image record: ``labels`` is a tuple (one value when flag == 0)."""

    flag: int
    labels: tuple[float, ...]
    id: int
    id2: int

    @property
    def label(self) -> float:
        """First label value: insightface's image records carry a scalar or an array whose first value is the id."""
        return self.labels[0]


def decode_lrec(word: int) -> tuple[int, int]:
    """Split a length word into (continuation flag, payload length) as dmlc's DecodeFlag/DecodeLength do."""
    return word >> 29, word & LENGTH_MASK


def encode_lrec(cflag: int, length: int) -> int:
    """Inverse of :func:`decode_lrec` (dmlc's EncodeLRec)."""
    if not 0 <= cflag <= 3 or not 0 <= length <= LENGTH_MASK:
        raise ValueError(f"cflag={cflag} / length={length} out of range for a RecordIO length word")
    return (cflag << 29) | length


def unpack(payload: bytes) -> tuple[IRHeader, bytes]:
    """Parse a payload into its header and the remaining (image) bytes, like ``mxnet.recordio.unpack``."""
    if len(payload) < HEADER.size:
        raise RecordIOError(f"record payload of {len(payload)} bytes is shorter than the 24-byte header")
    flag, label, id1, id2 = HEADER.unpack_from(payload, 0)
    rest = payload[HEADER.size :]
    if flag > 0:
        need = 4 * flag
        if len(rest) < need:
            raise RecordIOError(f"header says {flag} float labels but only {len(rest)} bytes follow")
        labels = tuple(float(v) for v in np.frombuffer(rest[:need], dtype="<f4"))
        rest = rest[need:]
    else:
        labels = (float(label),)
    return IRHeader(flag=flag, labels=labels, id=id1, id2=id2), rest


def read_idx(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read ``train.idx`` into (keys, offsets) int64 arrays sorted by key."""
    keys: list[int] = []
    offsets: list[int] = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split("\t")
            if len(parts) != 2:
                raise RecordIOError(f"{path}:{lineno}: expected 'key<TAB>offset', got {line!r}")
            keys.append(int(parts[0]))
            offsets.append(int(parts[1]))
    k = np.asarray(keys, dtype=np.int64)
    o = np.asarray(offsets, dtype=np.int64)
    order = np.argsort(k, kind="stable")
    return k[order], o[order]


class IndexedRecordIO:
    """Random access to an indexed RecordIO file, safe to use from DataLoader worker processes.

    The file handle is opened lazily and re-opened after a fork (checked by pid), because a handle shared
    by several worker processes would interleave their seeks.
    """

    def __init__(
        self, rec_path: str | os.PathLike[str], idx_path: str | os.PathLike[str] | None = None
    ) -> None:
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path) if idx_path is not None else self.rec_path.with_suffix(".idx")
        for p in (self.rec_path, self.idx_path):
            if not p.is_file():
                raise FileNotFoundError(f"RecordIO file {p} does not exist")
        # sorted numpy arrays, not a dict: MS1MV2 has 5.8M records, and a dict of Python ints would cost
        # hundreds of MB in every DataLoader worker (copy-on-write pages touched by reference counts)
        self.keys, self.offsets = read_idx(self.idx_path)
        self._fh = None
        self._pid = -1

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_fh"] = None
        state["_pid"] = -1
        return state

    def _file(self):
        if self._fh is None or self._pid != os.getpid():
            self._fh = open(self.rec_path, "rb")  # noqa: SIM115 - kept open for random access
            self._pid = os.getpid()
        return self._fh

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __len__(self) -> int:
        return len(self.keys)

    def _offset(self, key: int) -> int | None:
        i = int(np.searchsorted(self.keys, int(key)))
        if i < self.keys.size and int(self.keys[i]) == int(key):
            return int(self.offsets[i])
        return None

    def __contains__(self, key: int) -> bool:
        return self._offset(key) is not None

    def read_at(self, offset: int) -> bytes:
        """Read the whole (re-joined) record whose first part starts at ``offset``."""
        f = self._file()
        f.seek(offset)
        chunks: list[bytes] = []
        pos = offset
        expect_first = True
        while True:
            head = f.read(8)
            if len(head) != 8:
                raise RecordIOError(f"{self.rec_path}: truncated record header at byte {pos}")
            magic, word = struct.unpack("<II", head)
            if magic != MAGIC:
                raise RecordIOError(
                    f"{self.rec_path}: bad magic 0x{magic:08x} at byte {pos} (expected 0xced7230a)"
                )
            cflag, length = decode_lrec(word)
            if expect_first and cflag not in (0, 1):
                raise RecordIOError(
                    f"{self.rec_path}: record at byte {offset} starts with continuation flag {cflag}"
                )
            if not expect_first and cflag not in (2, 3):
                raise RecordIOError(
                    f"{self.rec_path}: continuation part at byte {pos} has flag {cflag} (want 2 or 3)"
                )
            padded = (length + 3) & ~3
            body = f.read(padded)
            if len(body) != padded:
                raise RecordIOError(f"{self.rec_path}: truncated payload at byte {pos}")
            chunks.append(body[:length])
            pos += 8 + padded
            if cflag in (0, 3):
                break
            chunks.append(MAGIC_BYTES)
            expect_first = False
        return b"".join(chunks)

    def read(self, key: int) -> bytes:
        """The payload of record ``key`` (header + labels + image bytes)."""
        offset = self._offset(key)
        if offset is None:
            raise KeyError(f"key {key} is not in {self.idx_path}")
        return self.read_at(offset)

    def read_header(self, key: int) -> IRHeader:
        """The header (and label array) of record ``key`` without reading its image bytes.

        Scanning the labels of millions of records must not read the images; a record split into parts
        falls back to the full read (the magic word may sit inside the header itself)."""
        offset = self._offset(key)
        if offset is None:
            raise KeyError(f"key {key} is not in {self.idx_path}")
        f = self._file()
        f.seek(offset)
        head = f.read(8 + HEADER.size)
        if len(head) >= 8:
            magic, word = struct.unpack_from("<II", head)
            cflag, length = decode_lrec(word)
            if magic == MAGIC and cflag == 0 and length >= HEADER.size and len(head) == 8 + HEADER.size:
                flag = HEADER.unpack_from(head, 8)[0]
                need = min(length, HEADER.size + 4 * flag)
                payload = head[8:] + (f.read(need - HEADER.size) if need > HEADER.size else b"")
                return unpack(payload)[0]
        return unpack(self.read_at(offset))[0]

    def read_image_record(self, key: int) -> tuple[IRHeader, bytes]:
        return unpack(self.read(key))


def iter_records(rec_path: str | os.PathLike[str]):
    """Yield every re-joined payload of a ``.rec`` file in file order (no index needed)."""
    size = os.path.getsize(rec_path)
    reader = IndexedRecordIO.__new__(IndexedRecordIO)
    reader.rec_path = Path(rec_path)
    reader._fh = None
    reader._pid = -1
    f = reader._file()
    pos = 0
    try:
        while pos < size:
            payload = reader.read_at(pos)
            pos = f.tell()
            yield payload
    finally:
        reader.close()
