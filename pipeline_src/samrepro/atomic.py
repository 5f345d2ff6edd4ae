"""Atomic file writes, shared by every job (DESIGN "Results": outputs are written atomically).

Temp file in the same folder, fsync, os.replace: a job killed at any instant leaves either the previous
complete file or the new one, never a truncated file that looks complete to Snakemake or to a resume.
The file gets the mode a plain ``open(path, "w")`` would give it (mkstemp's temp files are 0600): an existing
file keeps its mode, a new one gets 0666 & ~umask, so colleagues in the project group can read the results.
A failed write raises OSError naming the target file (the errno is kept: ENOSPC, EDQUOT, EROFS, ...).
Kept free of torch so that cheap commands (plan, select-rho, prepare) stay cheap.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any


def current_umask() -> int:
    """The process umask, read without changing it (os.umask can only be read by setting it, which races
    with threads creating files); falls back to set-and-restore where /proc is unavailable."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def open_mode(path: Path) -> int:
    """The mode ``open(path, "w")`` would leave: the existing file's, else 0666 minus the umask."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~current_umask()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that the file is either absent/old or complete, never partial."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), open_mode(path))
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):  # name the file the user knows, not the temp file (or none: f.write)
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=True) + "\n")
