"""Issue 8, items 3 and 5: `track` repairs what a SIGKILL left half-logged; a corrupt or missing run file and a
corrupt MLflow store are one line naming the file and a way to redo it that really works."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from run_configs import tiny_sgd_run
from workflow_synthetic import classification_eval, write_run

from samrepro.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = tiny_sgd_run(phase="final")
# a child run mid-logging: created (RUNNING, under a parent) and some of its metrics already written
MID_LOGGING = """SELECT count(*) FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid
                 WHERE t.key = 'mlflow.parentRunId' AND r.status = 'RUNNING'
                 AND EXISTS (SELECT 1 FROM metrics m WHERE m.run_uuid = r.run_uuid)"""


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def active_runs(db: Path, study: str) -> tuple:
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    exp = client.get_experiment_by_name(study)
    return client, client.search_runs(
        [exp.experiment_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=500
    )


def kill_when_mid_logging(proc: subprocess.Popen, db: Path, timeout: float = 120.0) -> None:
    """Poll the store until a child run is half-logged, then SIGKILL the `track` process."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=0.2) as con:
                if con.execute(MID_LOGGING).fetchone()[0]:
                    os.kill(proc.pid, signal.SIGKILL)
                    return
        except sqlite3.OperationalError:  # the store is being created or is locked by the writer
            pass
        time.sleep(0.02)
    raise AssertionError(f"track never reached a half-logged child run (rc {proc.poll()})")


@pytest.mark.slow
def test_track_redoes_what_a_sigkill_left_half_logged(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    res, epochs = tmp_path / "results" / "synth", 250  # 2,250 history metrics per run: 3 log_batch calls
    evals = [
        write_run(
            res / f"runs/cls/{setup}/seed0",
            experiment="cls",
            setup=setup,
            seed=0,
            epochs=epochs,
            rho=None if setup == "SGD" else 0.05,
            evaluation=classification_eval(80.0),
        )
        / "eval.json"
        for setup in ("SGD", "SAM")
    ]
    args = [
        "track",
        "--study",
        "synth",
        "--results",
        str(res),
        "--runs",
        *map(str, evals),
        "--out",
        str(res / "mlflow_runs.json"),
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "samrepro", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    kill_when_mid_logging(proc, res / "mlflow.db")
    assert proc.wait(timeout=60) == -signal.SIGKILL
    _, left = active_runs(res / "mlflow.db", "synth")
    assert any(r.info.status == "RUNNING" for r in left)  # the kill really landed inside the logging
    assert not (res / "mlflow_runs.json").exists()

    assert main(args) == 0
    client, runs = active_runs(res / "mlflow.db", "synth")
    keys = [r.data.tags["samrepro.key"] for r in runs]
    assert sorted(keys) == sorted(
        [f"cls/{s}" for s in ("SGD", "SAM")] + [f"cls/{s}/seed0" for s in ("SGD", "SAM")]
    )
    assert {r.info.status for r in runs} == {"FINISHED"}
    for child in (r for r in runs if "mlflow.parentRunId" in r.data.tags):
        run_id = child.info.run_id
        assert len(client.get_metric_history(run_id, "train_loss")) == epochs
        assert "eval.test_top1" in child.data.metrics and "optim.lr" in child.data.params
        assert sorted(a.path for a in client.list_artifacts(run_id)) == sorted(
            ["eval.json", "history.csv", "metrics.json", "run.yaml"]
        )
    summary = json.loads((res / "mlflow_runs.json").read_text())
    assert summary["skipped"] + summary["created"] + summary["replaced"] == 4 and summary["skipped"] <= 2
    assert main(args) == 0  # now complete: a third call changes nothing
    assert json.loads((res / "mlflow_runs.json").read_text())["skipped"] == 4


@pytest.fixture
def finished_run(tmp_path) -> Path:
    """A real tiny run (digits, 1 epoch), trained and evaluated; run.yaml inside it, as `plan` writes it."""
    out = tmp_path / "run"
    out.mkdir()
    cfg = out / "run.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    assert main(["train", "--config", str(cfg), "--out", str(out)]) == 0
    assert main(["evaluate", "--run", str(out)]) == 0
    return out


def test_corrupt_metrics_json_is_named_with_a_redo_that_works(
    tmp_path, finished_run, capsys, monkeypatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    metrics = finished_run / "metrics.json"
    weights = torch.load(finished_run / "model.pt", weights_only=True)["model"]
    good = json.loads(metrics.read_text())
    metrics.write_text(metrics.read_text()[:40])  # a half-written file (e.g. copied while being written)
    capsys.readouterr()
    track = [
        "track",
        "--study",
        "t",
        "--results",
        str(tmp_path / "res"),
        "--runs",
        str(finished_run / "eval.json"),
    ]
    assert main(track) == 2
    line = one_error_line(capsys)
    assert str(metrics) in line and f"snakemake --forcerun {metrics}" in line and f"delete {metrics}" in line

    metrics.unlink()  # the redo: what Snakemake does for a missing/forced output, then the same train command
    assert main(["train", "--config", str(finished_run / "run.yaml"), "--out", str(finished_run)]) == 0
    redone = json.loads(metrics.read_text())
    for key in (
        "experiment",
        "setup",
        "seed",
        "phase",
        "epochs",
        "train_loss",
        "train_acc",
        "eval_acc",
        "selection_score",
        "config_hash",
    ):
        assert redone[key] == good[key], key
    again = torch.load(finished_run / "model.pt", weights_only=True)["model"]
    assert all(
        torch.equal(weights[k], again[k]) for k in weights
    )  # resumed from the checkpoint, not retrained
    assert main(track) == 0


def test_corrupt_eval_json_and_run_yaml_are_named(tmp_path, capsys) -> None:
    run = write_run(
        tmp_path / "runs/cls/SGD/seed0",
        experiment="cls",
        setup="SGD",
        seed=0,
        evaluation=classification_eval(80.0),
    )
    (run / "eval.json").write_bytes(b"\x00\xff garbage")
    assert main(["track", "--study", "s", "--results", str(tmp_path), "--runs", str(run / "eval.json")]) == 2
    assert str(run / "eval.json") in one_error_line(capsys)
    (run / "eval.json").write_text(json.dumps(classification_eval(80.0)))
    (run / "run.yaml").write_text("study: s\noptim: !!python/object/apply:os.system ['true']\n")
    assert main(["track", "--study", "s", "--results", str(tmp_path), "--runs", str(run / "eval.json")]) == 2
    line = one_error_line(capsys)
    assert str(run / "run.yaml") in line and "line 2" in line


def test_corrupt_mlflow_db_is_named_with_the_fix(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run = write_run(
        tmp_path / "runs/cls/SGD/seed0",
        experiment="cls",
        setup="SGD",
        seed=0,
        evaluation=classification_eval(80.0),
    )
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"SQLite format 3\x00" + os.urandom(4096))
    assert main(["track", "--study", "s", "--results", str(tmp_path), "--runs", str(run / "eval.json")]) == 2
    line = one_error_line(capsys)
    assert str(db) in line and f"mv {db} {db}.corrupt" in line


@pytest.mark.slow
def test_redo_hints_are_snakemake_commands_that_reschedule_the_run(tmp_path, capsys, monkeypatch) -> None:
    """A study whose outputs are all present and up to date (plain `snakemake` has nothing to do): the hint of a
    corrupt metrics.json (track) and of a missing eval.json (report) is a `snakemake --forcerun` command which,
    run as given from the study's directory, schedules that run's job again."""
    study = {
        "study": "s",
        "tracking": {"enabled": False},
        "experiments": {
            "e": {
                "dataset": {"name": "digits"},
                "model": {"name": "small_cnn"},
                "setups": ["SGD"],
                "seeds": [0],
                "epochs": 1,
            }
        },
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(study))

    def snakemake(*extra: str) -> str:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "snakemake",
                "--snakefile",
                str(ROOT / "Snakefile"),
                "--configfile",
                "s.yaml",
                "--cores",
                "1",
                *extra,
            ],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=300,
        ).stdout
        return " ".join(out.split())

    summary = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(ROOT / "Snakefile"),
            "--configfile",
            "s.yaml",
            "--summary",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    outputs = [row.split("\t")[0] for row in summary.splitlines()[1:]]
    now = time.time()
    for i, rel in enumerate(reversed(outputs)):  # every output present and newer than its inputs
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("{}")
        os.utime(tmp_path / rel, (now + i, now + i))
    assert "Nothing to be done" in snakemake("-n")
    rel = Path("results/s/runs/e/SGD/seed0")
    run = tmp_path / rel
    stamp = (run / "metrics.json").stat().st_mtime
    write_run(run, experiment="e", setup="SGD", seed=0, study="s")
    (run / "metrics.json").write_text('{"experiment": "e", "setup"')  # corrupt, as Snakemake last saw it
    for name in ("run.yaml", "history.csv", "metrics.json"):
        os.utime(run / name, (stamp, stamp))
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()

    assert main(["track", "--study", "s", "--results", "results/s", "--tune", str(rel / "metrics.json")]) == 2
    hint = re.search(r"`(snakemake --forcerun \S+)`", one_error_line(capsys)).group(1)
    assert hint == f"snakemake --forcerun {rel / 'metrics.json'}"
    assert " train 1 " in snakemake("-n", *hint.split()[1:])

    write_run(run, experiment="e", setup="SGD", seed=0, study="s")  # metrics.json redone; eval.json lost
    (run / "eval.json").unlink()
    assert main(["report", "--runs", str(rel / "eval.json"), "--out", "reports/s"]) == 2
    hint = re.search(r"`(snakemake --forcerun \S+)`", one_error_line(capsys)).group(1)
    assert hint == f"snakemake --forcerun {rel / 'eval.json'}"
    plan = snakemake("-n", *hint.split()[1:])
    assert " evaluate 1 " in plan and " train 1 " not in plan


def test_an_interrupted_replace_leaves_no_orphan_run(tmp_path, monkeypatch) -> None:
    """A replace killed right after deleting the old parent leaves its children active; the next track must
    not keep a child of a seed that is no longer in the study just because its parent is gone."""
    from samrepro.track.mlflow_log import track_study

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    res = tmp_path / "res"
    evals = [
        write_run(
            res / f"runs/cls/SAM/seed{s}",
            experiment="cls",
            setup="SAM",
            seed=s,
            rho=0.05,
            evaluation=classification_eval(80.0 + s),
        )
        / "eval.json"
        for s in (0, 1, 2)
    ]
    track_study("s", res, evals)
    client, runs = active_runs(res / "mlflow.db", "s")
    client.delete_run(next(r.info.run_id for r in runs if r.data.tags["samrepro.key"] == "cls/SAM"))
    track_study("s", res, evals[:2])  # seed 2 left the study meanwhile
    _, runs = active_runs(res / "mlflow.db", "s")
    assert sorted(r.data.tags["samrepro.key"] for r in runs) == ["cls/SAM", "cls/SAM/seed0", "cls/SAM/seed1"]
