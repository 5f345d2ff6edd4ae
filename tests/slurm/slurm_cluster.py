"""Helpers for the live-SLURM tests (`make test-slurm`): the single-node cluster of scripts/slurm/cluster.sh
and a way to drive the real workflow through `profiles/slurm` with the real slurm executor.

These tests are marked `slurm` and deselected by `make test` (`-m "not slurm"`); collecting them needs no
cluster. Without slurmdbd there is no `sacct`, so the plugin must poll with `squeue` (its sacct path would
wait forever); everything else is the production profile.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPT = REPO / "scripts" / "slurm" / "cluster.sh"
SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: (\S+)\)")
RULE_OF_LOG = re.compile(r"slurm_logs/rule_([A-Za-z0-9_]+)/")
# An array submission (slurm-array-jobs in profiles/slurm): Snakemake job ids in task order, the array's id.
SUBMITTED_ARRAY = re.compile(
    r"Submitted array job with Snakemake IDs ([\d,]+) and SLURM job ID (\d+)\. "
    r"The individual task IDs are (\d+)-(\d+)"
)
# Snakemake's listing of each job it runs: "rule train:" ... "    jobid: 7"
JOB_BLOCK = re.compile(r"^(?:local)?rule (\w+):\n((?:    .*\n)+)", re.MULTILINE)


@dataclass
class SlurmRun:
    """One snakemake invocation through the slurm executor."""

    workdir: Path
    returncode: int
    output: str

    def submissions(self) -> list[tuple[str, str]]:
        """(rule, SLURM job id) for every job the executor submitted: single jobs first, then the tasks of
        array jobs as `<array id>_<task>` (SLURM's name for a task, also what the run records)."""
        found = []
        for job_id, log in SUBMITTED.findall(self.output):
            rule = RULE_OF_LOG.search(log)
            found.append((rule.group(1) if rule else "?", job_id))
        rules = self.rule_of_jobid()
        for ids, array, first, _last in SUBMITTED_ARRAY.findall(self.output):
            for i, jobid in enumerate(ids.split(",")):
                found.append((rules.get(jobid, "?"), f"{array}_{int(first) + i}"))
        return found

    def rule_of_jobid(self) -> dict[str, str]:
        """Snakemake job id -> rule, from Snakemake's own listing of the jobs it runs."""
        out = {}
        for rule, block in JOB_BLOCK.findall(self.output):
            jobid = re.search(r"^    jobid: (\d+)$", block, re.MULTILINE)
            if jobid:
                out[jobid.group(1)] = rule
        return out

    def job_ids(self, rule: str) -> list[str]:
        return [job for r, job in self.submissions() if r == rule]


def slurm_states(job_ids: list[str]) -> dict[str, str]:
    """Job id -> SLURM state (COMPLETED, TIMEOUT, ...) from slurmctld (MinJobAge keeps finished jobs)."""
    return {job: fields[0] for job, fields in slurm_fields(job_ids, "%T").items()}


def slurm_fields(job_ids: list[str], *formats: str) -> dict[str, list[str]]:
    """Job id (array tasks as `<array id>_<task>`) -> squeue fields (e.g. %l time limit, %m memory)."""
    if not job_ids:
        return {}
    fmt = "|".join(("%i", *formats))
    out = subprocess.run(
        ["squeue", "--states=all", "--array", "--noheader", f"--format={fmt}", "--jobs", ",".join(job_ids)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    return {line.split("|")[0]: line.split("|")[1:] for line in out.splitlines() if line.strip()}


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run_workflow(
    workdir: Path, configfile: Path, *extra: str, targets: tuple[str, ...] = (), timeout: float = 600
) -> SlurmRun:
    """Run the project's Snakefile in `workdir` with `--profile profiles/slurm` and the real executor.

    The only departures from the production profile are what a one-node cluster without slurmdbd needs:
    squeue for status, a short first status check, no account."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        *targets,  # first: options like --set-resources take several values
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--profile",
        str(REPO / "profiles" / "slurm"),
        "--workflow-profile",
        "none",
        "--configfile",
        str(configfile),
        "--executor",
        "slurm",
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "1",
        "--slurm-no-account",
        "--latency-wait",
        "10",
        "--jobs",
        "4",
        *extra,
    ]
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    (workdir / "snakemake.out").write_text(output)
    return SlurmRun(workdir=workdir, returncode=proc.returncode, output=output)


def for_test_cluster(cfg: dict, partition: str) -> dict:
    """The study's resources as written, except the partition (this cluster's) and no GPUs (it has none)."""
    kinds = ("prepare", "tune", "train", "evaluate", "track", "report")
    blocks = [cfg.setdefault("resources", {}).setdefault(kind, {}) for kind in kinds]
    for exp in cfg["experiments"].values():
        blocks.extend(exp.get("resources", {}).values())
    for block in blocks:
        block["slurm_partition"] = partition
        block.pop("gpu", None)
        block.pop("gpu_model", None)
    return cfg


def tail(text: str, n: int = 60) -> str:
    return "\n".join(text.splitlines()[-n:])
