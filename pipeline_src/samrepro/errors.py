"""Exit codes and one-line messages for the expected failures of every `samrepro` subcommand.

Every entry point (`samrepro.cli.main`) turns a failure of its inputs or outputs into one line on stderr,
``samrepro <command>: error: <file>: <what is wrong>; <the fix>``, and the documented exit code:

  0    done
  2    bad input: a config, run file, dataset, checkpoint or store that is missing, malformed or refused
       (a crafted pickle, a python-tagged YAML); the message names the file and the fix
  3    `train`: the loss became NaN/inf (the last good checkpoint is kept)
  4    an output could not be written: disk full, quota exceeded, read-only file system; the previous
       complete file is kept, so the same command, rerun after freeing space, resumes
  130  interrupted (Ctrl-C)
  143  `train`: stopped by SIGTERM after saving a checkpoint (SLURM preemption/time limit)

Anything else is a bug and keeps its traceback (exit 1). Torch-free: imported by every command.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path
from typing import Any

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3
EXIT_CANNOT_WRITE = 4
EXIT_INTERRUPTED = 130
EXIT_PREEMPTED = 143
CANNOT_WRITE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})


def one_line(text: str) -> str:
    """Collapse a message onto one line (some library messages span several)."""
    return " ".join(str(text).split())


def yaml_problem(exc: Exception) -> str:
    """'line N: <problem>' of a YAML error; python tags (`!!python/object/apply:...`) are explained."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}: " if mark is not None else ""
    problem = one_line(getattr(exc, "problem", None) or str(exc))
    if "python/" in problem:
        problem += " (python tags are refused: these files hold plain data only; nothing was run)"
    return f"{where}{problem}"


def yaml_message(
    exc: Exception, path: str | os.PathLike[str] | None = None, fix: str = "fix or regenerate the file"
) -> str:
    """'<file>: not valid YAML: line N: <problem>; <fix>'."""
    mark = getattr(exc, "problem_mark", None)
    name = path if path is not None else getattr(mark, "name", None) or "<yaml>"
    return f"{name}: not valid YAML: {yaml_problem(exc)}; {fix}"


def read_yaml(path: str | os.PathLike[str], fix: str = "fix or regenerate the file") -> Any:
    """yaml.safe_load of a text file (a python tag is refused, no code runs); a binary or malformed file
    raises ValueError naming it and `fix`."""
    import yaml  # lazily: most commands never read YAML

    try:
        return yaml.safe_load(Path(path).read_text())
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a text file ({exc.reason} at byte {exc.start}); {fix}") from None
    except yaml.YAMLError as exc:
        raise ValueError(yaml_message(exc, path, fix)) from None


def read_json(path: str | os.PathLike[str], fix: str) -> Any:
    """json.loads of a file; a corrupt file raises ValueError naming it and `fix` (how to redo it)."""
    try:
        return json.loads(Path(path).read_text())
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON (not UTF-8 text: {exc.reason}); {fix}") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); {fix}") from exc


def classify(exc: BaseException) -> tuple[int, str] | None:
    """(exit code, one-line message) for an expected failure; None for a bug (keep the traceback)."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "interrupted"
    if isinstance(exc, OSError) and exc.errno in CANNOT_WRITE:
        return EXIT_CANNOT_WRITE, (
            f"cannot write {exc.filename or 'an output'}: {exc.strerror}; the previous complete file is kept: "
            "free space (or quota) and rerun the same command (training resumes from its last checkpoint)"
        )
    if isinstance(exc, OSError) and exc.filename:
        return EXIT_BAD_INPUT, f"{exc.filename}: {exc.strerror}"
    yaml = sys.modules.get("yaml")
    if yaml is not None and isinstance(exc, yaml.YAMLError):
        return EXIT_BAD_INPUT, yaml_message(exc)
    if isinstance(exc, ValueError):
        return EXIT_BAD_INPUT, one_line(str(exc))
    return None
