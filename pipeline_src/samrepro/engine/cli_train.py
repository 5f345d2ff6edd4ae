"""`samrepro train --config run.yaml --out DIR`: train (or resume) one run into DIR.

Exit codes (documented for Snakemake/SLURM):
  0   finished; DIR holds metrics.json, history.csv, model.pt, checkpoint.pt
  2   bad input (config, data, setup/dataset mismatch): the message names the key and the fix
  3   the loss became NaN/inf: message names setup, epoch and step; the last good checkpoint is kept
  4   an output (checkpoint, model, metrics) could not be written, e.g. disk full: the previous complete
      checkpoint is kept; free space and rerun the same command (samrepro.errors, handled in samrepro.cli)
  143 stopped by SIGTERM (SLURM preemption/time limit): a checkpoint was saved; the same command resumes
"""

from __future__ import annotations

import argparse
import signal
import sys

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3
EXIT_PREEMPTED = 128 + signal.SIGTERM  # 143, what a shell reports for a SIGTERM'd process


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", required=True, help="run.yaml (docs/ARCHITECTURE.md Part C) describing the run"
    )
    parser.add_argument(
        "--out", required=True, help="output folder; resumes from its checkpoint.pt if present"
    )


def run(args: argparse.Namespace) -> int:
    from samrepro.engine import config as config_mod

    try:  # a python tag, a binary or malformed file: one line naming it (config.load)
        cfg = config_mod.load(args.config)
    except ValueError as exc:
        print(f"samrepro train: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT

    from samrepro.engine.trainer import PreemptedError, StopFlag, TrainingDivergedError, train

    stop = StopFlag()

    def on_term(signum: int, _frame: object) -> None:
        # only set a flag: the loop checkpoints at the next step boundary, where the state is consistent
        stop.requested, stop.signum = True, signum

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        train(cfg, args.out, stop)
    except PreemptedError as exc:
        print(f"samrepro train: {exc}", file=sys.stderr)
        return EXIT_PREEMPTED
    except TrainingDivergedError as exc:
        print(f"samrepro train: error: {exc}", file=sys.stderr)
        return EXIT_DIVERGED
    except ValueError as exc:
        print(f"samrepro train: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0
