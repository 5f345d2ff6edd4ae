"""The report's compute section (issue 11): estimated vs measured per experiment x phase x setup, and the CPU
profile's calibration on a reduced embedded study (real digits runs: measured within 3x of the estimate)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from samrepro.cli import main
from samrepro.report.compute import compute_markdown, compute_section, compute_table
from samrepro.study.config import validate_schema
from samrepro.study.plan import build_run_config, write_run_config
from samrepro.track.runs import read_run


def test_table_sums_per_group_and_divides() -> None:
    costs = pd.DataFrame(
        [
            {
                "experiment": "e",
                "phase": "final",
                "setup": "SAM",
                "estimated_s": 10.0,
                "measured_s": 20.0,
                "images_per_s": 100.0,
                "peak_rss_mb": 900.0,
                "cuda_max_allocated_mb": None,
                "profile": "CPU",
            },
            {
                "experiment": "e",
                "phase": "final",
                "setup": "SAM",
                "estimated_s": 30.0,
                "measured_s": 20.0,
                "images_per_s": 300.0,
                "peak_rss_mb": 950.0,
                "cuda_max_allocated_mb": None,
                "profile": "CPU",
            },
            {
                "experiment": "e",
                "phase": "tune",
                "setup": "SAM",
                "estimated_s": 5.0,
                "measured_s": 5.0,
                "images_per_s": 50.0,
                "peak_rss_mb": None,
                "cuda_max_allocated_mb": None,
                "profile": "CPU",
            },
        ]
    )
    table = compute_table(costs)
    final = table[table.phase == "final"].iloc[0]
    assert (final.runs, final.estimated_s, final.measured_s, final.ratio) == (2, 40.0, 40.0, 1.0)
    assert (final.images_per_s, final.peak_rss_mb) == (200.0, 950.0)
    assert table[table.phase == "tune"].iloc[0].ratio == 1.0
    assert "| e | final | SAM | 2 | 40 | 40 | 1 | 200 | 950 | - | CPU |" in compute_markdown(table)
    assert compute_markdown(compute_table(costs.iloc[0:0])) == "No run recorded its wall time.\n"


REDUCED = {
    "study": "calib",
    "experiments": {
        "digits": {
            "dataset": {"name": "digits", "root": "data", "val_fraction": 0.15},
            "model": {"name": "small_cnn", "kwargs": {"in_channels": 1}},
            "setups": ["SGD", "SAM"],
            "setup_overrides": {"SAM": {"rho": 0.05}, "SGD": {"epochs": 4}},
            "seeds": [0],
            "epochs": 2,
            "batch_size": 64,
            "workers": 0,
            "device": "cpu",
            "probe_batch_size": 128,
            "sharpness": {"enabled": False},
        },
        "open": {
            "dataset": {"name": "digits_openset", "root": "data", "val_fraction": 0.15},
            "embedding_dim": 32,
            "model": {"name": "small_cnn", "kwargs": {"in_channels": 1}},
            "head": {"kwargs": {"s": 16.0, "m": 0.3}},
            "setups": ["FlatFace-SAM-ArcFace"],
            "setup_overrides": {"FlatFace-SAM-ArcFace": {"rho": 0.05}},
            "seeds": [0],
            "epochs": 2,
            "batch_size": 64,
            "workers": 0,
            "device": "cpu",
            "probe_batch_size": 128,
            "sharpness": {"enabled": False},
        },
    },
}


@pytest.mark.slow
def test_cpu_profile_is_calibrated_on_a_reduced_embedded_study(tmp_path: Path) -> None:
    cfg = validate_schema(REDUCED)
    runs = []
    for name, exp in cfg["experiments"].items():
        spec = {"study": "calib", "experiment": name, **exp}
        for setup in exp["setups"]:
            out = tmp_path / "runs" / name / setup / "seed0"
            write_run_config(build_run_config(spec, setup, 0, "final"), out / "run.yaml")
            assert main(["train", "--config", str(out / "run.yaml"), "--out", str(out)]) == 0
            runs.append(read_run(out))
    section = compute_section(runs)
    assert len(section["rows"]) == 3
    for row in section["rows"]:
        assert row["profile"] == "CPU" and row["runs"] == 1
        assert 1 / 3 <= row["ratio"] <= 3, section["markdown"]  # measured within 3x of the estimate
    assert 1 / 3 <= section["ratio"] <= 3
    assert "| digits | final | SAM | 1 |" in section["markdown"]


def test_a_run_the_estimate_cannot_read_is_shown_without_estimate(tmp_path: Path) -> None:
    from workflow_synthetic import write_run

    run = read_run(
        write_run(tmp_path / "r", experiment="e", setup="SGD", seed=0)
    )  # run.yaml without probe size
    section = compute_section([run])
    [row] = section["rows"]
    assert pd.isna(row["estimated_s"]) and pd.isna(row["ratio"]) and row["measured_s"] == 1.5
    assert section["ratio"] is None and "| e | final | SGD | 1 | - | 1.5 | - |" in section["markdown"]


def test_the_report_has_the_compute_section(tmp_path: Path) -> None:
    import json

    from workflow_synthetic import classification_eval, write_run

    runs = [
        str(
            write_run(
                tmp_path / f"runs/cls/SGD/seed{s}",
                experiment="cls",
                setup="SGD",
                seed=s,
                evaluation=classification_eval(80.0 + s),
            )
            / "eval.json"
        )
        for s in (0, 1)
    ]
    out = tmp_path / "report"
    spec = {
        "study": "synth",
        "experiments": {"cls": {"setups": ["SGD"], "task": "classification", "paper": []}},
    }
    assert main(["report", "--spec", json.dumps(spec), "--runs", *runs, "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "## Compute: estimated vs measured" in md and "| cls | final | SGD | 2 | - | 3 | - |" in md
    assert "<h2>Compute: estimated vs measured</h2>" in (out / "index.html").read_text()
