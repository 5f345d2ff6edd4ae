"""Synthetic run folders in the engine's output format (docs/ARCHITECTURE.md Part C), for the track/report tests:
they exercise the workflow's readers without training anything."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml

from samrepro.engine.records import HISTORY_COLUMNS  # the engine's history.csv columns


def classification_eval(top1: float, train_acc: float = 99.0) -> dict:
    return {
        "test_top1": top1,
        "test_top5": min(100.0, top1 + 5),
        "train_acc": train_acc,
        "gap": train_acc - top1,
        "sharpness_top_eigenvalue": 10.0 + top1 / 10,
    }


def face_eval(lfw: float, cfp: float, train_acc: float = 95.0) -> dict:
    mean = (lfw + cfp) / 2
    return {
        "benchmarks": {"lfw": {"acc_mean": lfw, "acc_std": 0.5}, "cfp_fp": {"acc_mean": cfp, "acc_std": 0.7}},
        "verification_mean": mean,
        "train_acc": train_acc,
        "gap": train_acc - mean,
        "sharpness_top_eigenvalue": 3.0,
    }


def write_run(
    folder: Path,
    *,
    experiment: str,
    setup: str,
    seed: int,
    phase: str = "final",
    rho: float | None = None,
    score: float = 90.0,
    evaluation: dict | None = None,
    epochs: int = 3,
    study: str = "synth",
) -> Path:
    """One run folder with run.yaml, metrics.json, history.csv (and eval.json when given)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.yaml").write_text(
        yaml.safe_dump(
            {
                "study": study,
                "experiment": experiment,
                "setup": setup,
                "seed": seed,
                "phase": phase,
                "rho": rho,
                "dataset": {"name": "digits", "root": "data"},
                "model": {"name": "small_cnn", "kwargs": {}},
                "optim": {"lr": 0.05},
                "schedule": {"name": "multistep", "epochs": epochs},
            }
        )
    )
    with (folder / "history.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HISTORY_COLUMNS)
        for e in range(1, epochs + 1):
            w.writerow(
                [
                    e,
                    0.05,
                    1.0 / e,
                    50 + 10 * e,
                    score - (epochs - e),
                    0.5 / e,
                    2.0 + 0.1 * e,
                    1.0 / e,
                    1.5 + 0.1 * e,
                    0.1,
                ]
            )
    (folder / "metrics.json").write_text(
        json.dumps(
            {
                "study": study,
                "experiment": experiment,
                "setup": setup,
                "seed": seed,
                "rho": rho,
                "phase": phase,
                "epochs": epochs,
                "train_loss": 1.0 / epochs,
                "train_acc": 50 + 10 * epochs,
                "eval_acc": score,
                "selection_score": score,
                "wall_time_s": 1.5,
                "images_per_s": 1000.0,
                "device": "cpu",
                "versions": {"torch": "2.14.1", "samrepro": "0.1.0"},
                "slurm_job_id": None,
                "host": "testhost",
                "config_hash": f"h{seed}",
            }
        )
    )
    if evaluation is not None:
        (folder / "eval.json").write_text(json.dumps(evaluation))
    return folder
