"""The tiny study through the real slurm executor on the live one-node cluster (issues 5 and 11).

Derived from the embedded default study (config/config.yaml): the same experiments, datasets, models and
resources, cut to three setups, one seed, one or two epochs. Every tune/train/evaluate job
must be an sbatch job that SLURM ran to COMPLETED; every training run must record the SLURM job id it ran
under (metrics.json and the MLflow tag); the report must be rendered from those runs.

Arrays (issue 11): profiles/slurm submits the jobs of a rule that are ready together as one SLURM array. The
study runs in two invocations, the first up to the datasets' manifests and the tuning's best.json, so that
the three final trainings are ready together: they must go as one array job whose id every run records, with the study's resources
(runtime, mem_mb, cpus_per_task, partition, slurm_extra) reaching sbatch.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from slurm_cluster import REPO, for_test_cluster, run_workflow, slurm_fields, slurm_states, tail, write_config

from samrepro.study import config as study

pytestmark = pytest.mark.slurm

STUDY = "slurm_tiny"
# experiment -> (setups kept, rho grid): a rho-free setup, a tuned one (two rho -> select_rho), a face setup
# with a fixed rho (no tuning): 8 sbatch jobs.
KEEP = {"digits": (["SGD", "SAM"], [0.05, 0.1]), "digits_openset": (["FlatFace-SAM-ArcFace"], None)}


def tiny_study(partition: str) -> dict:
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["study"] = STUDY
    cfg["experiments"] = {name: cfg["experiments"][name] for name in KEEP}
    for name, (setups, grid) in KEEP.items():
        exp = cfg["experiments"][name]
        exp["setups"] = setups
        exp["seeds"] = [0]
        exp["epochs"] = 2
        exp["tune"] = {"seeds": [0], "epochs": 1}
        exp["setup_overrides"] = {}
        if grid:
            exp["rho_grid"] = grid
        else:  # a fixed rho: the FlatFace setup trains without a tuning stage
            exp["setup_overrides"] = {s: {"rho": 0.05} for s in setups if s.startswith("FlatFace")}
        exp["sharpness"] = {"enabled": True, "samples": 64, "iterations": 3}
    cfg["resources"]["train"]["slurm_extra"] = "--nice=10"  # a flag only slurm_extra can carry to sbatch
    return for_test_cluster(cfg, partition)


def expected_jobs(cfg: dict) -> dict[str, int]:
    """sbatch jobs per rule: a tune job per rho of each tuned setup, a train and an evaluate job per run."""
    exps = cfg["experiments"].values()
    tune = sum(len(study.rho_grid(e, s)) * len(e["tune"]["seeds"]) for e in exps for s in e["setups"])
    runs = sum(len(e["setups"]) * len(e["seeds"]) for e in exps)
    return {"tune": tune, "train": runs, "evaluate": runs}


def test_tiny_study_runs_every_job_under_slurm(tmp_path: Path, slurm_partition: str) -> None:
    cfg = tiny_study(slurm_partition)
    configfile = write_config(tmp_path / "tiny.yaml", cfg)
    work = tmp_path / "work"
    ready = [f"results/{STUDY}/tune/digits/{s}/best.json" for s in KEEP["digits"][0] if s != "SGD"]
    ready += [f"results/{STUDY}/data/{name}.json" for name in ("digits", "digits_openset")]
    first = run_workflow(work, configfile, targets=tuple(ready), timeout=300)
    assert first.returncode == 0, tail(first.output)
    run = run_workflow(work, configfile, timeout=420)
    assert run.returncode == 0, tail(run.output)

    # Every compute job went through sbatch, and SLURM ran each to completion.
    subs = first.submissions() + run.submissions()
    by_rule: dict[str, list[str]] = {}
    for rule, job in subs:
        by_rule.setdefault(rule, []).append(job)
    counts = {rule: len(by_rule.get(rule, [])) for rule in ("tune", "train", "evaluate")}
    assert counts == expected_jobs(cfg), tail(run.output)  # other rules (e.g. reference) may add jobs
    states = slurm_states([job for _, job in subs])
    assert states == {job: "COMPLETED" for _, job in subs}

    # Each training run (tuning and final) recorded the SLURM job it ran under, one distinct job per run.
    res = work / "results" / STUDY
    metrics = {p: json.loads(p.read_text()) for p in sorted(res.glob("*/*/*/*/metrics.json"))}
    assert len(metrics) == len(by_rule["tune"]) + len(by_rule["train"])
    recorded = {str(m["slurm_job_id"]) for m in metrics.values()}
    assert recorded == set(by_rule["tune"]) | set(by_rule["train"])
    for path, m in metrics.items():
        assert m["host"], path
        rule = "tune" if "/tune/" in str(path) else "train"
        assert str(m["slurm_job_id"]) in by_rule[rule], path

    # MLflow (written once by the local `track` job) carries the same job ids as provenance tags.
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{res / 'mlflow.db'}")
    experiments = client.search_experiments()
    tagged = {
        r.data.tags["slurm_job_id"]
        for e in experiments
        for r in client.search_runs([e.experiment_id], max_results=1000)
        if r.data.tags.get("slurm_job_id")
    }
    finals = {str(m["slurm_job_id"]) for p, m in metrics.items() if "/runs/" in str(p)}
    assert finals <= tagged <= recorded, (finals, tagged, recorded)

    # The final trainings went as one array job (tasks <id>_1..3), which every run recorded, and the study's
    # resources reached sbatch (squeue: time limit, memory, CPUs, partition, nice from slurm_extra).
    arrays = {job.split("_")[0] for job in by_rule["train"]}
    assert len(arrays) == 1 and all("_" in job for job in by_rule["train"]), by_rule
    [array] = arrays
    for path, m in metrics.items():
        if "/runs/" in str(path):
            assert str(m["slurm_job_id"]).startswith(f"{array}_"), (path, m["slurm_job_id"])
    assert {t for t in tagged if t.startswith(f"{array}_")} == set(by_rule["train"])
    res_train = cfg["resources"]["train"]
    fields = slurm_fields(by_rule["train"], "%l", "%m", "%c", "%P", "%y")
    for job, (limit, mem, cpus, part, nice) in fields.items():
        assert limit == f"{res_train['runtime']}:00" and part == slurm_partition, (job, limit, part)
        assert int(cpus) == res_train["cpus_per_task"] and nice == "10", (job, cpus, nice)
        assert int(mem.rstrip("M")) >= res_train["mem_mb"], (job, mem)  # the plugin adds a few MB to arrays

    # The report was rendered, with a row for every setup, from these runs.
    rep = work / "reports" / STUDY
    for name in ("index.html", "report.md", "summary.csv"):
        assert (rep / name).stat().st_size > 0, name
    with (rep / "summary.csv").open() as fh:
        text = fh.read()
    rows = list(csv.reader(text.splitlines()))
    assert len(rows) > 1
    for setups, _ in KEEP.values():
        for setup in setups:
            assert setup in text, setup
