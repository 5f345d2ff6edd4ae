"""`samrepro select-rho`: pick a setup's rho from its tuning runs' metrics.json, write best.json."""

from __future__ import annotations

import argparse

from samrepro.study.select import write_best


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics", nargs="+", required=True, help="metrics.json of every tuning run of one setup"
    )
    parser.add_argument("--out", required=True, help="best.json to write (atomically)")


def run(args: argparse.Namespace) -> int:
    best = write_best(args.metrics, args.out)
    print(f"{best['experiment']}/{best['setup']}: rho={best['rho']:g} (validation score {best['score']:.4g})")
    return 0
