"""Load and validate one run's `run.yaml` (docs/ARCHITECTURE.md Part C) into a plain dict with every default filled.

Keys, types and defaults come from the one schema (workflow/schemas/config.schema.yaml, `$defs/run`, which
shares `$defs/settings` with the study's experiments), through the same jsonschema path as the study
config: a run.yaml written by hand and one planned from a study get the same defaults. Here are only the
checks a schema cannot express (warmup shorter than the run, milestones all fractions or all epochs) and
the normalisations the engine relies on (numbers as the schema types them; channels_last and
data_on_device as strings).

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

from samrepro import schema
from samrepro.errors import read_json, read_yaml

# Choices the engine reads as strings; YAML's true/false are accepted and written back as "true"/"false".
_BOOL_STRINGS = ("channels_last", "data_on_device")
REGENERATE = "fix it or regenerate it with `samrepro plan`"


def _fail(key: str, value: Any, fix: str) -> ValueError:
    return ValueError(f"run config: {key}={value!r} is invalid: {fix}")


def resolve_milestones(milestones: list[Any], epochs: int) -> list[int]:
    """Milestones as epoch indices. All values in (0, 1) are fractions of `epochs` (DESIGN: ×0.2 at 30/60/80 %);
    otherwise they are epoch numbers (integers ≥ 1)."""
    if not isinstance(milestones, list) or not milestones:
        raise _fail(
            "schedule.milestones", milestones, "give a non-empty list of epochs or fractions in (0, 1)"
        )
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
    _warn_unused(raw)
    cfg = schema.validate(raw, "run", "run config")
    root = schema.load_schema()
    schema.normalize_numbers(cfg, root["$defs"]["run"], root)
    _check_schedule(cfg["schedule"])
    for key in _BOOL_STRINGS:
        if isinstance(cfg[key], bool):
            cfg[key] = "true" if cfg[key] else "false"
    return cfg


def _warn_unused(raw: dict[str, Any]) -> None:
    """Unknown top-level keys are tolerated (the planner may add bookkeeping) but said out loud."""
    root = schema.load_schema()
    for key in sorted(set(raw) - schema.property_names(root["$defs"]["run"], root)):
        print(f"samrepro train: warning: run config key {key!r} is not used by the engine", file=sys.stderr)


def _check_schedule(sched: dict[str, Any]) -> None:
    """What the schema cannot say: warmup ends before the run does; milestones resolve to epochs."""
    if 0 < sched["warmup_epochs"] >= sched["epochs"]:
        raise _fail("schedule.warmup_epochs", sched["warmup_epochs"], "must be < schedule.epochs")
    if sched["name"] == "multistep":
        resolve_milestones(sched["milestones"], sched["epochs"])


def load(path: str | Path) -> dict[str, Any]:
    """Read a run.yaml (or .json) and validate it; a file that cannot be read as one is refused naming it."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"run config: file {str(path)!r} does not exist; pass --config <run.yaml>")
    raw = read_json(path, REGENERATE) if path.suffix == ".json" else read_yaml(path, REGENERATE)
    if raw and not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping at top level, got {type(raw).__name__}; {REGENERATE}")
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
