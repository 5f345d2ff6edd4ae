"""Command-line interface: `samrepro prepare|plan|train|evaluate|reference|select-rho|track|report|estimate`.

Each subcommand lives in the module that owns its concept; this file only wires them into argparse and
imports lazily, so that cheap commands (plan, select-rho) never pay for importing torch. Expected failures of
any subcommand's inputs and outputs become one line naming the file and the fix, with the exit codes of
`samrepro.errors` (2 bad input, 3 NaN loss, 4 cannot write, 130 interrupted, 143 SIGTERM); bugs keep their
traceback, and SAMREPRO_TRACEBACK=1 keeps it for every failure.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from samrepro.errors import classify

# subcommand -> module exposing `add_arguments(parser)` and `run(args) -> int`
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("samrepro.data.cli", "verify (or download) a dataset and write its manifest"),
    "plan": ("samrepro.study.cli_plan", "expand the study config into one run.yaml"),
    "train": ("samrepro.engine.cli_train", "train one run (setup x seed x rho) into an output folder"),
    "evaluate": ("samrepro.engine.cli_evaluate", "evaluate a trained run: accuracy / face verification"),
    "reference": ("samrepro.engine.reference", "raw-pixel verification reference of a face experiment"),
    "select-rho": ("samrepro.study.cli_select", "pick the best rho of a tuning grid, write best.json"),
    "track": ("samrepro.track.cli", "log a study's job outputs into MLflow (single writer)"),
    "report": ("samrepro.report.cli", "render the study report (HTML + Markdown + figures)"),
    "estimate": (
        "samrepro.study.cli_estimate",
        "the compute bill of a study: FLOPs, GPU-hours, runtime flags",
    ),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="samrepro", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(_module=module)
        if argv[:1] == [name]:
            importlib.import_module(module).add_arguments(p)
    args = parser.parse_args(argv)
    if args.command == "train":  # never compiles: torch.optim without importing torch._dynamo (≈ 1 s a job)
        importlib.import_module("samrepro.engine.eager").use_eager_optimizers()
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except (Exception, KeyboardInterrupt) as exc:
        failure = classify(exc)
        if failure is None or os.environ.get("SAMREPRO_TRACEBACK"):  # a bug, or a maintainer asking for it
            raise
        print(f"samrepro {args.command}: error: {failure[1]}", file=sys.stderr)
        return failure[0]
