"""The Snakemake workflow: the paper DAG builds without data and fast, lint is clean, a bad config is refused
with the schema's message (DESIGN 'Snakemake, SLURM and MLflow conventions')."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from samrepro.study.config import is_tuned, load_study, rho_grid

ROOT = Path(__file__).resolve().parents[1]


def snakemake(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_paper_dag_dry_run_without_data_is_fast(tmp_path):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = snakemake(
        "-n",
        "--quiet",
        "all",
        "--configfile",
        str(ROOT / "config" / "paper.yaml"),
        "--directory",
        str(tmp_path),
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # CPU seconds, not wall time: the bound holds on a loaded CI machine too
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert cpu < 10.0, f"paper DAG took {cpu:.1f} CPU s"
    words = " ".join((proc.stdout + proc.stderr).split())
    config = load_study([ROOT / "config" / "paper.yaml"])
    exps = config["experiments"].values()
    n_final = sum(len(e["setups"]) * len(e["seeds"]) for e in exps)
    n_tune = sum(len(rho_grid(e, s)) * len(e["tune"]["seeds"]) for e in exps for s in e["setups"])
    n_select = sum(is_tuned(e, s) for e in exps for s in e["setups"])
    n_data = len({e["dataset"]["name"] for e in exps})
    for rule, n in (
        ("train", n_final),
        ("evaluate", n_final),
        ("tune", n_tune),
        ("select_rho", n_select),
        ("prepare", n_data),
        ("track", 1),
        ("report", 1),
    ):
        assert f" {rule} {n} " in words, (rule, n)
    assert not (tmp_path / "results").exists()  # a dry run touches nothing


def test_paper_config_declares_every_paper_setup():
    config = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    setups = {s for e in config["experiments"].values() for s in e["setups"]}
    assert {
        "SGD",
        "SAM",
        "AACE",
        "SCE-SAM",
        "SAACE",
        "ArcFace",
        "AdaFace",
        "FlatFace-SAM-ArcFace",
        "FlatFace-SAM-AdaFace",
        "FlatFace-AACE-ArcFace",
        "FlatFace-AACE-AdaFace",
    } <= setups
    datasets = {e["dataset"]["name"] for e in config["experiments"].values()}
    assert {"cifar10", "cifar100", "fashion_mnist", "food101", "casia_webface", "ms1mv2"} <= datasets
    wrn = config["experiments"]["cifar100_wrn28_10"]
    assert wrn["setup_overrides"]["SGD"]["epochs"] == 2 * wrn["epochs"]  # equal compute (DESIGN recipes)
    assert wrn["rho_grid"] == [0.01, 0.02, 0.05, 0.1, 0.2, 0.5]
    assert wrn["resources"]["train"]["gpu"] >= 1


def test_lint_is_clean():
    proc = snakemake("--lint")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("patch", "key", "expected"),
    [
        ({"epochs": 0}, "experiments.digits.epochs", "0 is less than the minimum of 1"),
        ({"setups": ["SGD", "SAMM"]}, "experiments.digits.setups.1", "'SAMM' is not one of"),
        (
            {"rho_grid": [0.05, -0.1]},
            "experiments.digits.rho_grid.1",
            "-0.1 is less than or equal to the minimum of 0",
        ),
        (
            {"epochz": 3},
            "experiments.digits",
            "Additional properties are not allowed ('epochz' was unexpected)",
        ),
        (
            {"paper": [{"path": "aace.cifar100_wrn28_1", "metric": "test_top1"}]},
            "experiments.digits.paper.0.path",
            "'aace.cifar100_wrn28_1': 'cifar100_wrn28_1' is not in",
        ),
    ],
)
def test_bad_config_fails_with_schema_message(tmp_path, patch, key, expected):
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["experiments"]["digits"].update(patch)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    proc = snakemake("-n", "--configfile", str(bad), "--directory", str(tmp_path))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    # one line naming the key and the schema's message, before any job runs
    assert f"invalid study config at key '{key}': {expected}" in out, out[-3000:]


def test_semantic_check_names_key_and_fix(tmp_path):
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["experiments"]["digits"]["setups"] = ["SGD", "ArcFace"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    proc = snakemake("-n", "--configfile", str(bad), "--directory", str(tmp_path))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "experiments.digits.setups: setup 'ArcFace' is a face setup" in out


def test_default_study_dag(tmp_path):
    """Without --configfile the embedded study runs: every setup tuned over >= 3 rho, five seeds, the raw-pixel
    reference of the face experiment."""
    proc = snakemake("-n", "--quiet", "all", "--directory", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    words = " ".join((proc.stdout + proc.stderr).split())
    # digits: SAM, SCE-SAM x 4 rho + AACE, SAACE x 5 rho; openset: 4 FlatFace setups x 5 rho = 38 tuning
    # runs; (5 + 6) setups x 5 seeds = 55 runs; one pixel reference (the face experiment)
    assert "tune 38" in words and "train 55" in words and "evaluate 55" in words and "select_rho 8" in words
    assert "reference 1" in words
    exps = load_study([ROOT / "config" / "config.yaml"])["experiments"].values()
    assert all(len(rho_grid(e, s)) >= 3 for e in exps for s in e["setups"] if is_tuned(e, s))


def test_resources_and_launcher_flow_from_config_to_jobs(tmp_path):
    """A paper face run asks SLURM for what the config says, and runs torchrun with one process per GPU."""
    target = "results/paper/runs/casia_webface_iresnet50/ArcFace/seed0/metrics.json"
    proc = snakemake(
        "-n",
        "--printshellcmds",
        "--configfile",
        str(ROOT / "config" / "paper.yaml"),
        "--directory",
        str(tmp_path),
        target,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    job = out[out.index("rule train:") :]
    resources = job[job.index("resources:") :].splitlines()[0]
    for item in ("runtime=2880", "gpu=4", "mem_mb=128000"):
        assert item in resources, resources
    assert "cpus_per_task=32" in resources  # sbatch --cpus-per-task; local threads are capped to the cores
    assert "torchrun --standalone --nproc_per_node=4 -m samrepro train" in job
    assert "--phase final" in job and "--best" not in job.split("rule ")[1]  # ArcFace: no rho, no best.json
