"""`samrepro track`: log a study's run folders into MLflow (the single writer; idempotent).

View the result with `mlflow ui --backend-store-uri sqlite:///results/<study>/mlflow.db` (or the URI used).
Exit codes: 0 logged (or unchanged), 2 a run file or the store is missing/corrupt (the message names it and
how to redo it), 4 the summary could not be written. A `track` killed at any point is simply run again.
"""

from __future__ import annotations

import argparse
import json

from samrepro.atomic import atomic_write_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--study", required=True, help="study name = MLflow experiment name")
    parser.add_argument("--results", required=True, help="results/<study> folder (default store, artifacts)")
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow URI; default $MLFLOW_TRACKING_URI, else sqlite:///<results>/mlflow.db",
    )
    parser.add_argument("--runs", nargs="*", default=[], help="final runs: eval.json files or run folders")
    parser.add_argument("--tune", nargs="*", default=[], help="tuning runs: metrics.json files or folders")
    parser.add_argument("--out", default=None, help="summary JSON (run ids) to write atomically")


def run(args: argparse.Namespace) -> int:
    from samrepro.track.lineage import training_view_url
    from samrepro.track.mlflow_log import resolve_tracking_uri, track_study

    try:
        summary = track_study(args.study, args.results, args.runs, args.tune, tracking_uri=args.tracking_uri)
    except Exception as exc:
        if not type(exc).__module__.startswith(("mlflow", "sqlalchemy", "sqlite3")):
            raise
        uri = resolve_tracking_uri(args.tracking_uri, args.results)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ValueError(
            f"MLflow store {uri}: {type(exc).__name__}: {first}; check the store (a sqlite file "
            "can be moved aside: track then logs every run again)"
        ) from exc
    text = json.dumps(summary, indent=2, sort_keys=True) + "\n"
    if args.out:
        atomic_write_text(args.out, text)
    print(
        f"MLflow {summary['tracking_uri']}: experiment '{args.study}' ({summary['experiment_id']}), "
        f"{len(summary['runs'])} runs: {summary['created']} created, {summary['replaced']} replaced, "
        f"{summary['skipped']} unchanged"
    )
    print(
        f"view: mlflow ui --backend-store-uri {summary['tracking_uri']}, then open "
        f"{training_view_url(summary['experiment_id'])}"
    )
    return 0
