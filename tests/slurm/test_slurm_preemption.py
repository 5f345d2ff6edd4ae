"""Preemption for real (issue 5): SLURM stops a training job at its time limit, Snakemake resubmits it, the job
resumes from its checkpoint, and the final run equals an uninterrupted one.

SLURM time limits are whole minutes and slurmctld enforces them on a periodic sweep, so a job with a
1-minute limit is signalled 60-90 s after it starts (SIGTERM, then SIGKILL after KillWait). The run is sized at
test time (calibrated on this machine) to need clearly more than that, so the first attempt cannot finish.
The limit is `1 if attempt == 1 else 10` minutes (`--set-resources` with Snakemake's `attempt`, the usual way
to grow a retried job's limit), so the resubmission that the profile's `retries` makes is cut once and then
resumes to the end however loaded the machine is. The reference run is the same study with no override (a
10-minute limit), run through SLURM at the same time on the other core.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from slurm_cluster import for_test_cluster, run_workflow, slurm_states, tail, write_config

pytestmark = pytest.mark.slurm

STUDY = "slurm_preempt"
EXPERIMENT = "preempt"
TRAIN_SECONDS = 100  # time the epochs must take: above the 60-90 s at which SLURM stops a 1-minute job
# where and how fast it ran, not what it computed
TIMING_KEYS = {
    "wall_time_s",
    "train_time_s",
    "images_per_s",
    "slurm_job_id",
    "slurm_array_job_id",
    "slurm_array_task_id",
    "resumes",
    "host",
    "peak_rss_mb",
    "cuda_max_allocated_mb",
    "start_time",
    "end_time",
}


def study(epochs: int, partition: str) -> dict:
    cfg = {
        "study": STUDY,
        "tracking": {"enabled": False},
        "resources": {"train": {"cpus_per_task": 1, "mem_mb": 2000, "runtime": 10}},
        "experiments": {
            EXPERIMENT: {
                "dataset": {"name": "digits", "root": "data", "val_fraction": 0.15},
                "model": {"name": "small_cnn", "kwargs": {"in_channels": 1}},
                "setups": ["SGD"],
                "seeds": [0],
                "epochs": epochs,
                "schedule": {"name": "multistep", "milestones": [0.3, 0.6, 0.8], "gamma": 0.2},
                "optim": {"lr": 0.05},
                "batch_size": 64,
                "workers": 0,
                "device": "cpu",
                "probe_batch_size": 128,
                "sharpness": {"enabled": False},
            }
        },
    }
    return for_test_cluster(cfg, partition)


def seconds_per_epoch(tmp: Path, partition: str) -> float:
    """Median epoch time of this run on one thread, from a 3-epoch calibration run outside SLURM."""
    cfg = write_config(tmp / "calibrate.yaml", study(3, partition))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    py = [sys.executable, "-m", "samrepro"]
    subprocess.run(
        [
            *py,
            "plan",
            "--config",
            str(cfg),
            "--experiment",
            EXPERIMENT,
            "--setup",
            "SGD",
            "--seed",
            "0",
            "--phase",
            "final",
            "--out",
            str(tmp / "cal" / "run.yaml"),
        ],
        check=True,
        env=env,
        timeout=120,
    )
    subprocess.run(
        [*py, "train", "--config", str(tmp / "cal" / "run.yaml"), "--out", str(tmp / "cal")],
        check=True,
        env=env,
        timeout=300,
        capture_output=True,
    )
    with (tmp / "cal" / "history.csv").open() as fh:
        times = sorted(float(row["epoch_time_s"]) for row in csv.DictReader(fh))
    return times[len(times) // 2]


def run_dir(work: Path) -> Path:
    return work / "results" / STUDY / "runs" / EXPERIMENT / "SGD" / "seed0"


def history(path: Path) -> list[dict[str, str]]:
    with (path / "history.csv").open() as fh:
        return [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in csv.DictReader(fh)]


def test_job_stopped_at_time_limit_resumes_from_checkpoint(tmp_path: Path, slurm_partition: str) -> None:
    epochs = max(20, math.ceil(TRAIN_SECONDS / seconds_per_epoch(tmp_path, slurm_partition)))
    target = f"results/{STUDY}/runs/{EXPERIMENT}/SGD/seed0/metrics.json"
    runs = {}

    cfg = write_config(tmp_path / "study.yaml", study(epochs, slurm_partition))

    def launch(name: str, *extra: str) -> None:
        runs[name] = run_workflow(tmp_path / name, cfg, *extra, targets=(target,), timeout=560)

    # The reference and the preempted run (first attempt limited to 1 min) side by side, one core each.
    ref = threading.Thread(target=launch, args=("reference",))
    ref.start()
    launch("preempted", "--set-resources", "train:runtime=1 if attempt == 1 else 10")
    ref.join()
    reference, preempted = runs["reference"], runs["preempted"]
    assert reference.returncode == 0, tail(reference.output)
    assert preempted.returncode == 0, tail(preempted.output)

    # SLURM stopped the first attempt at its time limit; Snakemake resubmitted it and the second completed.
    jobs = preempted.job_ids("train")
    states = slurm_states(jobs)
    assert len(jobs) == 2, f"epochs={epochs}: jobs {states}\n{tail(preempted.output)}"
    assert [states[j] for j in jobs] == ["TIMEOUT", "COMPLETED"], states
    first_log = next((preempted.workdir / ".snakemake" / "slurm_logs").rglob(f"{jobs[0]}.log"))
    assert "DUE TO TIME LIMIT" in first_log.read_text()
    [ref_job] = reference.job_ids("train")
    assert slurm_states([ref_job]) == {ref_job: "COMPLETED"}

    # The second attempt resumed from the checkpoint the first one saved.
    got = json.loads((run_dir(preempted.workdir) / "metrics.json").read_text())
    want = json.loads((run_dir(reference.workdir) / "metrics.json").read_text())
    assert got["resumes"] == 1
    assert want["resumes"] == 0
    assert str(got["slurm_job_id"]) == jobs[-1]
    assert str(want["slurm_job_id"]) == ref_job
    log = (
        preempted.workdir / "results" / STUDY / "logs" / "train" / EXPERIMENT / "SGD" / "seed0.log"
    ).read_text()
    assert "resuming at epoch" in log

    # ...and ended exactly where the uninterrupted run did: metrics, per-epoch history, weights.
    assert {k: v for k, v in got.items() if k not in TIMING_KEYS} == {
        k: v for k, v in want.items() if k not in TIMING_KEYS
    }
    assert got["epochs"] == epochs
    assert history(run_dir(preempted.workdir)) == history(run_dir(reference.workdir))
    a = torch.load(run_dir(preempted.workdir) / "model.pt", map_location="cpu", weights_only=False)
    b = torch.load(run_dir(reference.workdir) / "model.pt", map_location="cpu", weights_only=False)
    sa, sb = (m["model"] if isinstance(m, dict) and "model" in m else m for m in (a, b))
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key
