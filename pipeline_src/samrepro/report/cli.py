"""`samrepro report`: render reports/<study>/{index.html, report.md, summary.csv, claims.csv, figures/*.png},
and, given the track job's mlflow_runs.json, put each claim's verdict on its setup's MLflow parent run."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--spec",
        default=None,
        help="study JSON {study, description, config_hash, experiments: {name: {setups, task, paper, ...}}}",
    )
    parser.add_argument("--paper", default=None, help="paper_results.yaml (published numbers)")
    parser.add_argument(
        "--claims",
        default=None,
        help="claims.yaml (the papers' claims; schema workflow/schemas/claims.schema.yaml); "
        "without it every experiment gets the generic 'setup beats its baseline' claims",
    )
    parser.add_argument("--runs", nargs="*", default=[], help="final runs: eval.json files or run folders")
    parser.add_argument("--tune", nargs="*", default=[], help="tuning runs: metrics.json files or folders")
    parser.add_argument("--best", nargs="*", default=[], help="best.json of every tuned setup")
    parser.add_argument(
        "--reference",
        nargs="*",
        default=[],
        help="deterministic reference results (eval.json-shaped, e.g. raw pixels), one row each",
    )
    parser.add_argument(
        "--manifests",
        nargs="*",
        default=[],
        help="the prepare jobs' dataset manifests (their digests go into the report header)",
    )
    parser.add_argument(
        "--mlflow-runs",
        default=None,
        help="the track job's mlflow_runs.json: log the verdicts on the MLflow parent runs",
    )
    parser.add_argument("--out", required=True, help="output folder (reports/<study>)")


def run(args: argparse.Namespace) -> int:
    from samrepro.report.render import report_from_files

    try:
        spec = json.loads(args.spec) if args.spec else {}
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"--spec is not valid JSON ({exc.msg} at column {exc.colno}); pass the study JSON"
        ) from None
    ctx = report_from_files(
        spec,
        args.paper,
        args.runs,
        args.tune,
        args.best,
        args.out,
        args.claims,
        args.reference,
        args.manifests,
    )
    counts = ", ".join(f"{n} {v}" for v, n in ctx["verdict_counts"].items()) or "no claims"
    print(
        f"report: {args.out}/index.html ({ctx['n_runs']} runs, {len(ctx['sections'])} experiments; "
        f"claims: {counts})"
    )
    if args.mlflow_runs:
        from samrepro.track.mlflow_log import log_claim_verdicts

        logged = log_claim_verdicts(args.mlflow_runs, ctx["claims"].to_dict("records"))
        print(f"report: verdicts on {logged} MLflow parent runs")
    return 0
