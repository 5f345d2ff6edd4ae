"""Data lineage in MLflow (issue 11): dataset inputs from the prepare manifest (idempotent on re-track), the
training's real start/end times on runs and parents, and the experiment kind that opens the training view."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from workflow_synthetic import classification_eval, write_run

from samrepro.track.lineage import (
    EXPERIMENT_KIND_TAG,
    TRAINING_KIND,
    content_hash,
    dataset_digest,
    read_manifest,
    training_view_url,
)
from samrepro.track.mlflow_log import KEY_TAG, track_study

MANIFEST = {
    "dataset": "digits",
    "task": "classification",
    "root": "/data/copy-a",
    "counts": {"images": 1797},
    "data_sha256": "ab" * 32,
    "files": [{"path": "x.bin", "size": 10, "sha256": "cd" * 32}],
}
END = 1_700_000_000.0  # when training finished (metrics.json mtime), Unix seconds


def study(res: Path) -> tuple[list[Path], list[Path]]:
    (res / "data").mkdir(parents=True)
    (res / "data" / "digits.json").write_text(json.dumps(MANIFEST))
    runs = [
        write_run(
            res / f"runs/cls/SAM/seed{s}",
            experiment="cls",
            setup="SAM",
            seed=s,
            rho=0.05,
            evaluation=classification_eval(80.0 + s),
        )
        / "eval.json"
        for s in (0, 1)
    ]
    tune = [
        write_run(
            res / "tune/cls/SAM/rho0.05_seed0", experiment="cls", setup="SAM", seed=0, phase="tune", rho=0.05
        )
        / "metrics.json"
    ]
    for i, path in enumerate([*runs, *tune]):
        metrics = path.parent / "metrics.json"
        os.utime(metrics, (END + 100 * i, END + 100 * i))
    return runs, tune


def logged(uri: str) -> dict:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("synth")
    found = client.search_runs([exp.experiment_id], max_results=100)
    return {"exp": exp, "runs": {r.data.tags[KEY_TAG]: client.get_run(r.info.run_id) for r in found}}


def test_dataset_inputs_times_and_experiment_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    res = tmp_path / "results" / "synth"
    runs, tune = study(res)
    uri = track_study("synth", res, runs, tune)["tracking_uri"]
    got = logged(uri)
    assert got["exp"].tags[EXPERIMENT_KIND_TAG] == TRAINING_KIND == "custom_model_development"
    assert training_view_url("7").endswith("/#/experiments/7/runs?workflowType=machine_learning")

    child, tuned, parent = (
        got["runs"][k] for k in ("cls/SAM/seed1", "cls/SAM/tune/rho0.05_seed0", "cls/SAM")
    )
    [inp] = child.inputs.dataset_inputs
    assert inp.dataset.name == "digits" and inp.dataset.digest == dataset_digest(MANIFEST)
    assert json.loads(inp.dataset.source) == {"uri": "/data/copy-a"}
    profile = json.loads(inp.dataset.profile)
    assert profile["content"] == content_hash(MANIFEST) and profile["counts"] == {"images": 1797}
    tags = {t.key: t.value for t in inp.tags}
    assert (tags["mlflow.data.context"], tags["samrepro.val_fraction"]) == (
        "train",
        "None",
    )  # synthetic run.yaml
    assert {t.key: t.value for t in tuned.inputs.dataset_inputs[0].tags}[
        "mlflow.data.context"
    ] == "train-minus-validation"

    # real times: end = metrics.json mtime, start = end - wall_time_s (1.5 s); the parent spans its children
    assert (child.info.start_time, child.info.end_time) == (
        int((END + 100 - 1.5) * 1000),
        int((END + 100) * 1000),
    )
    assert parent.info.start_time == int((END - 1.5) * 1000) and parent.info.end_time == int(
        (END + 200) * 1000
    )
    assert (
        child.data.metrics["final.wall_time_s"] == 1.5 and child.data.metrics["final.images_per_s"] == 1000.0
    )

    # re-tracking unchanged runs adds no input; a re-tracked (changed) setup logs exactly one input per run
    track_study("synth", res, runs, tune)
    assert len(logged(uri)["runs"]["cls/SAM/seed1"].inputs.dataset_inputs) == 1
    (res / "runs/cls/SAM/seed0/eval.json").write_text(json.dumps(classification_eval(99.0)))
    track_study("synth", res, runs, tune)
    again = logged(uri)["runs"]
    assert again["cls/SAM/seed1"].info.run_id != child.info.run_id
    assert [len(r.inputs.dataset_inputs) for k, r in again.items() if k != "cls/SAM"] == [1, 1, 1]


def test_a_different_copy_gets_another_digest_and_bad_manifests_are_refused(tmp_path: Path) -> None:
    other = {
        **MANIFEST,
        "files": [{"path": "x.bin", "size": 10, "sha256": "ef" * 32}],
        "root": "/data/copy-b",
    }
    assert content_hash(other) != content_hash(MANIFEST)
    assert dataset_digest(other) != dataset_digest(MANIFEST)
    same_files = {**MANIFEST, "root": "/elsewhere"}
    assert content_hash(same_files) == content_hash(MANIFEST)  # the same files...
    assert dataset_digest(same_files) != dataset_digest(MANIFEST)  # ...in another folder: its own source
    bad = tmp_path / "digits.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match=f"{bad}: a prepare manifest is a JSON object"):
        read_manifest(bad)
    assert read_manifest(tmp_path / "absent.json") is None


def test_provenance_names_an_array_task_as_slurm_does(monkeypatch: pytest.MonkeyPatch) -> None:
    from samrepro.engine.records import provenance

    monkeypatch.setenv("SLURM_JOB_ID", "105")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    assert provenance()["slurm_job_id"] == "105" and provenance()["slurm_array_job_id"] is None
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "104")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    prov = provenance()
    assert (prov["slurm_job_id"], prov["slurm_array_job_id"], prov["slurm_array_task_id"]) == (
        "104_2",
        "104",
        "2",
    )
