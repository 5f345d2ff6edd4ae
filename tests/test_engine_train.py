"""Training runs end to end on real data (digits, digits_openset; small_cnn): outputs, determinism, resume after
SIGKILL and SIGTERM bitwise, NaN handling, evaluation."""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from run_configs import digits_run as run_cfg

from samrepro.engine import cli_evaluate, cli_train
from samrepro.engine import config as C
from samrepro.engine.records import HISTORY_COLUMNS
from samrepro.engine.trainer import StopFlag, TrainingDivergedError, train

# wall-clock figures and the count of restarts legitimately differ between an interrupted and a straight run
VOLATILE = {
    "wall_time_s",
    "train_time_s",
    "images_per_s",
    "resumes",
    "host",
    "peak_rss_mb",
    "cuda_max_allocated_mb",
    "start_time",
    "end_time",
}


def write_cfg(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "model.pt", map_location="cpu", weights_only=False)["model"]


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def stable_metrics(out: Path) -> dict:
    m = json.loads((out / "metrics.json").read_text())
    return {k: v for k, v in m.items() if k not in VOLATILE}


def stable_history(out: Path) -> list[dict]:
    with open(out / "history.csv") as f:
        return [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in csv.DictReader(f)]


def test_outputs_and_same_seed_gives_identical_run(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    cfg = C.validate(run_cfg())
    m1 = train(cfg, tmp_path / "a")
    train(cfg, tmp_path / "b")
    for name in ("checkpoint.pt", "model.pt", "metrics.json", "history.csv", "run.resolved.yaml"):
        assert (tmp_path / "a" / name).is_file()
    assert not [p for p in os.listdir(tmp_path / "a") if p.endswith(".tmp")]
    assert same_weights(weights(tmp_path / "a"), weights(tmp_path / "b"))
    assert stable_metrics(tmp_path / "a") == stable_metrics(tmp_path / "b")
    for key in (
        "study",
        "experiment",
        "setup",
        "seed",
        "rho",
        "phase",
        "epochs",
        "train_loss",
        "train_acc",
        "eval_acc",
        "selection_score",
        "wall_time_s",
        "images_per_s",
        "device",
        "versions",
        "slurm_job_id",
        "host",
        "config_hash",
    ):
        assert key in m1, key
    assert (
        m1["slurm_job_id"] == "4242"
        and m1["device"] == "cpu"
        and m1["versions"]["torch"] == torch.__version__
    )
    assert m1["selection_score"] == m1["eval_acc"] and 50.0 < m1["eval_acc"] <= 100.0  # learns digits
    with open(tmp_path / "a" / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0].keys()) == HISTORY_COLUMNS and [r["epoch"] for r in rows] == ["1", "2"]
    for r in rows:  # the mechanism probes are real numbers every epoch
        assert all(
            float(r[k]) > 0
            for k in ("probe_ce_loss", "probe_aace_loss", "probe_ce_grad_norm", "probe_aace_grad_norm")
        )
    other = train(C.validate(run_cfg(seed=2)), tmp_path / "c")
    assert other["train_loss"] != m1["train_loss"]  # the seed matters


def test_loader_workers_are_repeatable(tmp_path) -> None:
    cfg = C.validate(run_cfg(setup="SGD", rho=None, workers=2, schedule={"epochs": 1}))
    train(cfg, tmp_path / "a")
    train(cfg, tmp_path / "b")
    assert same_weights(weights(tmp_path / "a"), weights(tmp_path / "b"))


def test_tune_phase_scores_the_validation_split(tmp_path) -> None:
    m = train(C.validate(run_cfg(phase="tune", setup="SGD", rho=None, schedule={"epochs": 1})), tmp_path)
    assert m["eval_split"] == "val" and m["phase"] == "tune"


def test_nan_loss_stops_with_epoch_step_setup_and_keeps_checkpoint(tmp_path, monkeypatch) -> None:
    import samrepro.optim.step as step_mod

    real = step_mod.train_step
    calls = {"n": 0}

    def flaky(*a, **kw):
        res = real(*a, **kw)
        calls["n"] += 1
        if calls["n"] == 25:  # 22 steps per epoch (1347 images / 64): step 3 of epoch 2
            res.loss = torch.tensor(
                float("nan")
            )  # the step's loss stays on the device (read every sync_every)
        return res

    monkeypatch.setattr(step_mod, "train_step", flaky)
    with pytest.raises(TrainingDivergedError, match=r"'SAM'.*epoch 2, step 3/22"):
        train(C.validate(run_cfg(schedule={"epochs": 3})), tmp_path)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["epoch"] == 1 and state["step"] == 0
    assert not (tmp_path / "metrics.json").exists()

    calls["n"] = 0  # the CLI reports it with exit code 3
    args = argparse.Namespace(
        config=str(write_cfg(tmp_path / "run.yaml", run_cfg(schedule={"epochs": 3}))),
        out=str(tmp_path / "cli"),
    )
    assert cli_train.run(args) == cli_train.EXIT_DIVERGED


def test_bad_config_exit_code_2(tmp_path, capsys) -> None:
    args = argparse.Namespace(
        config=str(write_cfg(tmp_path / "r.yaml", run_cfg(setup="SGDD"))), out=str(tmp_path / "o")
    )
    assert cli_train.run(args) == 2
    assert "SGDD" in capsys.readouterr().err
    args = argparse.Namespace(
        config=str(write_cfg(tmp_path / "r2.yaml", run_cfg(setup="ArcFace"))), out=str(tmp_path / "o2")
    )
    assert cli_train.run(args) == 2  # face setup on a classification dataset


def test_checkpoint_of_another_config_is_refused(tmp_path) -> None:
    train(C.validate(run_cfg(schedule={"epochs": 1})), tmp_path)
    with pytest.raises(ValueError, match="different configuration"):
        train(C.validate(run_cfg(schedule={"epochs": 1}, seed=5)), tmp_path)


# ---------------------------------------------------------------- interruption
LONG = {"schedule": {"epochs": 5}}


def _start(cfg_path: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "samrepro", "train", "--config", str(cfg_path), "--out", str(out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_epochs(proc: subprocess.Popen, out: Path, epochs: int, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        hist = out / "history.csv"
        if hist.exists() and len(hist.read_text().splitlines()) - 1 >= epochs:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    raise AssertionError("training made no progress")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run (in-process; same code and thread count) the interrupted ones must reproduce."""
    out = tmp_path_factory.mktemp("ref") / "out"
    train(C.validate(run_cfg(**LONG)), out)
    return out


def _assert_same_run(out: Path, reference: Path) -> None:
    assert same_weights(weights(out), weights(reference))
    assert stable_metrics(out) == stable_metrics(reference)
    assert stable_history(out) == stable_history(reference)


def test_sigterm_then_sigkill_then_restart_is_bitwise_identical(tmp_path, reference) -> None:
    """A real process: SIGTERM (SLURM preemption) saves and exits 143; restarted, it is SIGKILLed mid-run;
    restarted again it finishes with the weights, metrics and history of the uninterrupted run."""
    cfg_path = write_cfg(tmp_path / "run.yaml", run_cfg(**LONG))
    out = tmp_path / "out"
    proc = _start(cfg_path, out)
    _wait_for_epochs(proc, out, 1)
    time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == cli_train.EXIT_PREEMPTED == 143, err
    assert "checkpoint saved" in err
    assert torch.load(out / "checkpoint.pt", weights_only=False)["epoch"] < 5

    proc = _start(cfg_path, out)
    _wait_for_epochs(proc, out, 3)
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "metrics.json").exists()

    proc = _start(cfg_path, out)
    stdout, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "resuming at epoch" in stdout
    _assert_same_run(out, reference)
    assert json.loads((out / "metrics.json").read_text())["resumes"] == 2


def test_crash_at_any_step_resumes_from_epoch_checkpoint_bitwise(tmp_path, reference) -> None:
    """In-process stand-in for SIGKILL at a known point: the process dies (here: an exception) in epoch 3;
    only the per-epoch checkpoint survives; the restarted run reproduces the reference bitwise."""
    import samrepro.optim.step as step_mod

    real = step_mod.train_step
    calls = {"n": 0}

    def dying(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 2 * 22 + 7:
            raise KeyboardInterrupt  # not handled by the engine: like a kill, nothing more is written
        return real(*a, **kw)

    step_mod.train_step = dying
    try:
        with pytest.raises(KeyboardInterrupt):
            train(C.validate(run_cfg(**LONG)), tmp_path)
    finally:
        step_mod.train_step = real
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=False)["epoch"] == 2
    train(C.validate(run_cfg(**LONG)), tmp_path)
    _assert_same_run(tmp_path, reference)


def test_mid_epoch_stop_in_process_resumes_bitwise(tmp_path) -> None:
    """Deterministic version of the SIGTERM case: the stop flag is raised at a known step (9 of 22)."""
    import samrepro.optim.step as step_mod

    cfg = C.validate(run_cfg(setup="AACE", rho=0.2, schedule={"epochs": 2}))
    train(cfg, tmp_path / "ref")
    stop = StopFlag()
    real = step_mod.train_step
    calls = {"n": 0}

    def counting(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 31:
            stop.requested, stop.signum = True, signal.SIGTERM
        return real(*a, **kw)

    from samrepro.engine.trainer import PreemptedError

    step_mod.train_step = counting
    try:
        with pytest.raises(PreemptedError):
            train(cfg, tmp_path / "run", stop)
    finally:
        step_mod.train_step = real
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert (state["epoch"], state["step"]) == (1, 9)
    train(cfg, tmp_path / "run")
    assert same_weights(weights(tmp_path / "run"), weights(tmp_path / "ref"))
    assert stable_metrics(tmp_path / "run") == stable_metrics(tmp_path / "ref")


# ---------------------------------------------------------------- evaluation
def test_evaluate_classification(tmp_path) -> None:
    train(C.validate(run_cfg(schedule={"epochs": 2})), tmp_path)
    args = argparse.Namespace(run=str(tmp_path), out=str(tmp_path / "eval.json"), device=None)
    assert cli_evaluate.run(args) == 0
    ev = json.loads((tmp_path / "eval.json").read_text())
    assert 0 <= ev["test_top1"] <= ev["test_top5"] <= 100 and 0 <= ev["train_acc"] <= 100
    assert ev["gap"] == pytest.approx(ev["train_acc"] - ev["test_top1"])
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert ev["test_top1"] == pytest.approx(metrics["eval_acc"])  # same model, same test set
    assert ev["sharpness_top_eigenvalue"] > 0
    assert cli_evaluate.run(argparse.Namespace(run=str(tmp_path / "nope"), out=None, device=None)) == 2


def test_face_setup_trains_and_evaluates(tmp_path) -> None:
    cfg = run_cfg(
        setup="FlatFace-SAM-ArcFace",
        dataset={"name": "digits_openset"},
        embedding_dim=32,
        schedule={"epochs": 2},
    )
    m = train(C.validate(cfg), tmp_path)
    assert m["task"] == "face" and 40.0 <= m["eval_acc"] <= 100.0
    ev = cli_evaluate.evaluate_run(tmp_path)
    assert set(ev["benchmarks"]) and all(0 <= b["acc_mean"] <= 100 for b in ev["benchmarks"].values())
    assert ev["verification_mean"] == pytest.approx(m["eval_acc"])
    assert ev["gap"] == pytest.approx(ev["train_acc"] - ev["verification_mean"])
    assert ev["sharpness_top_eigenvalue"] is not None
