"""samrepro track: MLflow layout, provenance, idempotency (DESIGN 'The DAG', step 5), on synthetic run folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from workflow_synthetic import classification_eval, face_eval, write_run

from samrepro.cli import main
from samrepro.track.mlflow_log import KEY_TAG, resolve_tracking_uri, track_study


def make_study(root: Path) -> tuple[list[Path], list[Path]]:
    runs, tune = [], []
    for i, seed in enumerate((0, 1, 2)):
        runs.append(
            write_run(
                root / f"runs/cls/SGD/seed{seed}",
                experiment="cls",
                setup="SGD",
                seed=seed,
                evaluation=classification_eval(80.0 + i),
            )
            / "eval.json"
        )
        runs.append(
            write_run(
                root / f"runs/cls/SAM/seed{seed}",
                experiment="cls",
                setup="SAM",
                seed=seed,
                rho=0.05,
                evaluation=classification_eval(82.0 + i),
            )
            / "eval.json"
        )
    for rho in (0.05, 0.1):
        tune.append(
            write_run(
                root / f"tune/cls/SAM/rho{rho:g}_seed0",
                experiment="cls",
                setup="SAM",
                seed=0,
                phase="tune",
                rho=rho,
                score=70 + rho,
            )
            / "metrics.json"
        )
    for seed in (0, 1):
        runs.append(
            write_run(
                root / f"runs/face/ArcFace/seed{seed}",
                experiment="face",
                setup="ArcFace",
                seed=seed,
                evaluation=face_eval(90.0 + seed, 85.0),
            )
            / "eval.json"
        )
        runs.append(
            write_run(
                root / f"runs/face/FlatFace-SAM-ArcFace/seed{seed}",
                experiment="face",
                setup="FlatFace-SAM-ArcFace",
                seed=seed,
                rho=0.1,
                evaluation=face_eval(91.0 + seed, 86.0),
            )
            / "eval.json"
        )
    return runs, tune


def active(uri: str, study: str):
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(study)
    return (
        client,
        exp,
        client.search_runs([exp.experiment_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=1000),
    )


EXPECTED = 4 + 3 + 3 + 2 + 2 + 2  # parents (exp x setup) + final children + tuning children


def test_track_layout_provenance_and_idempotency(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "ignored-by-track")  # provenance comes from the run's metrics.json
    res = tmp_path / "results" / "synth"
    runs, tune = make_study(res)
    summary = track_study("synth", res, runs, tune)
    uri = summary["tracking_uri"]
    assert uri == f"sqlite:///{(res / 'mlflow.db').resolve()}"
    assert (res / "mlflow.db").is_file()
    client, exp, found = active(uri, "synth")
    assert len(found) == EXPECTED and summary["created"] == EXPECTED
    assert exp.artifact_location == (res / "mlartifacts").resolve().as_uri()
    keys = [r.data.tags[KEY_TAG] for r in found]
    assert len(set(keys)) == EXPECTED

    by_key = {r.data.tags[KEY_TAG]: r for r in found}
    parent, child = by_key["cls/SAM"], by_key["cls/SAM/seed1"]
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert by_key["cls/SAM/tune/rho0.1_seed0"].data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.data.tags["config_hash"] == "h1" and child.data.tags["host"] == "testhost"
    assert child.data.tags["version.torch"] == "2.14.1" and "git_commit" in child.data.tags
    assert child.data.tags["slurm_job_id"] == ""
    assert child.data.params["optim.lr"] == "0.05" and child.data.params["seed"] == "1"
    assert child.data.metrics["eval.test_top1"] == pytest.approx(83.0)
    assert parent.data.metrics["eval.test_top1.mean"] == pytest.approx(83.0)
    assert parent.data.metrics["eval.test_top1.std"] == pytest.approx(1.0)
    history = client.get_metric_history(child.info.run_id, "train_loss")
    assert sorted((m.step, round(m.value, 6)) for m in history) == [(1, 1.0), (2, 0.5), (3, round(1 / 3, 6))]
    face = by_key["face/FlatFace-SAM-ArcFace/seed1"].data.metrics
    assert face["eval.lfw"] == pytest.approx(92.0) and face["eval.verification_mean"] == pytest.approx(89.0)
    artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
    assert artifacts == {"run.yaml", "metrics.json", "history.csv", "eval.json"}
    assert Path(exp.artifact_location.removeprefix("file://")).is_dir()

    # re-running logs nothing new
    again = track_study("synth", res, runs, tune)
    _, _, found2 = active(uri, "synth")
    assert len(found2) == EXPECTED and again["skipped"] == EXPECTED and again["created"] == 0
    assert again["runs"] == summary["runs"]

    # a re-trained run replaces its setup's runs; other setups keep theirs; still no duplicates
    m = json.loads((res / "runs/cls/SAM/seed1/eval.json").read_text())
    m["test_top1"] = 99.0
    (res / "runs/cls/SAM/seed1/eval.json").write_text(json.dumps(m))
    third = track_study("synth", res, runs, tune)
    _, _, found3 = active(uri, "synth")
    assert len(found3) == EXPECTED and third["replaced"] == 1 + 3 + 2
    assert third["runs"]["cls/SGD"] == summary["runs"]["cls/SGD"]
    assert third["runs"]["cls/SAM/seed1"] != summary["runs"]["cls/SAM/seed1"]
    new = {r.data.tags[KEY_TAG]: r for r in found3}["cls/SAM/seed1"]
    assert new.data.metrics["eval.test_top1"] == pytest.approx(99.0)


def test_tracking_uri_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None, tmp_path).startswith("sqlite:///")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert resolve_tracking_uri(None, tmp_path) == "http://mlflow.example:5000"
    assert resolve_tracking_uri("sqlite:///x.db", tmp_path) == "sqlite:///x.db"


def test_track_cli_env_uri_and_stale_duplicate(tmp_path, monkeypatch):
    res = tmp_path / "res"
    runs, tune = make_study(res)
    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    out = tmp_path / "summary.json"
    assert (
        main(
            [
                "track",
                "--study",
                "s2",
                "--results",
                str(res),
                "--runs",
                *map(str, runs),
                "--tune",
                *map(str, tune),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    summary = json.loads(out.read_text())
    assert summary["tracking_uri"] == uri and (tmp_path / "elsewhere.db").is_file()
    assert not (res / "mlflow.db").exists()
    # a copied folder claiming the same identity is refused, not logged twice
    dup = (
        write_run(
            tmp_path / "copy", experiment="cls", setup="SGD", seed=0, evaluation=classification_eval(1.0)
        )
        / "eval.json"
    )
    with pytest.raises(ValueError, match="both claim to be cls/SGD/seed0"):
        track_study("s2", res, [*runs, dup], tune)


def test_track_requires_eval(tmp_path):
    folder = write_run(tmp_path / "r", experiment="cls", setup="SGD", seed=0)
    with pytest.raises(ValueError, match="no eval.json"):
        track_study("s3", tmp_path, [folder], [])
