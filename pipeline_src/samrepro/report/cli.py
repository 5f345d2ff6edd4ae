"""`samrepro report`: render reports/<study>/{index.html, report.md, summary.csv, figures/*.png}."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", default=None,
                        help="study JSON {study, description, experiments: {name: {setups, task, paper, ...}}}")
    parser.add_argument("--paper", default=None, help="paper_results.yaml (published numbers)")
    parser.add_argument("--runs", nargs="*", default=[], help="final runs: eval.json files or run folders")
    parser.add_argument("--tune", nargs="*", default=[], help="tuning runs: metrics.json files or folders")
    parser.add_argument("--best", nargs="*", default=[], help="best.json of every tuned setup")
    parser.add_argument("--out", required=True, help="output folder (reports/<study>)")


def run(args: argparse.Namespace) -> int:
    from samrepro.report.render import report_from_files

    spec = json.loads(args.spec) if args.spec else {}
    ctx = report_from_files(spec, args.paper, args.runs, args.tune, args.best, args.out)
    print(f"report: {args.out}/index.html ({ctx['n_runs']} runs, {len(ctx['sections'])} experiments)")
    return 0
