"""The study config: loading, schema validation with defaults, semantic checks, derived quantities.

Shared by the Snakefile (which validates with `snakemake.utils.validate` and then calls `check_study`) and by
the CLI (`samrepro plan --config`, which calls `load_study`). Pure Python: no torch import, so that planning
and DAG construction stay fast (the paper DAG must build in seconds on a login node).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from samrepro import catalog, schema

RULE_KINDS = ("prepare", "tune", "train", "evaluate", "track", "report")


def fmt_rho(rho: float) -> str:
    """Canonical text of a rho in paths and wildcards (0.05 -> '0.05'); `float()` parses it back."""
    return f"{float(rho):g}"


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge (override wins), returning new objects: schema defaults must never be shared."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def validate_schema(config: dict[str, Any]) -> dict[str, Any]:
    """Validate against the schema, filling its defaults (as `snakemake.utils.validate` does); ValueError
    naming the offending key, the schema's message and the fix."""
    return schema.validate(config)


def check_study(config: Mapping[str, Any]) -> None:
    """Checks the schema cannot express: setups match the dataset's task, setup_overrides name used setups."""
    for name, exp in config["experiments"].items():
        task = task_of(exp)
        for setup in exp["setups"]:
            if catalog.SETUPS[setup].task != task:
                raise ValueError(
                    f"experiments.{name}.setups: setup '{setup}' is a {catalog.SETUPS[setup].task} setup but "
                    f"dataset '{exp['dataset']['name']}' is a {task} dataset; use the "
                    f"{sorted(catalog.setups_of_task(task))} setups with it"
                )
        for setup in exp.get("setup_overrides", {}):
            if setup not in exp["setups"]:
                raise ValueError(
                    f"experiments.{name}.setup_overrides.{setup}: '{setup}' is not in "
                    f"experiments.{name}.setups {exp['setups']}; add it there or drop the override"
                )
        for setup, over in exp.get("setup_overrides", {}).items():
            if catalog.SETUPS[setup].rho_free and ("rho" in over or "rho_grid" in over):
                raise ValueError(
                    f"experiments.{name}.setup_overrides.{setup}: {setup} has no perturbation, so no rho; "
                    "remove rho/rho_grid there"
                )
        if exp["schedule"]["name"] == "multistep":
            ms = exp["schedule"]["milestones"]
            if ms != sorted(ms) or (any(m < 1 for m in ms) and any(m >= 1 for m in ms)):
                raise ValueError(
                    f"experiments.{name}.schedule.milestones {ms}: give increasing fractions (< 1) or "
                    "increasing epoch numbers, not a mix"
                )


def check_paper_refs(config: Mapping[str, Any], paper_path: str | os.PathLike[str]) -> None:
    """Every experiments.<name>.paper[].path must exist in the published-numbers file: a typo would
    otherwise fail only the report job, after all the training."""
    refs = [
        (name, i, ref)
        for name, exp in config["experiments"].items()
        for i, ref in enumerate(exp.get("paper") or [])
    ]
    if not refs:
        return
    if not os.path.isfile(paper_path):
        raise ValueError(f"invalid study config at key 'paper_results': {paper_path} does not exist")
    root = load_yaml(paper_path)
    for name, i, ref in refs:
        node: Any = root
        for part in ref["path"].split("."):
            if not isinstance(node, dict) or part not in node:
                raise ValueError(
                    f"invalid study config at key 'experiments.{name}.paper.{i}.path': '{ref['path']}': "
                    f"'{part}' is not in {paper_path}"
                )
            node = node[part]


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    with open(path) as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a study config must be a YAML mapping, got {type(data).__name__}")
    return data


def load_study(paths: Iterable[str | os.PathLike[str]]) -> dict[str, Any]:
    """Merge config files (later ones win, as `snakemake --configfile a b`), validate, check."""
    config: dict[str, Any] = {}
    for path in paths:
        config = deep_merge(config, load_yaml(path))
    config = validate_schema(config)
    check_study(config)
    return config


# --- derived quantities (used by the Snakefile helpers and by plan) ------------------------------------


def task_of(exp: Mapping[str, Any]) -> str:
    return catalog.dataset_task(exp["dataset"]["name"])


def setup_value(exp: Mapping[str, Any], setup: str, key: str) -> Any:
    """A per-setup value: setup_overrides.<setup>.<key> if given, else the experiment's."""
    over = exp.get("setup_overrides", {}).get(setup, {})
    return over[key] if key in over else exp[key]


def is_tuned(exp: Mapping[str, Any], setup: str) -> bool:
    """Tuned = the setup has a rho and the config fixes none (DESIGN 'The DAG', step 2)."""
    return not catalog.SETUPS[setup].rho_free and "rho" not in exp.get("setup_overrides", {}).get(setup, {})


def fixed_rho(exp: Mapping[str, Any], setup: str) -> float | None:
    return exp.get("setup_overrides", {}).get(setup, {}).get("rho")


def rho_grid(exp: Mapping[str, Any], setup: str) -> list[float]:
    return [float(r) for r in setup_value(exp, setup, "rho_grid")] if is_tuned(exp, setup) else []


def experiment_spec(config: Mapping[str, Any], experiment: str) -> dict[str, Any]:
    """What `plan` needs of one experiment (no resources, paper refs or primary metric: changing what a job
    neither runs nor reads must not rerun it)."""
    if experiment not in config["experiments"]:
        raise ValueError(
            f"experiment '{experiment}' is not in the study; known: {sorted(config['experiments'])}"
        )
    skip = ("resources", "paper", "primary_metric")
    exp = {k: v for k, v in config["experiments"][experiment].items() if k not in skip}
    return {"study": config["study"], "experiment": experiment, **copy.deepcopy(exp)}


def config_hash(obj: Any) -> str:
    """Stable short hash of a JSON-able object (provenance tag)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def rule_resources(config: Mapping[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """Rule kind (tune, train, evaluate) -> experiment -> the resources its jobs request, over the experiments
    that have jobs of that rule (tune: only those with a tuned setup)."""
    exps = config["experiments"]
    has_tune = {e for e, exp in exps.items() if any(is_tuned(exp, s) for s in exp["setups"])}
    return {
        kind: {e: job_resources(config, kind, e) for e in exps if kind != "tune" or e in has_tune}
        for kind in ("tune", "train", "evaluate")
    }


def mixed_resources(config: Mapping[str, Any]) -> dict[str, list[str]]:
    """Rule kind -> its experiments, for the rules whose jobs request different resources in different
    experiments (a SLURM array gives every task its first job's resources)."""
    return {
        kind: sorted(asked)
        for kind, asked in rule_resources(config).items()
        if len({json.dumps(r, sort_keys=True) for r in asked.values()}) > 1
    }


def array_resource_conflict(config: Mapping[str, Any], array_rules: set[str]) -> str | None:
    """Why the study cannot go as SLURM arrays, or None. The SLURM executor gives every task of an array the
    resources of its first job, so a rule submitted as arrays (--slurm-array-jobs) must request the same
    resources in every experiment that has jobs of it (else a 4-GPU training could run with 1 GPU)."""
    for kind, asked in rule_resources(config).items():
        if (kind not in array_rules and "all" not in array_rules) or not asked:  # no job of this rule at all
            continue
        first, *rest = asked
        for other in (o for o in rest if asked[o] != asked[first]):
            diff = ", ".join(
                f"{k} {asked[first][k]!r} vs {asked[other][k]!r}"
                for k in asked[first]
                if asked[first][k] != asked[other].get(k)
            )
            return (
                f"--slurm-array-jobs includes '{kind}' but experiments {first} and {other} request different "
                f"resources.{kind} ({diff}), and a SLURM array gives every task its first job's resources; "
                f"pass --slurm-array-jobs none, or give them equal resources.{kind}"
            )
    return None


def job_resources(config: Mapping[str, Any], kind: str, experiment: str | None = None) -> dict[str, Any]:
    """Resources of one job kind: the study-wide block, overridden by the experiment's block."""
    if kind not in RULE_KINDS:
        raise ValueError(f"unknown rule kind '{kind}'; known: {RULE_KINDS}")
    res = dict(config["resources"][kind])
    if experiment is not None:
        res.update(config["experiments"][experiment].get("resources", {}).get(kind, {}))
    return res
