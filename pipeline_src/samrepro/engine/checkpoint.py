"""Atomic file writes and the random-number state a bitwise-identical resume needs.

DESIGN ("Execution", "Results"): every job writes its outputs atomically (temp file in the same folder, fsync,
os.replace), so a job killed at any instant leaves either the previous complete file or the new one, never a
truncated file that looks complete. A checkpoint carries the model, the optimizer (SAM's state_dict), the
schedule, and the RNG states of torch, CUDA, numpy, python and the data-loader generator: with those, a run
resumed from the checkpoint replays exactly the computation the uninterrupted run did.

Loading. checkpoint.pt and model.pt are passed around on a cluster, so they are untrusted: they are read with
``torch.load(weights_only=True)``, which admits tensors and plain python data only, plus exactly the numpy
globals that numpy's RNG state (one uint32 array) pickles into. A file asking for anything else (e.g. a
``__reduce__`` that would run a command), a truncated file or one lacking the expected entries raises
CheckpointError (a ValueError: exit 2) in one line naming the file and the fix; nothing of it is executed.
"""

from __future__ import annotations

import io
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from samrepro.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text

__all__ = [
    "CheckpointError",
    "atomic_torch_save",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "torch_load",
]


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    """torch.save into memory first, then one atomic write (torch.save on a half-written file is the bug)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


class CheckpointError(ValueError):
    """checkpoint.pt/model.pt that is truncated, crafted or not ours; the message names the file and the fix."""


def _numpy_rng_globals() -> list[Any]:
    """The globals numpy's RNG state needs (``_reconstruct`` of a uint32 ndarray), under both module names
    numpy has written them (numpy 1: numpy.core, numpy 2: numpy._core)."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return [
        (_reconstruct, "numpy._core.multiarray._reconstruct"),
        (_reconstruct, "numpy.core.multiarray._reconstruct"),
        np.ndarray,
        np.dtype,
        type(np.dtype(np.uint32)),
    ]


def _why(exc: BaseException) -> str:
    """One clause saying why a file did not load (torch's weights-only message is a page long)."""
    text = str(exc)
    if "Weights only load failed" in text:
        wanted = re.search(r"GLOBAL ([\w.]+)", text)
        what = f"to call {wanted.group(1)}" if wanted else "for objects beyond tensors and plain data"
        return f"it asks {what}, which a checkpoint never needs (refused; nothing in it was run)"
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return f"unreadable, truncated or not a torch file ({first[:160]})"


def torch_load(path: str | Path, required: tuple[str, ...] = ("model",)) -> dict[str, Any]:
    """Load a checkpoint.pt/model.pt as data only (weights_only); a dict holding the `required` keys."""
    path = Path(path)
    try:
        with torch.serialization.safe_globals(_numpy_rng_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files; all mean "bad file"
        raise CheckpointError(f"{path}: {_why(exc)}; {_fix(path)}") from exc
    missing = [k for k in required if not isinstance(obj, dict) or k not in obj]
    if missing:
        raise CheckpointError(f"{path}: not a samrepro checkpoint (it lacks {missing}); {_fix(path)}")
    return obj


def _fix(path: Path) -> str:
    if path.name == "checkpoint.pt":
        return f"delete {path} to restart the run from scratch"
    return f"delete {path} and rerun the job that writes it (snakemake --forcerun {path})"


def capture_rng() -> dict[str, Any]:
    """Every global RNG state a training step may consume (augmentation, dropout, python-level shuffles)."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and python from one integer: same seed => same run on CPU."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
