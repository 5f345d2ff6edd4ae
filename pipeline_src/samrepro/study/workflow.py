"""Small helpers the Snakefile needs at parse time (kept here so the workflow files hold no logic)."""

from __future__ import annotations

import os
import sys


def jobs_use_this_python() -> None:
    """Put the interpreter running Snakemake first on PATH, so `python -m samrepro` in a job's shell is the
    one with samrepro installed even when the venv is not activated (`.venv/bin/snakemake ...`). Jobs run
    with `--sdm conda` activate their env after this, so theirs wins there."""
    bindir = os.path.dirname(sys.executable)
    path = os.environ.get("PATH", "")
    if path.split(os.pathsep)[:1] != [bindir]:
        os.environ["PATH"] = bindir + os.pathsep + path
