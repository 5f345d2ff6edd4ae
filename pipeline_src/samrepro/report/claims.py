"""The papers' claims and their verdicts (config/claims.yaml, schema workflow/schemas/claims.schema.yaml).

A claim says: in `experiment`, `setup` beats `baseline` on `metric` in `direction`. Per claim, from the finite
per-seed values (samrepro.report.stats): Δ = mean(setup) − mean(baseline) with its 95 % Welch CI, the one-sided
p in the claimed direction, Holm-adjusted over all the study's claims, Hedges' g, the minimum detectable effect
at 80 % power (α = 0.05) for the seeds run, and the seeds per arm needed to detect the published Δ (or, without
one, the observed Δ) with the observed stds (the published std for an arm with < 2 seeds). Verdict:

- reproduced:   Holm-adjusted one-sided p < 0.05 in the claimed direction;
- contradicted: the 95 % CI lies entirely on the other side of 0;
- inconclusive: otherwise — with the seeds per arm it would take.

Per setup, our mean agrees with a published number when |ours − paper| ≤ 2 √(s²/n + s_paper²/n_paper).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from samrepro.report import stats
from samrepro.report.aggregate import PRIMARY
from samrepro.report.published import claim_id, load_claims, paper_value

__all__ = [
    "COLUMNS",
    "agreement",
    "claim_id",
    "evaluate_claims",
    "generic_claims",
    "load_claims",
    "study_claims",
]

LEVEL = 0.05
PUBLISHED_SEEDS = 3  # paper_results.yaml: "mean ± std over three seeds where given"
VERDICTS = ("reproduced", "contradicted", "inconclusive", "not run")
COLUMNS = [
    "id",
    "experiment",
    "metric",
    "setup",
    "baseline",
    "direction",
    "source",
    "generic",
    "n_setup",
    "n_baseline",
    "nonfinite_setup",
    "nonfinite_baseline",
    "mean_setup",
    "mean_baseline",
    "delta",
    "ci_low",
    "ci_high",
    "df",
    "p_one_sided",
    "p_holm",
    "hedges_g",
    "mde",
    "published_delta",
    "seeds_needed",
    "seeds_basis",
    "verdict",
    "verdict_text",
]


def generic_claims(name: str, exp: Mapping[str, Any]) -> list[dict[str, Any]]:
    """'setup beats its baseline' (samrepro.catalog) on the experiment's primary metric, no published Δ."""
    from samrepro.report.aggregate import baselines

    metric = exp.get("primary_metric") or PRIMARY[exp.get("task") or "classification"]
    base = baselines()
    return [
        {
            "experiment": name,
            "setup": s,
            "baseline": base[s],
            "metric": metric,
            "direction": "greater",
            "source": f"generic: {s} against its baseline {base[s]} (samrepro.catalog)",
            "generic": True,
        }
        for s in exp.get("setups", [])
        if base.get(s) in exp.get("setups", [])
    ]


def study_claims(
    declared: Sequence[Mapping[str, Any]], experiments: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The declared claims on the study's experiments; an experiment with none gets the generic claims."""
    out: list[dict[str, Any]] = []
    for name, exp in experiments.items():
        mine = [{**c, "generic": False} for c in declared if c["experiment"] == name]
        out.extend(mine or generic_claims(name, exp))
    return out


# ----------------------------------------------------------------------------------------- verdicts
def seed_values(frame: pd.DataFrame, experiment: str, setup: str, metric: str) -> tuple[np.ndarray, int]:
    """(finite values, count of runs whose value is NaN/inf or missing) of one setup's metric."""
    runs = frame[(frame.experiment == experiment) & (frame.setup == setup)]
    values = runs.loc[runs.metric == metric, "value"].to_numpy(dtype=float)
    kept = values[np.isfinite(values)]
    return kept, int(runs.seed.nunique() - kept.size)


def published(claim: Mapping[str, Any], paper: Mapping[str, Any]) -> tuple[float, float | None, float | None]:
    """(published Δ, setup's published std, baseline's published std); Δ NaN without a paper reference."""
    if not claim.get("paper"):
        return math.nan, None, None
    a = paper_value(paper, claim["paper"], claim["setup"])
    b = paper_value(paper, claim["paper"], claim["baseline"])
    if a is None or b is None:
        return math.nan, None, None
    return a[0] - b[0], a[1], b[1]


def _std(values: np.ndarray, fallback: float | None) -> float:
    if values.size >= 2:
        return float(values.std(ddof=1))
    return math.nan if fallback is None else float(fallback)


def claim_stats(
    claim: Mapping[str, Any], a: np.ndarray, b: np.ndarray, pub: tuple[float, float | None, float | None]
) -> dict[str, Any]:
    """Every number of one claim but the Holm adjustment (which needs all the study's claims)."""
    w = stats.welch(a, b)
    sign = 1.0 if claim["direction"] == "greater" else -1.0
    pub_delta, pub_sd_a, pub_sd_b = pub
    sd_a, sd_b = _std(a, pub_sd_a), _std(b, pub_sd_b)
    effect, basis = (
        (sign * pub_delta, "published Δ") if math.isfinite(pub_delta) else (sign * w.delta, "observed Δ")
    )
    obs_a, obs_b = _std(a, None), _std(b, None)
    return {
        "mean_setup": float(a.mean()) if a.size else math.nan,
        "mean_baseline": float(b.mean()) if b.size else math.nan,
        "delta": w.delta,
        "ci_low": w.ci_low,
        "ci_high": w.ci_high,
        "df": w.df,
        "p_one_sided": stats.one_sided_p(w, claim["direction"]),
        "hedges_g": stats.hedges_g(a, b),
        "mde": stats.min_detectable_effect(obs_a, obs_b, a.size, b.size)
        if a.size >= 2 and b.size >= 2
        else math.nan,
        "published_delta": pub_delta,
        "seeds_needed": stats.seeds_needed(effect, sd_a, sd_b) if math.isfinite(sd_a + sd_b) else None,
        "seeds_basis": _basis(basis, effect, sd_a + sd_b),
    }


def _basis(basis: str, effect: float, sd_sum: float) -> str:
    """What the seeds-needed figure is planned on, or why there is none."""
    if not (math.isfinite(effect) and effect > 0):
        return f"{basis} not in the claimed direction"
    return basis if math.isfinite(sd_sum) else "no std to plan with (< 2 seeds and no published std)"


def verdict(row: Mapping[str, Any]) -> tuple[str, str]:
    """(verdict, its text) from the Holm-adjusted p, the CI and the seeds needed."""
    if not row["ran"]:
        return "not run", f"not run: {row['missing']} is not in the experiment's setups"
    empty = [row[k] for k, n in (("setup", "n_setup"), ("baseline", "n_baseline")) if row[n] == 0]
    if empty:
        return "inconclusive", f"inconclusive — no finite seed of {' and '.join(empty)} (NaN or missing)"
    if row["p_holm"] < LEVEL:
        return "reproduced", "reproduced"
    other_side = row["ci_high"] < 0 if row["direction"] == "greater" else row["ci_low"] > 0
    if other_side:
        return "contradicted", "contradicted"
    n, ran = row["seeds_needed"], min(row["n_setup"], row["n_baseline"])
    if n is not None and n <= ran and row["seeds_basis"] == "published Δ":
        return "inconclusive", (
            f"inconclusive — ≈ {n} seeds per arm would show the published Δ and {ran} ran: "
            "ours is smaller than published"
        )
    if n is not None:
        return "inconclusive", f"inconclusive — needs ≈ {n} seeds per arm"
    if "not in the claimed direction" in row["seeds_basis"]:
        return "inconclusive", f"inconclusive — the {row['seeds_basis']}: no number of seeds settles it"
    if row["seeds_basis"].startswith("no std"):
        return "inconclusive", f"inconclusive — {row['seeds_basis']}"
    return "inconclusive", f"inconclusive — more than {stats.MAX_SEEDS} seeds per arm"


def evaluate_claims(
    claims: Sequence[Mapping[str, Any]],
    frame: pd.DataFrame,
    experiments: Mapping[str, Mapping[str, Any]],
    paper: Mapping[str, Any],
) -> pd.DataFrame:
    """One row per claim (COLUMNS): the statistics, the Holm-adjusted p over all of them, the verdict."""
    rows = []
    for c in claims:
        setups = experiments.get(c["experiment"], {}).get("setups", [])
        a, bad_a = seed_values(frame, c["experiment"], c["setup"], c["metric"])
        b, bad_b = seed_values(frame, c["experiment"], c["baseline"], c["metric"])
        missing = [s for s in (c["setup"], c["baseline"]) if s not in setups]
        row = {
            "id": claim_id(c),
            **{k: c[k] for k in ("experiment", "metric", "setup", "baseline", "direction", "source")},
            "generic": bool(c.get("generic")),
            "n_setup": int(a.size),
            "n_baseline": int(b.size),
            "nonfinite_setup": bad_a,
            "nonfinite_baseline": bad_b,
            "ran": not missing,
            "missing": ", ".join(missing),
            **claim_stats(c, a, b, published(c, paper)),
        }
        rows.append(row)
    for row, p in zip(rows, stats.holm([r["p_one_sided"] for r in rows]), strict=True):
        row["p_holm"] = p
        row["verdict"], row["verdict_text"] = verdict(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def agreement(
    mean: float, std: float, n: int, paper_mean: float, paper_std: float | None
) -> tuple[bool | None, float]:
    """(|ours − paper| ≤ 2 combined SE, that bound); None when there is no SE at all (1 seed, no published std).
    Our SE uses our std (the published one when we have < 2 seeds); the paper's, its std over PUBLISHED_SEEDS."""
    ours_sd = std if n >= 2 else paper_std
    if ours_sd is None or not math.isfinite(ours_sd) or n < 1 or not math.isfinite(mean):
        return None, math.nan
    theirs = 0.0 if paper_std is None or not math.isfinite(paper_std) else paper_std**2 / PUBLISHED_SEEDS
    bound = 2 * math.sqrt(ours_sd**2 / n + theirs)
    return abs(mean - paper_mean) <= bound, bound
