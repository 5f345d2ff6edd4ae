"""samrepro.study: config validation with defaults, plan (run.yaml), select-rho (best.json)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from samrepro.cli import main
from samrepro.study.config import (
    experiment_spec,
    fmt_rho,
    job_resources,
    load_study,
    validate_schema,
)
from samrepro.study.plan import build_run_config
from samrepro.study.select import select_rho

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "config" / "config.yaml"


def minimal() -> dict:
    return {
        "study": "s",
        "experiments": {
            "e": {
                "dataset": {"name": "digits"},
                "model": {"name": "small_cnn"},
                "setups": ["SGD", "SAM", "AACE"],
            }
        },
    }


def test_schema_fills_defaults_without_sharing_objects():
    cfg = validate_schema(
        {**minimal(), "experiments": {**minimal()["experiments"], "f": minimal()["experiments"]["e"]}}
    )
    e = cfg["experiments"]["e"]
    assert e["seeds"] == [0, 1, 2] and e["tune"] == {"seeds": [0], "epochs": None}
    assert e["rho_grid"] == [0.01, 0.02, 0.05, 0.1, 0.2, 0.5]
    assert e["schedule"] == {
        "name": "multistep",
        "milestones": [0.3, 0.6, 0.8],
        "gamma": 0.2,
        "warmup_epochs": 0,
    }
    assert e["optim"]["lr"] == 0.1 and e["dataset"]["val_fraction"] == 0.1
    assert cfg["tracking"] == {"enabled": True, "uri": None}
    assert cfg["resources"]["train"]["gpu"] == 0
    e["optim"]["lr"] = 1.0
    assert cfg["experiments"]["f"]["optim"]["lr"] == 0.1


def test_schema_error_names_the_key():
    bad = minimal()
    bad["experiments"]["e"]["seeds"] = [0, 0]
    with pytest.raises(ValueError, match=r"key 'experiments.e.seeds'.*non-unique"):
        validate_schema(bad)
    bad = minimal()
    bad["experiments"]["e"]["resources"] = {"train": {"gpus": 2}}
    with pytest.raises(ValueError, match=r"experiments.e.resources.train.*'gpus' was unexpected"):
        validate_schema(bad)


def test_plan_tune_and_final(tmp_path, capsys):
    cfg = load_study([DEFAULT])
    spec = experiment_spec(cfg, "digits")
    run = build_run_config(spec, "AACE", 0, "tune", rho=0.2)
    assert run["phase"] == "tune" and run["rho"] == 0.2
    assert run["schedule"]["epochs"] == spec["tune"]["epochs"] < spec["epochs"]
    assert run["dataset"]["val_fraction"] == 0.15 and run["model"] == {
        "name": "small_cnn",
        "kwargs": {"in_channels": 1},
    }
    sgd = build_run_config(spec, "SGD", 2, "final")
    assert sgd["rho"] is None and sgd["schedule"]["epochs"] == 2 * spec["epochs"]
    with pytest.raises(ValueError, match="needs --best"):
        build_run_config(spec, "SAM", 0, "final")
    with pytest.raises(ValueError, match="not a tune.seeds entry"):
        build_run_config(spec, "SAM", 2, "tune", rho=0.05)
    with pytest.raises(ValueError, match="no perturbation"):
        build_run_config(spec, "SGD", 0, "tune", rho=0.05)
    best = tmp_path / "best.json"
    best.write_text(json.dumps({"experiment": "digits", "setup": "SAM", "rho": 0.1}))
    out = tmp_path / "r" / "run.yaml"
    assert (
        main(
            [
                "plan",
                "--spec",
                json.dumps(spec),
                "--setup",
                "SAM",
                "--seed",
                "1",
                "--phase",
                "final",
                "--best",
                str(best),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    written = yaml.safe_load(out.read_text())
    assert written["rho"] == 0.1 and written["seed"] == 1 and written["study"] == "digits_demo"
    with pytest.raises(ValueError, match="not digits/AACE"):
        build_run_config(spec, "AACE", 0, "final", best=str(best))
    # --config path: validated study file + experiment name, same result
    out2 = tmp_path / "r2.yaml"
    assert (
        main(
            [
                "plan",
                "--config",
                str(DEFAULT),
                "--experiment",
                "digits",
                "--setup",
                "SAM",
                "--seed",
                "1",
                "--phase",
                "final",
                "--best",
                str(best),
                "--out",
                str(out2),
            ]
        )
        == 0
    )
    assert yaml.safe_load(out2.read_text()) == written
    # a bad experiment name or a missing --best: one line naming it, exit 2, no traceback
    assert (
        main(
            [
                "plan",
                "--config",
                str(DEFAULT),
                "--experiment",
                "digitz",
                "--setup",
                "SAM",
                "--seed",
                "0",
                "--phase",
                "final",
                "--out",
                str(out2),
            ]
        )
        == 2
    )
    assert "experiment 'digitz' is not in the study" in capsys.readouterr().err
    assert (
        main(
            [
                "plan",
                "--config",
                str(DEFAULT),
                "--experiment",
                "digits",
                "--setup",
                "SAM",
                "--seed",
                "0",
                "--phase",
                "final",
                "--out",
                str(out2),
            ]
        )
        == 2
    )
    assert "needs --best" in capsys.readouterr().err


def test_fixed_rho_setup_is_not_tuned():
    cfg = minimal()
    cfg["experiments"]["e"]["setup_overrides"] = {"SAM": {"rho": 0.07, "epochs": 3}}
    spec = experiment_spec(load_study_dict(cfg), "e")
    run = build_run_config(spec, "SAM", 0, "final")
    assert run["rho"] == 0.07 and run["schedule"]["epochs"] == 3


def load_study_dict(cfg: dict) -> dict:
    from samrepro.study.config import check_study

    cfg = validate_schema(cfg)
    check_study(cfg)
    return cfg


def test_plan_does_not_import_torch(tmp_path):
    code = (
        "import sys, json; from samrepro.cli import main; "
        f"main(['plan','--config',{str(DEFAULT)!r},'--experiment','digits','--setup','SGD','--seed','0',"
        f"'--phase','final','--out',{str(tmp_path / 'run.yaml')!r}]); "
        "assert 'torch' not in sys.modules, 'plan imported torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_select_rho_best_mean_and_ties_to_smaller():
    rows = [
        {"experiment": "e", "setup": "SAM", "rho": r, "seed": s, "score": v, "path": ""}
        for r, s, v in [
            (0.05, 0, 90.0),
            (0.05, 1, 92.0),
            (0.1, 0, 93.0),
            (0.1, 1, 89.0),
            (0.02, 0, 80.0),
            (0.02, 1, 81.0),
        ]
    ]
    best = select_rho(rows)
    assert best["rho"] == 0.05 and best["score"] == 91.0  # tie 91 vs 91 -> smaller rho
    rows.append({"experiment": "e", "setup": "SAM", "rho": 0.2, "seed": 0, "score": 95.0, "path": ""})
    assert select_rho(rows)["rho"] == 0.2


def test_select_rho_cli_reads_selection_score(tmp_path, capsys):
    paths = []
    for rho, score in ((0.02, 50.0), (0.05, 70.0), (0.1, 60.0)):
        p = tmp_path / f"rho{fmt_rho(rho)}_seed0" / "metrics.json"
        p.parent.mkdir()
        p.write_text(
            json.dumps(
                {
                    "experiment": "e",
                    "setup": "SAM",
                    "rho": rho,
                    "seed": 0,
                    "eval_acc": 99.0,
                    "selection_score": score,
                }
            )
        )
        paths.append(str(p))
    out = tmp_path / "best.json"
    assert main(["select-rho", "--metrics", *paths, "--out", str(out)]) == 0
    best = json.loads(out.read_text())
    assert best["rho"] == 0.05 and [g["rho"] for g in best["grid"]] == [0.02, 0.05, 0.1]
    (tmp_path / "rho0.1_seed0" / "metrics.json").write_text(
        json.dumps(
            {"experiment": "e", "setup": "SAM", "rho": 0.1, "seed": 0, "selection_score": float("nan")}
        )
    )
    capsys.readouterr()
    assert main(["select-rho", "--metrics", *paths, "--out", str(out)]) == 2  # one line, exit 2 (issue 8)
    assert "diverged" in capsys.readouterr().err


def test_resources_flow_from_config():
    cfg = load_study([ROOT / "config" / "paper.yaml"])
    res = job_resources(cfg, "train", "casia_webface_iresnet50")
    assert res["gpu"] == 4 and res["runtime"] == 2880 and res["slurm_partition"] == ""
    assert job_resources(cfg, "prepare")["runtime"] == 120


def test_changed_config_drops_stale_checkpoint_same_config_keeps_it(tmp_path):
    from samrepro.study.plan import write_run_config

    spec = experiment_spec(load_study([DEFAULT]), "digits")
    run = build_run_config(spec, "SGD", 0, "final")
    out = tmp_path / "run.yaml"
    write_run_config(run, out)
    (tmp_path / "checkpoint.pt").write_bytes(b"x")
    write_run_config(run, out)  # same config: an interrupted run resumes
    assert (tmp_path / "checkpoint.pt").exists()
    write_run_config({**run, "optim": {**run["optim"], "lr": 0.01}}, out)  # changed: start afresh
    assert not (tmp_path / "checkpoint.pt").exists()
