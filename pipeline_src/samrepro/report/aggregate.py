"""Aggregation for the report (DESIGN 'The DAG', step 6): per-seed metrics -> mean ± std per
experiment x setup x metric, the papers' numbers and our difference beside them, and a Welch t-test of each
setup against its baseline (samrepro.catalog: SAM vs SGD, AACE vs SAM, FlatFace-* vs its margin head)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from samrepro.report.published import paper_value
from samrepro.track.runs import RunRecord, flatten_eval

# metrics.json entries worth a column (the rest are provenance); eval.json's figures all are
RUN_METRICS = ("train_loss", "eval_acc", "wall_time_s", "images_per_s")
PRIMARY = {"classification": "test_top1", "face": "verification_mean"}
__all__ = [
    "PRIMARY",
    "comparison_table",
    "fmt_cell",
    "fmt_mean_std",
    "fmt_p",
    "paper_value",
    "runs_frame",
    "summarize",
    "welch_p",
]


def baselines() -> dict[str, str | None]:
    """setup -> baseline setup, from the library's single definition (samrepro.catalog, torch-free)."""
    from samrepro.catalog import SETUPS

    return {name: s.baseline for name, s in SETUPS.items()}


def runs_frame(runs: Iterable[RunRecord]) -> pd.DataFrame:
    """Long table: one row per (experiment, setup, seed, metric) of the final runs."""
    rows = []
    for r in runs:
        values = {
            k: float(r.metrics[k])
            for k in RUN_METRICS
            if isinstance(r.metrics.get(k), (int, float)) and not isinstance(r.metrics.get(k), bool)
        }
        values.update(flatten_eval(r.evaluation))  # eval.json wins (e.g. its clean train_acc)
        for metric, value in values.items():
            rows.append(
                {
                    "experiment": r.experiment,
                    "setup": r.setup,
                    "seed": r.seed,
                    "rho": r.rho,
                    "metric": metric,
                    "value": value,
                }
            )
    return pd.DataFrame(rows, columns=["experiment", "setup", "seed", "rho", "metric", "value"])


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """Per experiment x setup x metric: n finite seeds, their mean and std (ddof=1; NaN below 2 seeds), and
    the seeds that are there but not finite (n_nonfinite) or lack the metric (n_missing): never dropped silently."""
    cols = ["experiment", "setup", "metric", "n", "mean", "std", "n_runs", "n_nonfinite", "n_missing"]
    if frame.empty:
        return pd.DataFrame(columns=cols)
    finite = frame.assign(value=frame["value"].where(np.isfinite(frame["value"].astype(float))))
    g = finite.groupby(["experiment", "setup", "metric"], sort=False)["value"]
    out = g.agg(n="count", mean="mean", std="std", rows="size").reset_index()
    runs = frame.groupby(["experiment", "setup"])["seed"].nunique()
    out["n_runs"] = [int(runs[(e, s)]) for e, s in zip(out.experiment, out.setup, strict=True)]
    out["n_nonfinite"] = out["rows"] - out["n"]
    out["n_missing"] = out["n_runs"] - out["rows"]
    return out[cols]


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided Welch t-test p-value over the finite seeds; NaN when either side has < 2 or both have zero
    variance."""
    from scipy import stats

    a, b = [x for x in a if math.isfinite(x)], [x for x in b if math.isfinite(x)]
    if len(a) < 2 or len(b) < 2:
        return math.nan
    if pd.Series(a).std() == 0 and pd.Series(b).std() == 0:
        return math.nan
    with warnings.catch_warnings():  # near-identical seeds: scipy warns, the p-value is still the answer
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def comparison_table(
    frame: pd.DataFrame, experiments: Mapping[str, Mapping[str, Any]], paper: Mapping[str, Any]
) -> pd.DataFrame:
    """summary + paper mean/std/label + difference (ours − paper) + baseline, its mean and the Welch p-value."""
    summary = summarize(frame)
    if summary.empty:
        return summary
    base = baselines()
    per_seed = {k: list(v) for k, v in frame.groupby(["experiment", "setup", "metric"])["value"]}
    rhos = frame.groupby(["experiment", "setup"])["rho"].first().to_dict()
    records = []
    for row in summary.to_dict("records"):
        exp_cfg = experiments.get(row["experiment"], {})
        rec = {
            **row,
            "rho": rhos.get((row["experiment"], row["setup"])),
            "paper": math.nan,
            "paper_std": math.nan,
            "paper_label": "",
            "diff": math.nan,
            "baseline": "",
            "baseline_mean": math.nan,
            "p_value": math.nan,
        }
        for ref in exp_cfg.get("paper", []):
            if ref["metric"] != row["metric"]:
                continue
            found = paper_value(paper, ref, row["setup"])
            if found is not None:
                rec["paper"], std = found
                rec["paper_std"] = math.nan if std is None else std
                rec["paper_label"] = ref.get("label") or ref["path"]
                rec["diff"] = row["mean"] - rec["paper"]
                break
        b = base.get(row["setup"])
        if b and b in exp_cfg.get("setups", [b]):
            mine = per_seed.get((row["experiment"], row["setup"], row["metric"]), [])
            theirs = per_seed.get((row["experiment"], b, row["metric"]), [])
            finite = [x for x in theirs if math.isfinite(x)]
            if theirs:
                rec["baseline"] = b
                rec["baseline_mean"] = sum(finite) / len(finite) if finite else math.nan
                rec["p_value"] = welch_p(mine, theirs)
        records.append(rec)
    return pd.DataFrame(records)


def fmt_mean_std(mean: float, std: float | None, digits: int = 2) -> str:
    """'mean ± std' (the form every table uses); '' for a missing mean, no ± without a std."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return ""
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def fmt_cell(row: Mapping[str, Any], digits: int = 2) -> str:
    """A table cell with its own count: '83.00 ± 1.00 (n=3)', '84.10 (n=1; 1 NaN, 1 missing)', 'NaN (n=0; 3 NaN)'.
    `row` is a summarize() row; seeds whose value is non-finite or absent are shown, never dropped."""
    value = fmt_mean_std(row["mean"], row["std"] if row["n"] >= 2 else None, digits) or "NaN"
    bad = [f"{row[k]} {label}" for k, label in (("n_nonfinite", "NaN"), ("n_missing", "missing")) if row[k]]
    return f"{value} (n={row['n']}{'; ' + ', '.join(bad) if bad else ''})"


def fmt_p(p: float) -> str:
    if p is None or math.isnan(p):
        return "n/a"
    return f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}"
