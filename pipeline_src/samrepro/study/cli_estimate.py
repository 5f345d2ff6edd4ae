"""`samrepro estimate`: the compute bill of a study (FLOPs, device-hours, runtime flags) before submitting it.

Needs no data (declared dataset sizes stand in for absent files) and no GPU: models are counted on the
meta device. The equations are in `samrepro.study.estimate`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from samrepro.atomic import atomic_write_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        nargs="+",
        default=["config/config.yaml"],
        help="study config file(s), merged in order as snakemake --configfile does",
    )
    parser.add_argument(
        "--gpu-profile",
        default=None,
        help="device profile of GPU jobs (A100, H100 or one from estimate.profiles); "
        "default: the config's estimate.gpu_profile",
    )
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--json", default=None, help="also write every job's cost to this JSON file")


def run(args: argparse.Namespace) -> int:
    from samrepro.study.config import load_study, mixed_resources
    from samrepro.study.estimate import estimate_study, format_table, summarize

    try:
        config = load_study(args.config)
        costs = estimate_study(config, args.gpu_profile)
    except (ValueError, OSError) as err:
        print(f"samrepro estimate: {err}", file=sys.stderr)
        return 2
    for rule, experiments in mixed_resources(config).items():
        print(
            f"note: rule '{rule}' requests different resources in {', '.join(experiments)}: with the slurm "
            "profile's arrays (slurm-array-jobs) every task of an array gets its first job's resources; "
            "submit one experiment at a time or pass --slurm-array-jobs none"
        )
    rows, totals = summarize(costs)
    print(f"study '{config['study']}': {len(costs)} tune/train/evaluate jobs")
    print(format_table(rows, totals, markdown=args.markdown), end="")
    over = totals["all"].over
    if over:
        print(
            f"! {over} job(s) would exceed their SLURM runtime (resources.<rule>.runtime): they would be "
            "stopped at the limit and resumed, costing a resubmission each; raise runtime for them"
        )
    if args.json:
        atomic_write_text(
            args.json, json.dumps([asdict(c) | {"over": c.over} for c in costs], indent=1) + "\n"
        )
    return 0
