"""Read the python pickles users bring (CIFAR batches, insightface ``.bin`` benchmarks) as data only.

A pickle may name any importable callable (``GLOBAL os system`` + ``REDUCE`` runs a command), so these files,
downloaded or passed around on a cluster, are read with an unpickler whose only callables are those the
formats hold: numpy array reconstruction (``_reconstruct``/``_frombuffer``, ``ndarray``, ``dtype``, scalars)
and ``_codecs.encode`` (how protocol 2 spells ``bytes``), the latter limited to latin-1. Everything else —
strings, bytes, numbers, lists, tuples, dicts, booleans — needs no callable at all. Any other global raises
UnsafePickleError naming the file and the refused global; nothing of the file is executed.
"""

from __future__ import annotations

import codecs
import os
import pickle
from typing import Any

import numpy as np


class UnsafePickleError(ValueError):
    """The pickle asks for a callable its format never holds (or is not a pickle at all)."""


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol 2 uses it for ``bytes``: only the latin-1 codec (no other codec runs)."""
    if codecs.lookup(encoding).name != "iso8859-1" or not isinstance(text, str):
        raise UnsafePickleError(f"_codecs.encode with codec {encoding!r}")
    return text.encode("latin-1")


def _numpy_globals() -> dict[tuple[str, str], Any]:
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray, numeric
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for module in ("numpy.core", "numpy._core"):
        allowed[(f"{module}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{module}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{module}.numeric", "_frombuffer")] = numeric._frombuffer
    for dtype_class in {type(np.dtype(t)) for t in (np.uint8, np.int64, np.int32, np.bool_, np.float32)}:
        allowed[("numpy.dtypes", dtype_class.__name__)] = dtype_class
    return allowed


ALLOWED: dict[tuple[str, str], Any] = {**_numpy_globals(), ("_codecs", "encode"): _latin1_encode}


class DataUnpickler(pickle.Unpickler):
    """pickle.Unpickler that resolves only the globals in ALLOWED."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED:
            return ALLOWED[(module, name)]
        raise UnsafePickleError(f"{module}.{name}")


def load(path: str | os.PathLike[str], what: str) -> Any:
    """Unpickle `path` (``encoding="bytes"``, so Python 2 ``str`` becomes ``bytes``) admitting data only.

    `what` names the format in the error: "<path>: not a <what> (...)"."""
    try:
        with open(path, "rb") as fh:
            return DataUnpickler(fh, encoding="bytes").load()
    except OSError:
        raise
    except UnsafePickleError as exc:
        raise UnsafePickleError(
            f"{path}: refused to load: the file asks for {exc}, which a {what} never holds (nothing in it was "
            "run); replace it with a genuine copy"
        ) from None
    except Exception as exc:  # noqa: BLE001 - truncated/garbled pickles raise many types; all mean "bad file"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise UnsafePickleError(f"{path}: not a {what} ({type(exc).__name__}: {first})") from exc
