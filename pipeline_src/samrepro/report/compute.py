"""The report's compute section: estimated against measured cost of every training run, so the device
profile of `samrepro estimate` can be calibrated.

Per run: estimated seconds = C_run / (peak·u·n) (C_run, the profile and n as in `samrepro.study.estimate`:
n = GPUs of the run, or its CPU threads), measured seconds = metrics.json `wall_time_s` (the training
job's wall clock, resumes included). Per experiment × phase × setup:

    ratio = Σ measured / Σ estimated          (> 1: slower than the profile assumes; lower its utilisation)

Beside it, images/s and the peak memory the runs recorded (host RSS; CUDA max allocated on a GPU) when their
metrics.json carries them. Evaluate jobs record no wall time, so they are not compared. A run whose run.yaml
the estimate cannot read (e.g. a dataset with neither files nor a declared size) shows '-' as its estimate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from samrepro.track.runs import RunRecord

COLUMNS = (
    "experiment",
    "phase",
    "setup",
    "runs",
    "estimated_s",
    "measured_s",
    "ratio",
    "images_per_s",
    "peak_rss_mb",
    "cuda_max_allocated_mb",
    "profile",
)


def run_costs(runs: Sequence[RunRecord], estimate: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """One row per run with a measured wall time: estimated and measured seconds, throughput, memory."""
    rows = [_run_row(r, estimate or {}) for r in runs if _number(r.metrics.get("wall_time_s")) is not None]
    return pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in ("runs", "ratio")])


def _run_row(run: RunRecord, estimate: Mapping[str, Any]) -> dict[str, Any]:
    from samrepro.study.estimate import device_of_run, train_run_flops

    profile, units = device_of_run({"estimate": dict(estimate)}, run.config, run.metrics)
    m = run.metrics
    try:
        estimated = train_run_flops(run.config) / profile.flops_per_s(units)
    except (KeyError, TypeError, ValueError):  # a run.yaml the estimate cannot read: shown, not estimated
        estimated = None
    return {
        "experiment": run.experiment,
        "phase": run.phase,
        "setup": run.setup,
        "estimated_s": estimated,
        "measured_s": float(m["wall_time_s"]),
        "images_per_s": _number(m.get("images_per_s")),
        "peak_rss_mb": _number(m.get("peak_rss_mb")),
        "cuda_max_allocated_mb": _number(m.get("cuda_max_allocated_mb")),
        "profile": profile.name,
    }


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def compute_table(costs: pd.DataFrame) -> pd.DataFrame:
    """Per experiment × phase × setup: runs, Σ estimated, Σ measured, their ratio, mean images/s, peak memory."""
    if costs.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    keys = ["experiment", "phase", "setup"]
    grouped = costs.groupby(keys, sort=False)
    table = grouped.agg(
        runs=("measured_s", "size"),
        estimated_s=("estimated_s", lambda v: v.sum(min_count=len(v))),
        measured_s=("measured_s", "sum"),
        images_per_s=("images_per_s", "mean"),
        peak_rss_mb=("peak_rss_mb", "max"),
        cuda_max_allocated_mb=("cuda_max_allocated_mb", "max"),
        profile=("profile", "first"),
    ).reset_index()
    table["ratio"] = table["measured_s"] / table["estimated_s"]
    return table[list(COLUMNS)]


def compute_markdown(table: pd.DataFrame) -> str:
    """The table as Markdown (seconds, ratio to two decimals; '-' where a run recorded nothing)."""
    if table.empty:
        return "No run recorded its wall time.\n"
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(_cell(row[c]) for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "-" if pd.isna(value) else f"{value:.3g}"
    return str(value)


def compute_section(runs: Sequence[RunRecord], estimate: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What the report templates need: the table (records), its Markdown, and the study-wide ratio."""
    table = compute_table(run_costs(runs, estimate))
    known = table.dropna(subset=["estimated_s"])
    total = float(known["measured_s"].sum() / known["estimated_s"].sum()) if not known.empty else None
    return {
        "rows": table.to_dict("records"),
        "markdown": compute_markdown(table),
        "ratio": total,
        "ratio_text": "-" if total is None else f"{total:.3g}",
        "header": list(COLUMNS),
        "cells": [[_cell(row[c]) for c in COLUMNS] for _, row in table.iterrows()],
    }
