"""Expand one experiment x setup x seed (x rho) of a study into the run config `run.yaml` (docs/ARCHITECTURE.md Part C).

The run config is everything `samrepro train`/`evaluate` need, so a run folder is self-describing: it can be
re-run, resumed or tracked without the study config. Tuning runs train on train-minus-validation
(phase "tune"); final runs take rho from the tuning's `best.json` (DESIGN 'The DAG', steps 2-3).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from samrepro import catalog, schema
from samrepro.atomic import atomic_write_text
from samrepro.errors import read_json
from samrepro.study.config import fixed_rho, is_tuned, setup_value

PHASES = ("tune", "final")


def resolve_rho(
    spec: Mapping[str, Any], setup: str, phase: str, rho: float | None, best: str | None
) -> float | None:
    """The rho of a run: none for rho-free setups, the grid value when tuning, else fixed or best.json."""
    name = f"{spec['experiment']}/{setup}"
    if catalog.get_setup(setup).rho_free:
        if rho is not None:
            raise ValueError(f"{name}: setup {setup} has no perturbation; do not pass --rho")
        return None
    if phase == "tune":
        if rho is None:
            raise ValueError(f"{name}: a tuning run needs --rho (one value of the setup's rho_grid)")
        if rho <= 0:
            raise ValueError(f"{name}: --rho must be > 0, got {rho}")
        return float(rho)
    if rho is not None:
        return float(rho)
    fixed = fixed_rho(spec, setup)
    if fixed is not None:
        return float(fixed)
    if not is_tuned(spec, setup):  # pragma: no cover - is_tuned is False only for fixed/rho-free setups
        raise ValueError(f"{name}: no rho")
    if best is None:
        raise ValueError(
            f"{name}: a final run of a tuned setup needs --best best.json (written by `samrepro select-rho`) "
            f"or a fixed rho in setup_overrides.{setup}.rho"
        )
    redo = f"delete {best} and rerun snakemake (select-rho writes it again), or run `snakemake --forcerun {best}`"
    data = read_json(best, redo)
    if not isinstance(data, dict) or not isinstance(data.get("rho"), int | float):
        raise ValueError(f"{best}: not a best.json (no numeric 'rho'); {redo}")
    if data.get("experiment") != spec["experiment"] or data.get("setup") != setup:
        raise ValueError(
            f"{best} is for {data.get('experiment')}/{data.get('setup')}, not {name}: pass the setup's own best.json"
        )
    return float(data["rho"])


def settings_keys() -> list[str]:
    """The keys an experiment hands unchanged to its runs: the schema's `$defs/settings` (one place)."""
    return list(schema.load_schema()["$defs"]["settings"]["properties"])


def build_run_config(
    spec: Mapping[str, Any],
    setup: str,
    seed: int,
    phase: str,
    rho: float | None = None,
    best: str | None = None,
) -> dict[str, Any]:
    """One run config (docs/ARCHITECTURE.md Part C 'run.yaml') from an experiment spec (`study.config.experiment_spec`)."""
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, got '{phase}'")
    if setup not in spec["setups"]:
        raise ValueError(
            f"setup '{setup}' is not in experiments.{spec['experiment']}.setups {spec['setups']}"
        )
    seeds = spec["tune"]["seeds"] if phase == "tune" else spec["seeds"]
    if seed not in seeds:
        raise ValueError(
            f"seed {seed} is not a {'tune.seeds' if phase == 'tune' else 'seeds'} entry {seeds} of "
            f"experiments.{spec['experiment']}"
        )
    epochs = int(setup_value(spec, setup, "epochs"))
    if phase == "tune" and spec["tune"].get("epochs"):
        epochs = int(spec["tune"]["epochs"])
    optim = {**spec["optim"], **spec.get("setup_overrides", {}).get(setup, {}).get("optim", {})}
    return {
        "study": spec["study"],
        "experiment": spec["experiment"],
        "setup": setup,
        "seed": int(seed),
        "phase": phase,
        "rho": resolve_rho(spec, setup, phase, rho, best),
        **{key: copy.deepcopy(spec[key]) for key in settings_keys()},
        "optim": optim,
        "schedule": {**spec["schedule"], "epochs": epochs},
        "batch_size": int(setup_value(spec, setup, "batch_size")),
    }


CHECKPOINT = "checkpoint.pt"


def write_run_config(run: Mapping[str, Any], out: str | os.PathLike[str]) -> None:
    """Write run.yaml; if the folder held a run of a *different* config (the study changed, Snakemake reruns
    the job), its checkpoint.pt is stale: remove it so the new run starts afresh instead of the engine
    refusing to resume. Same config -> the checkpoint stays and the run resumes (interrupted job)."""
    out = Path(out)
    text = yaml.safe_dump(dict(run), sort_keys=False)
    stale = out.parent / CHECKPOINT
    if out.is_file() and stale.is_file() and yaml.safe_load(out.read_text()) != yaml.safe_load(text):
        stale.unlink()
        print(f"samrepro plan: the run config changed; removed the stale {stale}")
    atomic_write_text(out, text)
