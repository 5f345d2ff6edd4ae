"""The report puts each claim's verdict on its setup's MLflow parent run (the track job's store)."""

from __future__ import annotations

import json

import pytest
from workflow_synthetic import classification_eval, write_run

from samrepro.cli import main
from samrepro.track.mlflow_log import track_study

SPEC = {
    "study": "synth",
    "experiments": {"cls": {"setups": ["SGD", "SAM"], "task": "classification", "paper": []}},
}


@pytest.mark.slow  # an MLflow sqlite store: ~15 s of schema migrations
def test_verdicts_are_tags_and_metrics_of_the_parent_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    res = tmp_path / "results" / "synth"
    runs = []
    for seed in range(3):
        runs.append(
            write_run(
                res / f"runs/cls/SGD/seed{seed}",
                experiment="cls",
                setup="SGD",
                seed=seed,
                evaluation=classification_eval(80.0 + 0.1 * seed),
            )
            / "eval.json"
        )
        runs.append(
            write_run(
                res / f"runs/cls/SAM/seed{seed}",
                experiment="cls",
                setup="SAM",
                seed=seed,
                rho=0.05,
                evaluation=classification_eval(85.0 + 0.2 * seed),
            )
            / "eval.json"
        )
    summary = track_study("synth", res, runs)
    tracked = res / "mlflow_runs.json"
    tracked.write_text(json.dumps(summary))
    out = tmp_path / "rep"
    args = [
        "report",
        "--spec",
        json.dumps(SPEC),
        "--runs",
        *map(str, runs),
        "--out",
        str(out),
        "--mlflow-runs",
        str(tracked),
    ]
    assert main(args) == 0
    assert main(args) == 0  # again: the tags are overwritten, nothing fails

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=summary["tracking_uri"])
    parent = client.get_run(summary["runs"]["cls/SAM"])
    assert parent.data.tags["claim.SGD.test_top1.verdict"] == "reproduced"
    assert parent.data.metrics["claim.SGD.test_top1.delta"] == pytest.approx(5.1)
    assert parent.data.metrics["claim.SGD.test_top1.p_holm"] < 0.05
    sgd = client.get_run(summary["runs"]["cls/SGD"])
    assert not any(k.startswith("claim.") for k in sgd.data.tags)  # SGD has no baseline: no claim


def test_a_broken_track_summary_is_one_line(tmp_path):
    bad = tmp_path / "mlflow_runs.json"
    bad.write_text("{not json")
    from samrepro.track.mlflow_log import log_claim_verdicts

    with pytest.raises(ValueError, match="mlflow_runs.json: unreadable track summary"):
        log_claim_verdicts(bad, [])
