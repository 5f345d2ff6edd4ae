"""`samrepro prepare --dataset NAME --root DIR [--download] --out manifest.json`.

The workflow's first step (DESIGN.md, "The DAG" step 1): verify (or, when asked, download) one dataset
and write its manifest atomically (temp file + os.replace), so an interrupted job never leaves a
manifest that looks complete. Missing data exits with status 2 and a message naming the dataset, the
expected path and how to obtain it.
"""

from __future__ import annotations

import argparse
import sys

from samrepro.atomic import atomic_write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset", required=True, help="registered dataset name (e.g. cifar10, digits, face_rec)"
    )
    parser.add_argument("--root", default=".", help="folder holding the dataset's files")
    parser.add_argument(
        "--download",
        action="store_true",
        help="download through torchvision when the files are missing and the license allows",
    )
    parser.add_argument("--out", required=True, help="manifest JSON to write")


def run(args: argparse.Namespace) -> int:
    from .registry import DatasetMissingError, prepare

    try:
        manifest = prepare(args.dataset, args.root, download=bool(args.download))
    except DatasetMissingError as exc:
        print(f"samrepro prepare: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"samrepro prepare: {exc}", file=sys.stderr)
        return 2
    atomic_write_json(args.out, manifest)
    counts = ", ".join(f"{k}={v}" for k, v in manifest.get("counts", {}).items())
    print(f"prepared {args.dataset}: {counts} -> {args.out}")
    return 0
