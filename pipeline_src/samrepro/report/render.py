"""Build the study report: tables (mean ± std, paper, Δ, Welch p), figures, and the HTML/Markdown pages.

The HTML is self-contained (figures base64-embedded) so it opens in any browser, from any folder; the
Markdown references figures/*.png next to it.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from jinja2 import Environment, PackageLoader, select_autoescape

from samrepro.atomic import atomic_write_text
from samrepro.report import plots
from samrepro.report.aggregate import PRIMARY, comparison_table, fmt_mean_std, fmt_p, paper_value, runs_frame
from samrepro.track.runs import RunRecord, read_run, run_folder

# metric columns shown per task, in order (others go to the full table)
COLUMNS = {
    "classification": ["test_top1", "test_top5", "train_acc", "gap", "sharpness_top_eigenvalue"],
    "face": ["verification_mean", "lfw", "cfp_fp", "agedb_30", "cplfw", "calfw", "train_acc", "gap",
             "sharpness_top_eigenvalue"],
}
LABELS = {"test_top1": "test top-1 %", "test_top5": "test top-5 %", "train_acc": "train acc %",
          "gap": "gen. gap (pp)", "sharpness_top_eigenvalue": "top Hessian eig.",
          "verification_mean": "verif. mean %", "eval_acc": "eval acc %"}


def _infer_experiments(runs: Sequence[RunRecord]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in runs:
        e = out.setdefault(r.experiment, {"setups": [], "paper": [], "task": None, "dataset": "", "model": ""})
        if r.setup not in e["setups"]:
            e["setups"].append(r.setup)
        if e["task"] is None:
            e["task"] = "face" if "verification_mean" in r.evaluation else "classification"
    return out


def build_report(runs: Sequence[RunRecord], tune_runs: Sequence[RunRecord], best: Mapping[str, Mapping[str, Any]],
                 spec: Mapping[str, Any], paper: Mapping[str, Any], out_dir: Path) -> dict[str, Any]:
    """Write out_dir/{index.html, report.md, summary.csv, figures/*.png}; return the template context."""
    experiments = dict(spec.get("experiments") or _infer_experiments(runs))
    frame = runs_frame(runs)
    table = comparison_table(frame, experiments, paper)
    fig_dir = out_dir / "figures"
    sections = []
    for name, exp in experiments.items():
        task = exp.get("task") or "classification"
        ran = set(frame.loc[frame.experiment == name, "setup"])
        setups = [s for s in exp.get("setups", []) if s in ran]
        t = table[table.experiment == name] if not table.empty else table
        if t.empty:
            sections.append({"name": name, "exp": exp, "missing": True})
            continue
        primary = PRIMARY[task]
        present = set(t.metric)
        cols = [c for c in COLUMNS[task] if c in present]
        main_rows = []
        for setup in setups:
            rows = t[t.setup == setup].set_index("metric")
            p = rows.loc[primary] if primary in rows.index else None
            rho = rows["rho"].iloc[0]
            main_rows.append({
                "setup": setup,
                "rho": "—" if rho is None or (isinstance(rho, float) and math.isnan(rho)) else f"{rho:g}",
                "n": int(rows["n"].max()),
                "cells": [fmt_mean_std(rows.loc[c, "mean"], rows.loc[c, "std"]) if c in rows.index else ""
                          for c in cols],
                "paper": "" if p is None else fmt_mean_std(p["paper"], p["paper_std"]),
                "paper_label": "" if p is None else p["paper_label"],
                "diff": "" if p is None or math.isnan(p["diff"]) else f"{p['diff']:+.2f}",
                # the baseline with our difference to it: a two-sided p alone does not say which way
                "baseline": "" if p is None or not p["baseline"]
                else f"{p['baseline']} ({p['mean'] - p['baseline_mean']:+.2f})",
                "p_value": "" if p is None or not p["baseline"] else fmt_p(p["p_value"]),
            })
        paper_rows = _paper_rows(t, exp.get("paper", []), paper, setups)
        figures = _figures(runs, tune_runs, best, t, name, task, setups, fig_dir)
        tuned = [tuned_row(s, best[f"{name}/{s}"]) for s in setups if f"{name}/{s}" in best]
        sections.append({
            "name": name, "exp": exp, "task": task, "primary": LABELS.get(primary, primary), "missing": False,
            "columns": [LABELS.get(c, c) for c in cols], "rows": main_rows, "paper_rows": paper_rows,
            "figures": figures, "tuned": tuned,
        })
    full = table.copy()
    context = {
        "study": spec.get("study", "study"),
        "description": spec.get("description", ""),
        "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "n_runs": len(runs), "n_tune": len(tune_runs), "sections": sections,
        "tracking_hint": spec.get("tracking_hint", ""),
    }
    env = Environment(loader=PackageLoader("samrepro.report", "templates"),
                      autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "summary.csv", full.to_csv(index=False))
    atomic_write_text(out_dir / "report.md", env.get_template("report.md.j2").render(**context))
    atomic_write_text(out_dir / "index.html", env.get_template("index.html.j2").render(**context))
    return context


def tuned_row(setup: str, best: Mapping[str, Any]) -> dict[str, str]:
    """One row of the ρ table. A ρ chosen at an end of its grid is flagged: the optimum may lie outside
    the grid (the SAM paper's grid is wide for this reason), so the user should widen it."""
    grid = sorted(g["rho"] for g in best["grid"])
    edge = len(grid) > 1 and best["rho"] in (grid[0], grid[-1])
    return {"setup": setup, "rho": f"{best['rho']:g}" + (" (grid edge)" if edge else ""),
            "score": f"{best['score']:.2f}",
            "grid": ", ".join(f"{g['rho']:g}: {g['mean_score']:.2f}" for g in best["grid"])}


def _paper_rows(table: pd.DataFrame, refs: Sequence[Mapping[str, Any]], paper: Mapping[str, Any],
                setups: Sequence[str]) -> list[dict[str, str]]:
    """Every published number (all references, not only the first per metric) beside ours."""
    rows = []
    for setup in setups:
        for ref in refs:
            found = paper_value(paper, ref, setup)
            ours = table[(table.setup == setup) & (table.metric == ref["metric"])]
            if found is None or ours.empty:
                continue
            mean, std = ours.iloc[0]["mean"], ours.iloc[0]["std"]
            rows.append({"setup": setup, "metric": ref["metric"], "ours": fmt_mean_std(mean, std),
                         "paper": fmt_mean_std(found[0], found[1]), "diff": f"{mean - found[0]:+.2f}",
                         "label": ref.get("label") or ref["path"]})
    return rows


def _figures(runs: Sequence[RunRecord], tune_runs: Sequence[RunRecord], best: Mapping[str, Mapping[str, Any]],
             table: pd.DataFrame, name: str, task: str, setups: Sequence[str], fig_dir: Path) -> list[dict[str, str]]:
    against = "test" if task == "classification" else "verification"
    paths = [
        plots.bar_with_errors(table, name, setups, "gap", "gap (pp)",
                              f"{name}: generalization gap (train − {against})", fig_dir / f"gap_{name}.png"),
        plots.mechanism(runs, name, setups, fig_dir / f"mechanism_{name}.png"),
        plots.rho_curves(tune_runs, best, name, fig_dir / f"rho_{name}.png"),
        plots.bar_with_errors(table, name, setups, "sharpness_top_eigenvalue", "top Hessian eigenvalue",
                              f"{name}: sharpness of the final model", fig_dir / f"sharpness_{name}.png"),
    ]
    captions = ["generalization gap", "mechanism: CE vs AACE", "rho tuning", "sharpness"]
    return [{"file": f"figures/{p.name}", "caption": c, "b64": base64.b64encode(p.read_bytes()).decode()}
            for p, c in zip(paths, captions, strict=True) if p is not None]


def load_best(paths: Sequence[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for p in paths:
        if p:
            data = json.loads(Path(p).read_text())
            out[f"{data['experiment']}/{data['setup']}"] = data
    return out


def report_from_files(spec: Mapping[str, Any], paper_path: str | None, run_paths: Sequence[str],
                      tune_paths: Sequence[str], best_paths: Sequence[str], out_dir: str | Path) -> dict[str, Any]:
    runs = [read_run(run_folder(p), require_eval=True) for p in run_paths if p]
    tune = [read_run(run_folder(p)) for p in tune_paths if p]
    paper = yaml.safe_load(Path(paper_path).read_text()) if paper_path else {}
    return build_report(runs, tune, load_best(best_paths), spec, paper or {}, Path(out_dir))

