"""Read the job outputs of one run folder (run.yaml, metrics.json, history.csv, eval.json) into plain data.

Shared by `track` (MLflow) and `report` (pandas): both see the same numbers, read the same way. A missing or
corrupt file is a ValueError naming it and how to redo that run with the workflow (`redo_hint`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from samrepro.errors import read_json, read_yaml

RUN_FILES = ("run.yaml", "metrics.json", "history.csv", "eval.json")


@dataclass
class RunRecord:
    """One training run (tuning or final): identity, config, final metrics, per-epoch history."""

    path: Path
    experiment: str
    setup: str
    seed: int
    phase: str
    rho: float | None
    config: dict[str, Any]
    metrics: dict[str, Any]
    evaluation: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def key(self) -> str:
        """Identity of the run across re-runs (the MLflow tag samrepro.key)."""
        if self.phase == "tune":
            return f"{self.experiment}/{self.setup}/tune/rho{self.rho:g}_seed{self.seed}"
        return f"{self.experiment}/{self.setup}/seed{self.seed}"

    def content_hash(self) -> str:
        """Hash of the run's files: a re-trained run (new numbers) gets a new hash, an unchanged one not."""
        h = hashlib.sha256()
        for name in RUN_FILES:
            p = self.path / name
            h.update(name.encode())
            h.update(p.read_bytes() if p.is_file() else b"<missing>")
        return h.hexdigest()[:20]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


IDENTITY_KEYS = frozenset({"seed", "rho", "epochs"})


def flatten_eval(evaluation: Mapping[str, Any]) -> dict[str, float]:
    """eval.json -> flat numeric metrics. Face benchmarks `{lfw: {acc_mean, acc_std}}` (under 'benchmarks' or
    at top level) become `lfw` and `lfw_std`; other nested mappings (settings such as `sharpness`) and the
    run's identity (seed, rho) are not metrics."""
    out: dict[str, float] = {}

    def bench(name: str, obj: Mapping[str, Any]) -> None:
        for key, suffix in (("acc_mean", ""), ("acc_std", "_std")):
            v = _number(obj.get(key))
            if v is not None:
                out[f"{name}{suffix}"] = v

    for key, value in evaluation.items():
        if key in IDENTITY_KEYS:
            continue
        if isinstance(value, Mapping):
            if "acc_mean" in value:
                bench(key, value)
            elif key in ("benchmarks", "verification"):
                for name, sub in value.items():
                    if isinstance(sub, Mapping):
                        bench(name, sub)
            continue
        v = _number(value)
        if v is not None:
            out[key] = v
    return out


def numeric_items(data: Mapping[str, Any]) -> dict[str, float]:
    """Top-level numeric entries (booleans excluded)."""
    return {k: v for k, v in ((k, _number(v)) for k, v in data.items()) if v is not None}


def redo_hint(path: Path) -> str:
    """How to make the workflow write `path` again: Snakemake reruns the job of a missing output, and
    --forcerun reruns it even when the file exists (train resumes from the run's checkpoint.pt)."""
    return (
        f"redo it: delete {path} and rerun snakemake, or run `snakemake --forcerun {path}` "
        "(with your usual --configfile/--profile)"
    )


def read_history(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    try:
        return _history_rows(path)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(
            f"{path}: not a history.csv ({exc}); {redo_hint(path.parent / 'metrics.json')}"
        ) from exc


def _history_rows(path: Path) -> list[dict[str, float]]:
    rows = []
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            parsed: dict[str, float] = {}
            for k, v in row.items():
                if k is None or v in (None, ""):
                    continue
                try:
                    parsed[k] = float(v)
                except ValueError:
                    continue
            rows.append(parsed)
    return rows


def read_run(folder: str | Path, require_eval: bool = False) -> RunRecord:
    """Read one run folder; the identity comes from metrics.json (written by `samrepro train`)."""
    folder = Path(folder)
    mpath = folder / "metrics.json"
    if not mpath.is_file():
        raise ValueError(f"{folder}: no metrics.json, the run did not finish; {redo_hint(mpath)}")
    metrics = _mapping(read_json(mpath, redo_hint(mpath)), mpath)
    for key in ("experiment", "setup", "seed", "phase"):
        if key not in metrics:
            raise ValueError(
                f"{mpath}: lacks '{key}' (docs/ARCHITECTURE.md Part C metrics.json); {redo_hint(mpath)}"
            )
    epath = folder / "eval.json"
    if require_eval and not epath.is_file():
        raise ValueError(
            f"{folder}: no eval.json; {redo_hint(epath)} (or `samrepro evaluate --run {folder}`)"
        )
    evaluation = _mapping(read_json(epath, redo_hint(epath)), epath) if epath.is_file() else {}
    cpath = folder / "run.yaml"
    config = _read_yaml(cpath) if cpath.is_file() else {}
    rho = metrics.get("rho")
    return RunRecord(
        path=folder,
        experiment=str(metrics["experiment"]),
        setup=str(metrics["setup"]),
        seed=int(metrics["seed"]),
        phase=str(metrics["phase"]),
        rho=None if rho is None else float(rho),
        config=config or {},
        metrics=metrics,
        evaluation=evaluation,
        history=read_history(folder / "history.csv"),
    )


def _mapping(data: Any, path: Path) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}; {redo_hint(path)}")
    return data


def _read_yaml(path: Path) -> dict[str, Any]:
    redo = redo_hint(path.parent / "metrics.json")
    data = read_yaml(path, redo)
    if data is not None and not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping, got {type(data).__name__}; {redo}")
    return data or {}


def run_folder(path: str | Path) -> Path:
    """A run folder from either the folder or one of its files (the workflow passes eval.json/metrics.json)."""
    p = Path(path)
    return p.parent if p.suffix in (".json", ".csv", ".yaml") else p


def flatten_params(obj: Any, prefix: str = "") -> dict[str, str]:
    """Nested config -> {'optim.lr': '0.1', ...} (MLflow params are flat strings)."""
    if isinstance(obj, Mapping):
        if not obj:
            return {prefix: "{}"} if prefix else {}
        out: dict[str, str] = {}
        for k, v in obj.items():
            out.update(flatten_params(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: json.dumps(obj) if isinstance(obj, (list, tuple)) else str(obj)}


def finite(value: float) -> bool:
    return math.isfinite(value)
