"""`samrepro plan`: expand the study config into one run's `run.yaml` (no torch import: runs in milliseconds).

Either from study config files (`--config a.yaml [b.yaml] --experiment NAME`, validated against the schema)
or from the resolved experiment spec the Snakefile passes (`--spec JSON`, already validated there).
"""

from __future__ import annotations

import argparse
import json
import sys

from samrepro.study.config import experiment_spec, load_study
from samrepro.study.plan import PHASES, build_run_config, write_run_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", nargs="+", metavar="YAML", help="study config file(s), merged in order")
    src.add_argument("--spec", metavar="JSON", help="resolved experiment spec (as the Snakefile passes it)")
    parser.add_argument("--experiment", help="experiment name (with --config)")
    parser.add_argument("--setup", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--phase", choices=PHASES, required=True)
    parser.add_argument("--rho", type=float, default=None, help="rho of a tuning run")
    parser.add_argument("--best", default=None, help="best.json of the setup's tuning (final runs)")
    parser.add_argument("--out", required=True, help="run.yaml to write (atomically)")


def run(args: argparse.Namespace) -> int:
    if args.config and not args.experiment:  # bad usage is bad input: exit 2, one line (samrepro.cli)
        raise ValueError("--config needs --experiment NAME (one of the study's experiments)")
    try:
        if args.config:
            spec = experiment_spec(load_study(args.config), args.experiment)
        else:
            spec = json.loads(args.spec)
        run_cfg = build_run_config(spec, args.setup, args.seed, args.phase, rho=args.rho, best=args.best)
    except (ValueError, OSError) as exc:  # bad config/experiment/setup, missing file: exit 2, no traceback
        print(f"samrepro plan: error: {exc}", file=sys.stderr)
        return 2
    write_run_config(run_cfg, args.out)
    return 0
