"""Build the study report: the claims' scoreboard and forest plots, tables (mean ± std with each cell's own n,
the paper's numbers beside ours), figures, and the HTML/Markdown pages, with a provenance header.

The HTML is self-contained (figures base64-embedded) so it opens in any browser, from any folder; the
Markdown references figures/*.png next to it. claims.csv and summary.csv hold every number shown.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from samrepro.atomic import atomic_write_text
from samrepro.errors import read_json, read_yaml
from samrepro.report import plots
from samrepro.report.aggregate import (
    PRIMARY,
    comparison_table,
    fmt_cell,
    fmt_mean_std,
    fmt_p,
    paper_value,
    runs_frame,
)
from samrepro.report.claims import agreement, evaluate_claims, load_claims, study_claims
from samrepro.report.compute import compute_section
from samrepro.track.runs import RunRecord, flatten_eval, read_run, run_folder

# metric columns shown per task, in order (others go to the full table)
COLUMNS = {
    "classification": ["test_top1", "test_top5", "train_acc", "gap", "sharpness_top_eigenvalue"],
    "face": [
        "verification_mean",
        "lfw",
        "cfp_fp",
        "agedb_30",
        "cplfw",
        "calfw",
        "train_acc",
        "gap",
        "sharpness_top_eigenvalue",
    ],
}
LABELS = {
    "test_top1": "test top-1 %",
    "test_top5": "test top-5 %",
    "train_acc": "train acc %",
    "gap": "gen. gap (pp)",
    "sharpness_top_eigenvalue": "top Hessian eig.",
    "verification_mean": "verif. mean %",
    "digits_heldout": "held-out pairs %",
    "digits_unseen": "unseen digits %",
    "eval_acc": "eval acc %",
}
VERSIONED = ("samrepro", "torch", "numpy", "scipy", "pandas", "matplotlib", "snakemake", "mlflow")
MARKS = {"reproduced": "🟩", "contradicted": "🟥", "inconclusive": "🟨", "not run": "⬜"}


def _infer_experiments(runs: Sequence[RunRecord]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in runs:
        e = out.setdefault(
            r.experiment, {"setups": [], "paper": [], "task": None, "dataset": "", "model": ""}
        )
        if r.setup not in e["setups"]:
            e["setups"].append(r.setup)
        if e["task"] is None:
            e["task"] = "face" if "verification_mean" in r.evaluation else "classification"
    return out


def build_report(
    runs: Sequence[RunRecord],
    tune_runs: Sequence[RunRecord],
    best: Mapping[str, Mapping[str, Any]],
    spec: Mapping[str, Any],
    paper: Mapping[str, Any],
    out_dir: Path,
    declared: Sequence[Mapping[str, Any]] = (),
    references: Sequence[Mapping[str, Any]] = (),
    manifests: Sequence[str] = (),
) -> dict[str, Any]:
    """Write out_dir/{index.html, report.md, summary.csv, claims.csv, figures/*.png}; return the context."""
    experiments = dict(spec.get("experiments") or _infer_experiments(runs))
    frame = runs_frame(runs)
    table = comparison_table(frame, experiments, paper)
    claims = evaluate_claims(study_claims(declared, experiments), frame, experiments, paper)
    fig_dir = out_dir / "figures"
    sections = [
        _section(name, exp, runs, tune_runs, best, frame, table, claims, paper, references, fig_dir)
        for name, exp in experiments.items()
    ]
    context = {
        "study": spec.get("study", "study"),
        "description": spec.get("description", ""),
        "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "n_runs": len(runs),
        "n_tune": len(tune_runs),
        "sections": sections,
        "tracking_hint": spec.get("tracking_hint", ""),
        "scoreboard": [_claim_row(r) for r in claims.to_dict("records")],
        "verdict_counts": {v: int((claims.verdict == v).sum()) for v in MARKS if (claims.verdict == v).any()},
        "provenance": provenance(spec, manifests),
        "claims": claims,
        "compute": compute_section([*runs, *tune_runs], spec.get("estimate")),
    }
    _write(out_dir, context, table, claims)
    return context


def _write(out_dir: Path, context: Mapping[str, Any], table: pd.DataFrame, claims: pd.DataFrame) -> None:
    env = Environment(
        loader=PackageLoader("samrepro.report", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "summary.csv", table.to_csv(index=False))
    atomic_write_text(out_dir / "claims.csv", claims.to_csv(index=False))
    atomic_write_text(out_dir / "report.md", env.get_template("report.md.j2").render(**context))
    atomic_write_text(out_dir / "index.html", env.get_template("index.html.j2").render(**context))


def _section(
    name: str,
    exp: Mapping[str, Any],
    runs: Sequence[RunRecord],
    tune_runs: Sequence[RunRecord],
    best: Mapping[str, Mapping[str, Any]],
    frame: pd.DataFrame,
    table: pd.DataFrame,
    claims: pd.DataFrame,
    paper: Mapping[str, Any],
    references: Sequence[Mapping[str, Any]],
    fig_dir: Path,
) -> dict[str, Any]:
    """One experiment: its claims, the main table (ours, reference rows), published numbers, ρ, figures."""
    task = exp.get("task") or "classification"
    ran = set(frame.loc[frame.experiment == name, "setup"]) if not frame.empty else set()
    setups = [s for s in exp.get("setups", []) if s in ran]
    t = table[table.experiment == name] if not table.empty else table
    if t.empty:
        return {"name": name, "exp": exp, "missing": True}
    primary = exp.get("primary_metric") or PRIMARY[task]
    cols = _columns(task, primary, set(t.metric))
    rows = [_setup_row(setup, t[t.setup == setup].set_index("metric"), primary, cols) for setup in setups]
    rows += [_reference_row(ref, cols) for ref in references if ref["experiment"] == name]
    mine = claims[claims.experiment == name]
    forest = plots.forest(claims, name, fig_dir / f"forest_{name}.png")
    return {
        "name": name,
        "exp": exp,
        "task": task,
        "primary": LABELS.get(primary, primary),
        "missing": False,
        "columns": [LABELS.get(c, c) for c in cols],
        "rows": rows,
        "paper_rows": _paper_rows(t, exp.get("paper", []), paper, setups),
        "claims": [_claim_row(r) for r in mine.to_dict("records")],
        "forest": None if forest is None else _figure(forest, "claims: Δ with 95 % CI"),
        "figures": _figures(runs, tune_runs, best, t, name, task, setups, fig_dir),
        "tuned": [tuned_row(s, best[f"{name}/{s}"]) for s in setups if f"{name}/{s}" in best],
    }


def _columns(task: str, primary: str, present: set[str]) -> list[str]:
    """The main table's metric columns: the experiment's primary metric first, then the task's usual ones, then
    (face) every other benchmark the runs were verified on (a benchmark `b` comes with its `b_std`)."""
    usual = [c for c in COLUMNS[task] if c in present and c != primary]
    benchmarks = sorted(m for m in present if f"{m}_std" in present and m not in usual and m != primary)
    return ([primary] if primary in present else []) + usual + (benchmarks if task == "face" else [])


def _setup_row(setup: str, rows: pd.DataFrame, primary: str, cols: Sequence[str]) -> dict[str, Any]:
    """One setup in the main table: every cell with its own n (missing and non-finite seeds counted)."""
    p = rows.loc[primary] if primary in rows.index else None
    rho = rows["rho"].iloc[0]
    base_delta = math.nan if p is None or not p["baseline"] else p["mean"] - p["baseline_mean"]
    return {
        "setup": setup,
        "rho": "—" if rho is None or (isinstance(rho, float) and math.isnan(rho)) else f"{rho:g}",
        "n": int(rows["n_runs"].max()),
        "cells": [fmt_cell(rows.loc[c]) if c in rows.index else "" for c in cols],
        "paper": "" if p is None else fmt_mean_std(p["paper"], p["paper_std"]),
        "paper_label": "" if p is None else p["paper_label"],
        "diff": "" if p is None or math.isnan(p["diff"]) else f"{p['diff']:+.2f}",
        # the baseline with our difference to it (n/a when either side has no finite seed)
        "baseline": ""
        if p is None or not p["baseline"]
        else f"{p['baseline']} ({'n/a' if math.isnan(base_delta) else f'{base_delta:+.2f}'})",
    }


def _reference_row(ref: Mapping[str, Any], cols: Sequence[str]) -> dict[str, Any]:
    """A deterministic reference (e.g. raw pixels): one value per metric, n = 1."""
    values = ref["metrics"]
    return {
        "setup": f"{ref['name']} (reference)",
        "rho": "—",
        "n": 1,
        "reference": True,
        "cells": [f"{values[c]:.2f} (n=1)" if c in values else "" for c in cols],
        "paper": "",
        "paper_label": "",
        "diff": "",
        "baseline": "",
    }


def _fmt(x: float, fmt: str = "+.2f") -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def _claim_row(r: Mapping[str, Any]) -> dict[str, Any]:
    """A claim as the scoreboard and the per-experiment claims table show it."""
    ci = "" if math.isnan(r["ci_low"]) else f" [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]"
    needed = r["seeds_needed"]
    return {
        "id": r["id"],
        "experiment": r["experiment"],
        "metric": r["metric"],
        "source": r["source"],
        "short": r["id"].removeprefix(f"{r['experiment']}: "),
        "verdict": r["verdict"],
        "css": r["verdict"].replace(" ", "-"),
        "mark": MARKS[r["verdict"]],
        "text": r["verdict_text"],
        "ours": f"{_fmt(r['delta'])}{ci}",
        "n": f"{r['n_setup']} vs {r['n_baseline']}" + _nonfinite(r),
        "published": _fmt(r["published_delta"]),
        "opposes": bool(r["published_delta"] * (1 if r["direction"] == "greater" else -1) <= 0),
        "p": fmt_p(r["p_one_sided"]),
        "p_holm": fmt_p(r["p_holm"]),
        "g": _fmt(r["hedges_g"]),
        "mde": _fmt(r["mde"], ".2f"),
        "needed": "—"
        if needed is None or (isinstance(needed, float) and math.isnan(needed))
        else f"{int(needed)} ({r['seeds_basis']})",
    }


def _nonfinite(r: Mapping[str, Any]) -> str:
    bad = [
        f"{r[k]} {side}"
        for k, side in (("nonfinite_setup", "setup"), ("nonfinite_baseline", "baseline"))
        if r[k]
    ]
    return f" (NaN/missing: {', '.join(bad)})" if bad else ""


def provenance(spec: Mapping[str, Any], manifests: Sequence[str]) -> dict[str, Any]:
    """What makes the report auditable on its own: code, config, package versions, data manifests."""
    from importlib import metadata

    from samrepro.track.mlflow_log import git_commit

    commit, dirty = git_commit()
    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    data = [_manifest_digest(m) for m in manifests if m]
    return {
        "commit": commit,
        "dirty": dirty,
        "config_hash": spec.get("config_hash", "") or "not given",
        "versions": versions,
        "manifests": data,
    }


def _manifest_digest(path: str) -> dict[str, Any]:
    """A dataset's content hash (its files' checksums and counts, not where it lies: two copies of the same data
    agree) and the root it was read from; the same content hash MLflow's dataset inputs are built on."""
    from samrepro.track.lineage import content_hash, read_manifest

    manifest = read_manifest(Path(path))
    if manifest is None:
        raise ValueError(f"{path}: the prepare manifest is missing; rerun `samrepro prepare`")
    return {
        "dataset": Path(path).stem,
        "file": path,
        "sha256": content_hash(manifest),
        "root": manifest.get("root"),
    }


def tuned_row(setup: str, best: Mapping[str, Any]) -> dict[str, str]:
    """One row of the ρ table. A ρ chosen at an end of its grid is flagged: the optimum may lie outside
    the grid (the SAM paper's grid is wide for this reason), so the user should widen it."""
    grid = sorted(g["rho"] for g in best["grid"])
    edge = len(grid) > 1 and best["rho"] in (grid[0], grid[-1])
    return {
        "setup": setup,
        "rho": f"{best['rho']:g}" + (" (grid edge)" if edge else ""),
        "score": f"{best['score']:.2f}",
        "grid": ", ".join(f"{g['rho']:g}: {g['mean_score']:.2f}" for g in best["grid"]),
    }


def _paper_rows(
    table: pd.DataFrame, refs: Sequence[Mapping[str, Any]], paper: Mapping[str, Any], setups: Sequence[str]
) -> list[dict[str, str]]:
    """Every published number (all references, not only the first per metric) beside ours."""
    rows = []
    for setup in setups:
        for ref in refs:
            found = paper_value(paper, ref, setup)
            ours = table[(table.setup == setup) & (table.metric == ref["metric"])]
            if found is None or ours.empty:
                continue
            row = ours.iloc[0]
            agrees, bound = agreement(row["mean"], row["std"], int(row["n"]), found[0], found[1])
            rows.append(
                {
                    "setup": setup,
                    "metric": ref["metric"],
                    "ours": fmt_cell(row),
                    "paper": fmt_mean_std(found[0], found[1]),
                    "diff": _fmt(row["mean"] - found[0]),
                    "agrees": "n/a"
                    if agrees is None
                    else f"{'yes' if agrees else 'no'} (2 SE = {bound:.2f})",
                    "label": ref.get("label") or ref["path"],
                }
            )
    return rows


def _figures(
    runs: Sequence[RunRecord],
    tune_runs: Sequence[RunRecord],
    best: Mapping[str, Mapping[str, Any]],
    table: pd.DataFrame,
    name: str,
    task: str,
    setups: Sequence[str],
    fig_dir: Path,
) -> list[dict[str, str]]:
    against = "test" if task == "classification" else "verification"
    paths = [
        plots.bar_with_errors(
            table,
            name,
            setups,
            "gap",
            "gap (pp)",
            f"{name}: generalization gap (train − {against})",
            fig_dir / f"gap_{name}.png",
        ),
        plots.mechanism(runs, name, setups, fig_dir / f"mechanism_{name}.png"),
        plots.rho_curves(tune_runs, best, name, fig_dir / f"rho_{name}.png"),
        plots.bar_with_errors(
            table,
            name,
            setups,
            "sharpness_top_eigenvalue",
            "top Hessian eigenvalue",
            f"{name}: sharpness of the final model",
            fig_dir / f"sharpness_{name}.png",
        ),
    ]
    captions = ["generalization gap", "mechanism: CE vs AACE", "rho tuning", "sharpness"]
    return [_figure(p, c) for p, c in zip(paths, captions, strict=True) if p is not None]


def _figure(path: Path, caption: str) -> dict[str, str]:
    return {
        "file": f"figures/{path.name}",
        "caption": caption,
        "b64": base64.b64encode(path.read_bytes()).decode(),
    }


def load_best(paths: Sequence[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for p in paths:
        if p:
            redo = f"redo it: delete {p} and rerun snakemake, or run `snakemake --forcerun {p}`"
            data = read_json(p, redo)
            if not isinstance(data, dict) or not {"experiment", "setup", "rho"} <= set(data):
                raise ValueError(f"{p}: not a best.json (needs experiment, setup, rho); {redo}")
            out[f"{data['experiment']}/{data['setup']}"] = data
    return out


def load_references(paths: Sequence[str]) -> list[dict[str, Any]]:
    """Reference results (eval.json-shaped: experiment, name, benchmarks / metrics); a bad file is refused in
    one line naming it."""
    out = []
    for p in paths:
        if not p:
            continue
        data = read_json(p, "rerun the job that wrote it (delete the file first)")
        if not (
            isinstance(data, dict)
            and isinstance(data.get("experiment"), str)
            and isinstance(data.get("name"), str)
        ):
            raise ValueError(
                f"reference file {p}: needs string keys 'experiment' and 'name' beside its metrics"
            )
        out.append({"experiment": data["experiment"], "name": data["name"], "metrics": flatten_eval(data)})
    return out


def report_from_files(
    spec: Mapping[str, Any],
    paper_path: str | None,
    run_paths: Sequence[str],
    tune_paths: Sequence[str],
    best_paths: Sequence[str],
    out_dir: str | Path,
    claims_path: str | None = None,
    reference_paths: Sequence[str] = (),
    manifests: Sequence[str] = (),
) -> dict[str, Any]:
    runs = [read_run(run_folder(p), require_eval=True) for p in run_paths if p]
    tune = [read_run(run_folder(p)) for p in tune_paths if p]
    paper = (read_yaml(paper_path) if paper_path else {}) or {}
    declared = load_claims(claims_path) if claims_path else []
    return build_report(
        runs,
        tune,
        load_best(best_paths),
        spec,
        paper,
        Path(out_dir),
        declared,
        load_references(reference_paths),
        manifests,
    )
