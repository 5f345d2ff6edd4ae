"""End to end through Snakemake: a tiny study (one epoch, two setups per track, one tuned rho, one fixed)
in a temporary folder; the report's table holds the numbers of the runs' files and MLflow holds exactly the expected runs."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "study": "tiny",
    "resources": {k: {"cpus_per_task": 1} for k in ("tune", "train", "evaluate")},
    "experiments": {
        "digits": {
            "dataset": {"name": "digits", "root": "data", "val_fraction": 0.15},
            "model": {"name": "small_cnn", "kwargs": {"in_channels": 1}},
            "setups": ["SGD", "SAM"],
            "rho_grid": [0.05],
            "seeds": [0, 1],
            "tune": {"seeds": [0]},
            "epochs": 1,
            "optim": {"lr": 0.05},
            "batch_size": 128,
            "workers": 0,
            "device": "cpu",
            "probe_batch_size": 64,
            "sharpness": {"enabled": True, "samples": 64, "iterations": 2},
        },
        "openset": {
            "dataset": {"name": "digits_openset", "root": "data", "val_fraction": 0.15},
            "model": {"name": "small_cnn", "kwargs": {"in_channels": 1}},
            "embedding_dim": 16,
            "head": {"kwargs": {"s": 16.0}},
            "setups": ["ArcFace", "FlatFace-SAM-ArcFace"],
            "seeds": [0],
            "setup_overrides": {"FlatFace-SAM-ArcFace": {"rho": 0.1}},  # fixed rho: no tuning jobs
            "epochs": 1,
            "optim": {"lr": 0.05},
            "batch_size": 128,
            "workers": 0,
            "device": "cpu",
            "probe_batch_size": 64,
            "sharpness": {"enabled": False},
            "paper": [{"path": "flatface.casia_webface", "field": "Average", "metric": "verification_mean"}],
        },
    },
}


def snakemake_command(workdir: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "tiny.yaml"),
        "--cores",
        "2",
        *args,
    ]


def snakemake_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        snakemake_command(workdir, *args), capture_output=True, text=True, env=snakemake_env(), timeout=900
    )


class TinyStudy:
    """The tiny study's first `snakemake` run, started as soon as the session has collected this module (see
    tests/conftest.py: it then runs beside the suite's single-threaded tests instead of after them)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        (workdir / "tiny.yaml").write_text(yaml.safe_dump(TINY))
        self.out, self.err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")  # pipes could fill up
        self.proc = subprocess.Popen(
            snakemake_command(workdir),
            stdout=self.out,
            stderr=self.err,
            text=True,
            env=snakemake_env(),
            start_new_session=True,  # its jobs form one process group, stopped together
        )

    def result(self) -> subprocess.CompletedProcess:
        self.proc.wait(timeout=900)
        self.out.seek(0)
        self.err.seek(0)
        return subprocess.CompletedProcess(
            self.proc.args, self.proc.returncode, self.out.read(), self.err.read()
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.out.close()
        self.err.close()


STARTED: list[TinyStudy] = []


def start_early(tmp_path_factory: pytest.TempPathFactory) -> TinyStudy:
    """Called once per session by tests/conftest.py when a test of this module is selected."""
    STARTED.append(TinyStudy(tmp_path_factory.mktemp("tiny_study")))
    return STARTED[-1]


@pytest.mark.slow
def test_tiny_study_end_to_end(tmp_path_factory):
    pytest.importorskip("samrepro.engine.cli_train")
    study = STARTED[0] if STARTED else start_early(tmp_path_factory)
    tmp_path, proc = study.workdir, study.result()
    logs = (
        "\n".join(p.read_text() for p in (tmp_path / "results/tiny/logs").rglob("*.log"))
        if (tmp_path / "results/tiny/logs").exists()
        else ""
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:] + logs[-5000:]
    res, rep = tmp_path / "results" / "tiny", tmp_path / "reports" / "tiny"

    # rho tuned on validation, and the final runs used it
    best = json.loads((res / "tune/digits/SAM/best.json").read_text())
    assert best["rho"] == 0.05
    run = yaml.safe_load((res / "runs/digits/SAM/seed1/run.yaml").read_text())
    assert run["rho"] == 0.05 and run["phase"] == "final" and run["seed"] == 1
    assert yaml.safe_load((res / "tune/digits/SAM/rho0.05_seed0/run.yaml").read_text())["phase"] == "tune"

    # the report's numbers are those of the eval.json files
    summary = pd.read_csv(rep / "summary.csv")
    for setup in ("SGD", "SAM"):
        top1 = [
            json.loads((res / f"runs/digits/{setup}/seed{s}/eval.json").read_text())["test_top1"]
            for s in (0, 1)
        ]
        row = summary[
            (summary.experiment == "digits") & (summary.setup == setup) & (summary.metric == "test_top1")
        ].iloc[0]
        assert row["mean"] == pytest.approx(statistics.fmean(top1))
        assert row["std"] == pytest.approx(statistics.stdev(top1))
        md = (rep / "report.md").read_text()
        assert f"{statistics.fmean(top1):.2f} ± {statistics.stdev(top1):.2f}" in md
    face = json.loads((res / "runs/openset/FlatFace-SAM-ArcFace/seed0/eval.json").read_text())
    row = summary[(summary.setup == "FlatFace-SAM-ArcFace") & (summary.metric == "verification_mean")].iloc[0]
    assert row["mean"] == pytest.approx(face["verification_mean"]) and row["paper"] == pytest.approx(95.05)
    assert (rep / "index.html").stat().st_size > 10_000 and list((rep / "figures").glob("*.png"))

    assert not (res / "tune/openset").exists()
    assert (
        yaml.safe_load((res / "runs/openset/FlatFace-SAM-ArcFace/seed0/run.yaml").read_text())["rho"] == 0.1
    )

    # MLflow: exactly the expected runs (4 parents, 2+2+1+1 seeds, 1 tuning run), and re-tracking adds none
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    tracked = json.loads((res / "mlflow_runs.json").read_text())
    client = MlflowClient(tracking_uri=tracked["tracking_uri"])
    assert tracked["tracking_uri"] == f"sqlite:///{(res / 'mlflow.db').resolve()}"
    exp = client.get_experiment_by_name("tiny")

    def count() -> int:
        return len(
            client.search_runs([exp.experiment_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=500)
        )

    assert count() == 4 + 6 + 1
    again = snakemake(tmp_path, "--forcerun", "track")
    assert again.returncode == 0, again.stderr[-3000:]
    assert count() == 4 + 6 + 1

    # nothing left to do: outputs are complete and up to date
    dry = snakemake(tmp_path, "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr
