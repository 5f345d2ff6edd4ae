"""rho selection on the validation split (DESIGN 'The DAG', step 2): mean selection_score over tuning seeds,
the best mean wins, ties go to the smaller rho (less perturbation is the conservative choice)."""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from samrepro.atomic import atomic_write_text
from samrepro.errors import read_json

TIE_DECIMALS = 9  # scores equal to 1e-9 (percent) are ties: float noise must not decide


def read_tuning_metrics(paths: Iterable[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    rows = []
    for path in paths:
        data = read_json(
            path,
            f"redo that tuning run: delete {path} and rerun snakemake, or run `snakemake --forcerun {path}`",
        )
        for key in ("experiment", "setup", "rho", "seed", "selection_score"):
            if key not in data:
                raise ValueError(f"{path}: metrics.json lacks '{key}' (written by `samrepro train`)")
        if data["rho"] is None:
            raise ValueError(f"{path}: rho is null; only runs of a setup with a rho can be tuned")
        score = float(data["selection_score"])
        if not math.isfinite(score):
            raise ValueError(f"{path}: selection_score is {score}; the run diverged, inspect its history.csv")
        rows.append(
            {
                "path": str(path),
                "experiment": data["experiment"],
                "setup": data["setup"],
                "rho": float(data["rho"]),
                "seed": int(data["seed"]),
                "score": score,
            }
        )
    if not rows:
        raise ValueError("select-rho: no metrics.json given")
    keys = {(r["experiment"], r["setup"]) for r in rows}
    if len(keys) != 1:
        raise ValueError(
            f"select-rho: metrics of several experiment/setup pairs {sorted(keys)}; give one setup's runs"
        )
    return rows


def select_rho(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by_rho: dict[float, list[float]] = defaultdict(list)
    seeds: dict[float, list[int]] = defaultdict(list)
    for r in rows:
        by_rho[r["rho"]].append(r["score"])
        seeds[r["rho"]].append(r["seed"])
    grid = [
        {
            "rho": rho,
            "seeds": sorted(seeds[rho]),
            "scores": by_rho[rho],
            "mean_score": sum(by_rho[rho]) / len(by_rho[rho]),
        }
        for rho in sorted(by_rho)
    ]
    # max by rounded mean, then by smaller rho (grid is sorted ascending, max keeps the first maximum)
    best = max(grid, key=lambda g: (round(g["mean_score"], TIE_DECIMALS), -g["rho"]))
    return {
        "experiment": rows[0]["experiment"],
        "setup": rows[0]["setup"],
        "rho": best["rho"],
        "score": best["mean_score"],
        "grid": grid,
        "criterion": "max mean selection_score (validation) over tuning seeds; ties -> smaller rho",
    }


def write_best(paths: Iterable[str | os.PathLike[str]], out: str | os.PathLike[str]) -> dict[str, Any]:
    best = select_rho(read_tuning_metrics(paths))
    atomic_write_text(out, json.dumps(best, indent=2) + "\n")
    return best
