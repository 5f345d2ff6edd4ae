"""What a run writes besides weights: history.csv, metrics.json, provenance, the per-epoch progress line.

All files are written atomically (DESIGN: an interrupted job never leaves a file that looks complete);
history.csv is rewritten whole each epoch from the rows the checkpoint carries, so a resumed run never
duplicates or loses an epoch's row.
"""

from __future__ import annotations

import csv
import io
import math
import os
import platform
import socket
import sys
from pathlib import Path
from typing import Any, TextIO

from samrepro.engine.checkpoint import atomic_write_text

HISTORY_COLUMNS = (
    "epoch",
    "lr",
    "train_loss",
    "train_acc",
    "eval_acc",
    "probe_ce_loss",
    "probe_aace_loss",
    "probe_ce_grad_norm",
    "probe_aace_grad_norm",
    "epoch_time_s",
)


RUN_KEYS = ("study", "experiment", "setup", "seed", "rho", "phase")


def run_identity(cfg: dict[str, Any]) -> dict[str, Any]:
    """The run's identity (study, experiment, setup, seed, rho, phase) that heads metrics.json and eval.json."""
    return {k: cfg[k] for k in RUN_KEYS}


def eval_split(cfg: dict[str, Any]) -> str:
    """The split a run is judged on: tuning runs on the validation split, final runs on the test set."""
    return "val" if cfg["phase"] == "tune" else "test"


def write_history(path: str | Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else _fmt(row[k])) for k in HISTORY_COLUMNS})
    atomic_write_text(path, buf.getvalue())


def _fmt(v: Any) -> str:
    # repr of a float round-trips exactly: the history file is as precise as the run
    return repr(float(v)) if isinstance(v, float) else str(v)


def read_history(path: str | Path) -> list[dict[str, Any]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [
        {k: (int(v) if k == "epoch" else (float(v) if v != "" else None)) for k, v in r.items()} for r in rows
    ]


def versions() -> dict[str, str]:
    import numpy
    import torch

    import samrepro

    out = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "samrepro": samrepro.__version__,
    }
    if torch.cuda.is_available():
        out["cuda"] = str(torch.version.cuda)
        out["cudnn"] = str(torch.backends.cudnn.version())
    return out


def provenance() -> dict[str, Any]:
    """Where and under which scheduler job the run happened (SLURM_JOB_ID for the cluster tests). A task of a
    SLURM array job (the slurm profile submits tune/train/evaluate as arrays) is `<array job id>_<task id>`,
    as squeue, sacct and scontrol name it; slurm_array_job_id / slurm_array_task_id hold the two parts."""
    array_job, task = (
        os.environ.get("SLURM_ARRAY_JOB_ID") or None,
        os.environ.get("SLURM_ARRAY_TASK_ID") or None,
    )
    job = f"{array_job}_{task}" if array_job and task else os.environ.get("SLURM_JOB_ID") or None
    return {
        "host": socket.gethostname(),
        "slurm_job_id": job,
        "slurm_array_job_id": array_job,
        "slurm_array_task_id": task,
        "versions": versions(),
    }


def resource_usage(device: Any = None) -> dict[str, float | None]:
    """Peak memory of this process: host resident set (MiB; getrusage's ru_maxrss is KiB on Linux, bytes on
    macOS) and the CUDA caching allocator's peak allocation on `device` (MiB; None off CUDA)."""
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_mb = rss / 2**20 if sys.platform == "darwin" else rss / 1024
    cuda_mb = None
    if device is not None and getattr(device, "type", None) == "cuda":
        import torch

        cuda_mb = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return {"peak_rss_mb": round(rss_mb, 1), "cuda_max_allocated_mb": cuda_mb}


def finite(x: float) -> bool:
    return math.isfinite(x)


class Progress:
    """One line per epoch on stdout; a progress bar on stderr only when stderr is a terminal."""

    def __init__(self, label: str, total_epochs: int, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = total_epochs
        self.err = stream or sys.stderr
        self.tty = bool(getattr(self.err, "isatty", lambda: False)())

    def bar(self, epoch: int, step: int, steps: int, loss: float) -> None:
        if not self.tty:
            return
        width = 30
        done = int(width * step / max(steps, 1))
        self.err.write(
            f"\r{self.label} epoch {epoch + 1}/{self.total} [{'#' * done}{'.' * (width - done)}] "
            f"{step}/{steps} loss {loss:.4f}"
        )
        self.err.flush()

    def epoch_line(self, row: dict[str, Any]) -> None:
        if self.tty:
            self.err.write("\r" + " " * 100 + "\r")
            self.err.flush()

        def f(key: str, spec: str) -> str:
            v = row.get(key)
            return "-" if v is None else format(v, spec)

        print(
            f"{self.label} epoch {row['epoch']}/{self.total} lr {f('lr', '.4g')} loss {f('train_loss', '.4f')} "
            f"train_acc {f('train_acc', '.2f')} eval_acc {f('eval_acc', '.2f')} "
            f"probe ce {f('probe_ce_loss', '.4f')} aace {f('probe_aace_loss', '.4f')} "
            f"|g_ce| {f('probe_ce_grad_norm', '.4g')} |g_aace| {f('probe_aace_grad_norm', '.4g')} "
            f"{f('epoch_time_s', '.2f')}s",
            flush=True,
        )
