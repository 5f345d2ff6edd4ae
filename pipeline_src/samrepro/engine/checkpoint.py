"""Atomic file writes and the random-number state a bitwise-identical resume needs.

DESIGN ("Execution", "Results"): every job writes its outputs atomically (temp file in the same folder, fsync,
os.replace), so a job killed at any instant leaves either the previous complete file or the new one, never a
truncated file that looks complete. A checkpoint carries the model, the optimizer (SAM's state_dict), the
schedule, and the RNG states of torch, CUDA, numpy, python and the data-loader generator: with those, a run
resumed from the checkpoint replays exactly the computation the uninterrupted run did.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from samrepro.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text

__all__ = ["atomic_torch_save", "atomic_write_bytes", "atomic_write_json", "atomic_write_text"]


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    """torch.save into memory first, then one atomic write (torch.save on a half-written file is the bug)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def torch_load(path: str | Path) -> Any:
    """Load a file this engine wrote (it holds numpy RNG state and python tuples, hence weights_only=False)."""
    return torch.load(path, map_location="cpu", weights_only=False)


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
