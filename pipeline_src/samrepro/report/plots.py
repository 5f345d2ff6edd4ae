"""Report figures (matplotlib, Agg): claims' forest plot, generalization gap, AACE mechanism, rho tuning
curves, sharpness."""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from samrepro.atomic import atomic_write_bytes  # noqa: E402
from samrepro.track.runs import RunRecord  # noqa: E402


def _save(fig: Any, path: Path) -> Path:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def bar_with_errors(
    summary: pd.DataFrame,
    experiment: str,
    setups: Sequence[str],
    metric: str,
    ylabel: str,
    title: str,
    path: Path,
) -> Path | None:
    """Mean ± std over seeds per setup (error bars = std)."""
    rows = summary[(summary.experiment == experiment) & (summary.metric == metric)].set_index("setup")
    names = [s for s in setups if s in rows.index]
    if not names:
        return None
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2.5, 3.4))
    ax.bar(
        range(len(names)),
        rows.loc[names, "mean"],
        yerr=rows.loc[names, "std"].fillna(0.0),
        capsize=4,
        color=[f"C{i}" for i in range(len(names))],
    )
    ax.set_xticks(range(len(names)), names, rotation=25, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def mechanism(runs: Sequence[RunRecord], experiment: str, setups: Sequence[str], path: Path) -> Path | None:
    """CE vs AACE loss and their gradient norms on the fixed probe batch, per epoch (mean over seeds).
    The papers' mechanism: as training fits, CE's gradient vanishes while AACE's does not."""
    series: dict[str, dict[str, list[dict[str, float]]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        if r.experiment == experiment and r.phase != "tune":
            series[r.setup]["rows"].extend(r.history)
    cols = [
        ("probe_ce_loss", "probe_aace_loss", "probe loss"),
        ("probe_ce_grad_norm", "probe_aace_grad_norm", "probe gradient norm"),
    ]
    if not any(row.get(cols[0][0]) is not None for s in series.values() for row in s["rows"]):
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, (ce, aace, label) in zip(axes, cols, strict=True):
        for i, setup in enumerate(s for s in setups if s in series):
            df = pd.DataFrame(series[setup]["rows"])
            if ce not in df or "epoch" not in df:
                continue
            mean = df.groupby("epoch")[[c for c in (ce, aace) if c in df]].mean()
            ax.plot(mean.index, mean[ce], color=f"C{i}", label=f"{setup} CE")
            if aace in mean:
                ax.plot(mean.index, mean[aace], color=f"C{i}", linestyle="--", label=f"{setup} AACE")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, ncol=2)
    fig.suptitle(f"{experiment}: CE (solid) vs AACE (dashed) on the probe batch")
    return _save(fig, path)


def rho_curves(
    tune_runs: Sequence[RunRecord], best: Mapping[str, Mapping[str, Any]], experiment: str, path: Path
) -> Path | None:
    """Validation score vs rho per tuned setup (mean over tuning seeds); the selected rho marked."""
    rows = [
        {"setup": r.setup, "rho": r.rho, "score": float(r.metrics.get("selection_score", float("nan")))}
        for r in tune_runs
        if r.experiment == experiment and r.rho is not None
    ]
    if not rows:
        return None
    df = pd.DataFrame(rows).groupby(["setup", "rho"])["score"].agg(["mean", "std"]).reset_index()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for i, (setup, g) in enumerate(df.groupby("setup", sort=True)):
        g = g.sort_values("rho")
        ax.errorbar(
            g["rho"], g["mean"], yerr=g["std"].fillna(0), marker="o", color=f"C{i}", label=setup, capsize=3
        )
        chosen = best.get(f"{experiment}/{setup}")
        if chosen is not None:
            sel = g[g["rho"] == chosen["rho"]]
            ax.plot(sel["rho"], sel["mean"], marker="*", markersize=15, color=f"C{i}", linestyle="none")
    ax.set_xscale("log")
    ax.set_xlabel("rho")
    ax.set_ylabel("validation score (%)")
    ax.set_title(f"{experiment}: rho tuning (★ = selected)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


VERDICT_COLORS = {
    "reproduced": "#2e7d32",
    "contradicted": "#c62828",
    "inconclusive": "#e0a800",
    "not run": "#9e9e9e",
}


def forest(claims: pd.DataFrame, experiment: str, path: Path) -> Path | None:
    """Each claim's Δ (ours: setup − baseline) with its 95 % CI, coloured by verdict; the published Δ as a
    hollow diamond; the zero line. One row per claim, top to bottom in the claims' order."""
    rows = claims[claims.experiment == experiment].reset_index(drop=True)
    if rows.empty:
        return None
    fig, ax = plt.subplots(figsize=(8.5, 1.2 + 0.32 * len(rows)))
    y = list(range(len(rows)))[::-1]
    for yi, r in zip(y, rows.to_dict("records"), strict=True):
        color = VERDICT_COLORS[r["verdict"]]
        if pd.notna(r["ci_low"]):
            ax.plot([r["ci_low"], r["ci_high"]], [yi, yi], color=color, linewidth=2.2, solid_capstyle="butt")
        ax.plot([r["delta"]], [yi], "o", color=color, markersize=6)
        if pd.notna(r["published_delta"]):
            ax.plot(
                [r["published_delta"]],
                [yi],
                "D",
                markerfacecolor="none",
                markeredgecolor="black",
                markersize=7,
            )
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_yticks(y, [f"{r.setup} vs {r.baseline} · {r.metric}" for r in rows.itertuples()], fontsize=8)
    ax.set_ylim(-0.8, len(rows) - 0.2)
    ax.set_xlabel("Δ = setup − baseline (points); bar = 95 % Welch CI, ◇ = published Δ")
    ax.grid(axis="x", alpha=0.3)
    handles = [
        plt.Line2D([], [], color=c, marker="o", linewidth=2.2, label=v)
        for v, c in VERDICT_COLORS.items()
        if v in set(rows.verdict)
    ]
    handles.append(
        plt.Line2D(
            [], [], color="black", marker="D", markerfacecolor="none", linestyle="none", label="published Δ"
        )
    )
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title(f"{experiment}: the claims (Δ with 95 % CI)")
    return _save(fig, path)
