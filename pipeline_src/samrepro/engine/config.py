"""Load and validate one run's `run.yaml` (docs/ARCHITECTURE.md Part C) into a plain dict with every default filled.

Why a plain dict and not dataclasses: the same mapping is hashed (config_hash in metrics.json and the
checkpoint, so a resume never mixes two configurations), written back next to the outputs, and read by the
workflow's tools; a dict keeps all three trivially consistent. Every error is a ValueError naming the key,
the bad value and the fix.
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

# The defaults of every key the engine reads. None means "required" for scalars marked in _REQUIRED.
DEFAULTS: dict[str, Any] = {
    "study": "adhoc",
    "experiment": "adhoc",
    "setup": None,
    "seed": 0,
    "phase": "final",
    "rho": None,
    "dataset": {
        "name": None,
        "root": "data",
        "val_fraction": 0.1,
        "split_seed": 0,
        "download": False,
        "options": {},
    },
    "model": {"name": None, "kwargs": {}},
    "embedding_dim": 512,
    "head": {"kwargs": {}},
    "optim": {
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "nesterov": False,
        "label_smoothing": 0.1,
    },
    "schedule": {
        "name": "cosine",
        "epochs": None,
        "milestones": [0.3, 0.6, 0.8],
        "gamma": 0.2,
        "warmup_epochs": 0,
    },
    "batch_size": 128,
    "eval_batch_size": 512,
    "workers": 0,
    "threads": None,
    "device": "auto",
    "amp": "auto",
    "channels_last": "auto",
    "sync_every": 50,
    "data_on_device": "auto",
    "probe_batch_size": 128,
    "sharpness": {"enabled": True, "samples": 256, "iterations": 20},
    "ddp_sync_perturbation": True,
}

_SECTIONS = ("dataset", "model", "head", "optim", "schedule", "sharpness")
_CHOICES: dict[str, tuple[str, ...]] = {
    "phase": ("tune", "final"),
    "device": ("auto", "cpu", "cuda"),
    "amp": ("auto", "bf16", "off"),
    "channels_last": ("auto", "true", "false"),
    "data_on_device": ("auto", "true", "false"),
}


def _fail(key: str, value: Any, fix: str) -> ValueError:
    return ValueError(f"run config: {key}={value!r} is invalid: {fix}")


def _merge(defaults: dict[str, Any], given: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Fill `defaults` with `given`; inside a section an unknown key is an error (catches typos)."""
    out = copy.deepcopy(defaults)
    for key, value in given.items():
        if key not in defaults:
            known = ", ".join(sorted(defaults))
            raise _fail(f"{prefix}{key}", value, f"unknown key; known keys of '{prefix[:-1]}': {known}")
        out[key] = copy.deepcopy(value)
    return out


def _positive(cfg: dict[str, Any], path: str, kind: type, allow_zero: bool = False) -> None:
    obj: Any = cfg
    *parents, leaf = path.split(".")
    for p in parents:
        obj = obj[p]
    value = obj[leaf]
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        raise _fail(path, value, f"expected a {kind.__name__}")
    if value < 0 or (value == 0 and not allow_zero):
        raise _fail(path, value, "must be > 0" if not allow_zero else "must be >= 0")
    if kind is float:
        obj[leaf] = float(value)


def resolve_milestones(milestones: list[Any], epochs: int) -> list[int]:
    """Milestones as epoch indices. All values in (0, 1) are fractions of `epochs` (DESIGN: ×0.2 at 30/60/80 %);
    otherwise they are epoch numbers (integers ≥ 1)."""
    if not isinstance(milestones, list) or not milestones:
        raise _fail("schedule.milestones", milestones, "give a non-empty list of epochs or fractions in (0, 1)")
    for m in milestones:
        if isinstance(m, bool) or not isinstance(m, (int, float)) or m <= 0:
            raise _fail("schedule.milestones", milestones, "every milestone must be a positive number")
    if all(0 < m < 1 for m in milestones):
        return sorted(int(round(m * epochs)) for m in milestones)
    if not all(float(m).is_integer() for m in milestones):
        raise _fail("schedule.milestones", milestones, "mix of fractions and epochs; use only one of the two")
    return sorted(int(m) for m in milestones)


def validate(raw: dict[str, Any]) -> dict[str, Any]:
    """Return the run config with defaults filled; raise ValueError naming the key on bad input."""
    if not isinstance(raw, dict):
        raise ValueError(f"run config: expected a mapping at top level, got {type(raw).__name__}")
    cfg = copy.deepcopy(DEFAULTS)
    for key, value in raw.items():
        if key in _SECTIONS:
            if value is None:
                value = {}
            if not isinstance(value, dict):
                raise _fail(key, value, "expected a mapping")
            cfg[key] = _merge(DEFAULTS[key], value, f"{key}.")
        elif key in DEFAULTS:
            cfg[key] = copy.deepcopy(value)
        else:
            # Tolerated (the planner may add bookkeeping keys), but said out loud so a typo is noticed.
            print(f"samrepro train: warning: run config key {key!r} is not used by the engine", file=sys.stderr)
            cfg[key] = copy.deepcopy(value)

    for path in ("setup", "dataset.name", "model.name"):
        section, _, leaf = path.partition(".")
        value = cfg[section][leaf] if leaf else cfg[section]
        if not isinstance(value, str) or not value:
            raise _fail(path, value, "required; give a non-empty string")
    for key, choices in _CHOICES.items():
        value = cfg[key]
        if isinstance(value, bool) and key in ("channels_last", "data_on_device"):
            value = cfg[key] = "true" if value else "false"
        if value not in choices:
            raise _fail(key, value, f"choose one of {', '.join(choices)}")
    if isinstance(cfg["seed"], bool) or not isinstance(cfg["seed"], int) or cfg["seed"] < 0:
        raise _fail("seed", cfg["seed"], "expected an integer >= 0")
    if cfg["rho"] is not None:
        if isinstance(cfg["rho"], bool) or not isinstance(cfg["rho"], (int, float)) or cfg["rho"] <= 0:
            raise _fail("rho", cfg["rho"], "expected a number > 0 (or null for SGD-style setups)")
        cfg["rho"] = float(cfg["rho"])
    if cfg["schedule"]["epochs"] is None:
        raise _fail("schedule.epochs", None, "required; give the number of training epochs")
    for path in ("schedule.epochs", "batch_size", "eval_batch_size", "probe_batch_size", "embedding_dim",
                 "sharpness.samples", "sharpness.iterations", "sync_every"):
        _positive(cfg, path, int)
    _positive(cfg, "workers", int, allow_zero=True)
    if cfg["threads"] is not None:
        _positive(cfg, "threads", int)
    _positive(cfg, "schedule.warmup_epochs", float, allow_zero=True)
    _positive(cfg, "optim.lr", float)
    for path in ("optim.momentum", "optim.weight_decay", "optim.label_smoothing", "schedule.gamma",
                 "dataset.val_fraction"):
        _positive(cfg, path, float, allow_zero=True)
    if not 0 <= cfg["optim"]["label_smoothing"] < 1:
        raise _fail("optim.label_smoothing", cfg["optim"]["label_smoothing"], "must be in [0, 1)")
    if cfg["schedule"]["name"] not in ("cosine", "multistep"):
        raise _fail("schedule.name", cfg["schedule"]["name"], "choose cosine or multistep")
    if cfg["schedule"]["warmup_epochs"] >= cfg["schedule"]["epochs"] and cfg["schedule"]["warmup_epochs"] > 0:
        raise _fail("schedule.warmup_epochs", cfg["schedule"]["warmup_epochs"], "must be < schedule.epochs")
    if cfg["schedule"]["name"] == "multistep":
        resolve_milestones(cfg["schedule"]["milestones"], cfg["schedule"]["epochs"])
    for sec, key in (("dataset", "options"), ("model", "kwargs"), ("head", "kwargs")):
        if cfg[sec][key] is None:
            cfg[sec][key] = {}
        if not isinstance(cfg[sec][key], dict):
            raise _fail(f"{sec}.{key}", cfg[sec][key], "expected a mapping")
    for path in ("dataset.download", "optim.nesterov", "sharpness.enabled", "ddp_sync_perturbation"):
        section, _, leaf = path.partition(".")
        value = cfg[section][leaf] if leaf else cfg[section]
        if not isinstance(value, bool):
            raise _fail(path, value, "expected true or false")
    return cfg


def load(path: str | Path) -> dict[str, Any]:
    """Read a run.yaml (or .json) and validate it."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"run config: file {str(path)!r} does not exist; pass --config <run.yaml>")
    text = path.read_text()
    if path.suffix == ".json":
        raw = json.loads(text)
    else:
        import yaml  # lazily: only needed here

        raw = yaml.safe_load(text)
    return validate(raw or {})


def config_hash(cfg: dict[str, Any]) -> str:
    """Short stable hash of the resolved config (key order independent): identifies a run's settings."""
    blob = json.dumps(cfg, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def resume_hash(cfg: dict[str, Any]) -> str:
    """Hash of the settings that determine the trajectory; workers/eval batch size/device may change on resume."""
    c = copy.deepcopy(cfg)
    for key in ("workers", "threads", "eval_batch_size", "device", "sync_every"):
        c.pop(key, None)
    c["dataset"].pop("download", None)
    c["dataset"].pop("root", None)
    return config_hash(c)
