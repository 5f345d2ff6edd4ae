"""Issue 8, items 2 and 7: study and experiment names stay inside results/ and reports/; a config file that
declares no experiments is an error naming the key (only no config file at all means the default study)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from samrepro.study.config import validate_schema

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = {"dataset": {"name": "digits"}, "model": {"name": "small_cnn"}, "setups": ["SGD"], "epochs": 1}
ESCAPING = [".", "..", "...", ".hidden", "../up", "a/b", "/abs", "-rf", "", "x" * 101, "a\nb"]


def snakemake(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """A dry run; stdout and stderr together (Snakemake's messages go to either, depending on its logger)."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(ROOT / "Snakefile"),
            "-n",
            "--directory",
            str(tmp_path),
            *args,
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@pytest.mark.parametrize("name", ESCAPING)
def test_a_study_name_that_is_not_one_plain_folder_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="at key 'study'.*never '.', '..'"):
        validate_schema({"study": name, "experiments": {"e": EXPERIMENT}})


@pytest.mark.parametrize("name", ESCAPING)
def test_an_experiment_name_that_is_not_one_plain_folder_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="at key 'experiments'"):
        validate_schema({"study": "s", "experiments": {name: EXPERIMENT}})


@pytest.mark.parametrize("name", ["s", "my_study", "cifar100_wrn28_10", "v1.2-rc", "_x", "x" * 100])
def test_plain_names_are_accepted(name: str) -> None:
    cfg = validate_schema({"study": name, "experiments": {name: EXPERIMENT}})
    assert cfg["study"] == name and list(cfg["experiments"]) == [name]


def test_the_workflow_refuses_a_study_named_dotdot_and_writes_nothing(tmp_path) -> None:
    work = tmp_path / "repo"
    work.mkdir()
    cfg = tmp_path / "study.yaml"
    cfg.write_text(yaml.safe_dump({"study": "..", "experiments": {"e": EXPERIMENT}}))
    proc = snakemake(work, "--configfile", str(cfg))
    assert proc.returncode != 0
    assert "invalid study config at key 'study'" in proc.stdout
    assert sorted(p.name for p in work.iterdir()) in ([], [".snakemake"])


def test_a_config_file_without_experiments_is_an_error_naming_the_key(tmp_path) -> None:
    cfg = tmp_path / "mine.yaml"
    cfg.write_text("study: mine\ndescription: the experiments were forgotten\n")
    proc = snakemake(tmp_path, "--configfile", str(cfg))
    assert proc.returncode != 0, proc.stdout  # today: the 113-job default study under the name 'mine'
    assert f"invalid study config at key 'experiments': {cfg} declares no experiments" in proc.stdout


def test_no_config_file_at_all_still_means_the_default_study(tmp_path) -> None:
    default = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    proc = snakemake(tmp_path, "--config", "study=renamed_default")
    assert proc.returncode == 0, proc.stdout
    words = " ".join(proc.stdout.split())
    n_final = sum(len(e["setups"]) * len(e["seeds"]) for e in default["experiments"].values())
    assert f" train {n_final} " in words
