"""`samrepro estimate` (issue 11): FLOP counts against hand-computed values, the per-run formula, declared
dataset sizes, device profiles from the config, the runtime-overflow flag and the CLI table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from samrepro.cli import main
from samrepro.study import estimate as est
from samrepro.study.config import load_study, mixed_resources, rho_grid, validate_schema
from samrepro.study.plan import build_run_config

REPO = Path(__file__).resolve().parents[1]


def digits_study(**experiment) -> dict:
    exp = {
        "dataset": {"name": "digits", "root": "data", "val_fraction": 0.15},
        "model": {"name": "small_cnn", "kwargs": {"in_channels": 1}},
        "setups": ["SGD", "SAM"],
        "rho_grid": [0.05, 0.1],
        "seeds": [0, 1],
        "epochs": 3,
        "batch_size": 64,
        "device": "cpu",
        "probe_batch_size": 128,
        "sharpness": {"enabled": True, "samples": 128, "iterations": 5},
    }
    exp.update(experiment)
    return validate_schema({"study": "est", "experiments": {"digits": exp}})


def test_linear_layer_flops_are_two_per_multiply_add() -> None:
    assert est.count_forward_flops(nn.Linear(16, 4), torch.zeros(1, 16)) == 2 * 16 * 4


def test_tiny_conv_net_flops_by_hand() -> None:
    # conv 1->2 channels, 3x3, padding 1 on 5x5: 2*5*5 outputs of 9 multiply-adds; then 50 -> 3 linear
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(50, 3))
    assert est.count_forward_flops(net, torch.zeros(1, 1, 5, 5)) == 2 * (2 * 25 * 9) + 2 * 50 * 3


def small_cnn_by_hand(classes: int) -> int:
    """SmallCNN (width 32) on 1x8x8: conv 1->32 at 8x8, 32->64 stride 2 (4x4), 64->128 stride 2 (2x2), fc 512."""
    macs = 32 * 64 * 9 * 1 + 64 * 16 * 9 * 32 + 128 * 4 * 9 * 64 + 512 * classes
    return 2 * macs


def test_backbone_and_margin_head_flops_by_hand() -> None:
    cfg = validate_schema(
        {
            "study": "est",
            "experiments": {
                "digits": digits_study()["experiments"]["digits"],
                "open": {
                    "dataset": {"name": "digits_openset", "root": "data"},
                    "embedding_dim": 32,
                    "model": {"name": "small_cnn", "kwargs": {"in_channels": 1}},
                    "setups": ["ArcFace"],
                },
            },
        }
    )
    cls = build_run_config(
        {"study": "est", "experiment": "digits", **cfg["experiments"]["digits"]}, "SGD", 0, "final"
    )
    sizes = est.dataset_sizes(cls["dataset"], "final")
    assert est.model_flops(cls, sizes).total == small_cnn_by_hand(10) == 1_226_752
    face = build_run_config(
        {"study": "est", "experiment": "open", **cfg["experiments"]["open"]}, "ArcFace", 0, "final"
    )
    f = est.model_flops(face, est.dataset_sizes(face["dataset"], "final"))
    assert f.backbone == small_cnn_by_hand(32)
    assert f.total == f.backbone + 2 * 32 * 7  # ArcFace: normalized embedding x normalized 7-class matrix


def test_train_run_flops_follow_the_formula() -> None:
    cfg = digits_study()
    spec = {"study": "est", "experiment": "digits", **cfg["experiments"]["digits"]}
    sgd = build_run_config(spec, "SGD", 0, "tune")
    sam = build_run_config(spec, "SAM", 0, "tune", rho=0.05)
    sizes = est.dataset_sizes(sgd["dataset"], "tune")
    assert (
        sizes.source == "measured" and sizes.train + sizes.eval_forwards == 1347
    )  # digits: 75 % train split
    f = small_cnn_by_hand(10)
    per_epoch = lambda passes: 3 * passes * f * sizes.train + f * sizes.eval_forwards + 5 * f * 128  # noqa: E731
    assert est.train_run_flops(sgd) == 3 * per_epoch(1)
    assert est.train_run_flops(sam) == 3 * per_epoch(2)
    final = est.dataset_sizes(sgd["dataset"], "final")
    assert est.evaluate_flops(build_run_config(spec, "SGD", 0, "final")) == (
        f * (final.eval_forwards + final.train_eval) + 6 * f * 128 * 5
    )


def test_declared_sizes_stand_in_for_absent_data(tmp_path: Path) -> None:
    ds = {"name": "cifar100", "root": str(tmp_path / "absent"), "val_fraction": 0.1}
    tune, final = est.dataset_sizes(ds, "tune"), est.dataset_sizes(ds, "final")
    assert (tune.source, tune.train, tune.eval_forwards) == ("declared", 45_000, 5_000)
    assert (final.train, final.eval_forwards, final.num_classes) == (50_000, 10_000, 100)
    face = est.dataset_sizes({"name": "ms1mv2", "root": str(tmp_path), "val_fraction": 0.02}, "final")
    assert face.eval_forwards == 4 * (6000 + 7000 + 6000 + 6000 + 6000)  # five benchmarks, flip test
    with pytest.raises(ValueError, match="face_folder.*no declared size"):
        est.dataset_sizes({"name": "face_folder", "root": str(tmp_path)}, "final")


def test_study_jobs_mirror_the_dag_and_profiles_come_from_the_config() -> None:
    cfg = digits_study(resources={"tune": {"cpus_per_task": 2}})
    cfg["estimate"] = {
        "profiles": {"CPU": {"utilisation": 0.5}, "slow": {"peak_tflops": 1e-6, "utilisation": 1}}
    }
    costs = est.estimate_study(cfg)
    phases = [c.phase for c in costs]
    assert (phases.count("tune"), phases.count("final"), phases.count("evaluate")) == (2, 4, 4)
    tune = next(c for c in costs if c.phase == "tune")
    assert tune.units == 2 and tune.profile == "CPU"
    assert tune.device_hours == pytest.approx(tune.flops / (0.096e12 * 0.5) / 3600)
    assert tune.wall_h == pytest.approx(tune.device_hours / 2)
    cfg["estimate"]["cpu_profile"] = "missing"
    with pytest.raises(ValueError, match="device profile 'missing' is unknown"):
        est.estimate_study(cfg)


def test_runtime_overflow_is_flagged() -> None:
    cfg = digits_study(resources={"train": {"runtime": 1}})
    cfg["estimate"] = {"cpu_profile": "slow", "profiles": {"slow": {"peak_tflops": 1e-6, "utilisation": 1.0}}}
    costs = est.estimate_study(cfg)
    finals = [c for c in costs if c.phase == "final"]
    assert all(c.over for c in finals) and all(c.wall_h > 1 / 60 for c in finals)
    rows, totals = est.summarize(costs)
    assert totals["final"].over == len(finals) and totals["all"].jobs == len(costs)
    assert "2 !" in est.format_table(rows, totals)
    cfg["experiments"]["digits"]["resources"]["train"]["runtime"] = 10**6
    assert not any(c.over for c in est.estimate_study(cfg) if c.phase == "final")


def test_cli_prints_the_table_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "costs.json"
    assert main(["estimate", "--config", str(REPO / "config" / "config.yaml"), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    cfg = load_study([REPO / "config" / "config.yaml"])
    exps = cfg["experiments"].values()  # the DAG: a tune job per rho x tune seed, a train + evaluate per seed
    tune = sum(len(rho_grid(e, s)) * len(e["tune"]["seeds"]) for e in exps for s in e["setups"])
    jobs = tune + 2 * sum(len(e["setups"]) * len(e["seeds"]) for e in exps)
    assert f"study 'digits_demo': {jobs} tune/train/evaluate jobs" in text
    assert "total           all" in text
    costs = json.loads(out.read_text())
    assert len(costs) == jobs and {c["phase"] for c in costs} == {"tune", "final", "evaluate"}
    assert "note: rule" not in text  # the default study's experiments share their resources
    assert mixed_resources(cfg) == {}
    cfg["experiments"]["digits"]["resources"] = {"train": {"mem_mb": 4000}}
    assert mixed_resources(cfg) == {"train": ["digits", "digits_openset"]}


def test_cli_bad_profile_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "study: x\nestimate: {profiles: {TPU: {peak_tflops: 1}}}\nexperiments:\n"
        "  d: {dataset: {name: digits}, model: {name: small_cnn, kwargs: {in_channels: 1}}, setups: [SGD]}\n"
    )
    assert main(["estimate", "--config", str(bad)]) == 2
    assert "estimate.profiles.TPU: a new profile needs peak_tflops and utilisation" in capsys.readouterr().err
    bad.write_text(
        "study: x\nexperiments:\n  d: {dataset: {name: digits}, model: {name: small_cnn}, setups: [SGD]}\n"
    )
    assert main(["estimate", "--config", str(bad)]) == 2
    assert "does not take the dataset's (1, 8, 8) images" in capsys.readouterr().err
