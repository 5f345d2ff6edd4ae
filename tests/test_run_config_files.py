"""A run.yaml/run.json that cannot be read as a run config is one line naming the file (exit 2), whichever
command reads it (engine.config.load): malformed YAML or JSON, a python tag, binary bytes, a non-mapping."""

from pathlib import Path

import pytest

from samrepro.cli import main

CLAIMS = Path(__file__).resolve().parents[1] / "config" / "claims.yaml"
BAD = {
    "malformed.yaml": b"a: [1\n",
    "tagged.yaml": b"!!python/object/apply:os.system ['true']\n",
    "binary.yaml": b"\xff\xfe\x00bin",
    "list.yaml": b"[1, 2]\n",
    "malformed.json": b'{"a":',
}


@pytest.mark.parametrize("command", ["train", "reference"])
@pytest.mark.parametrize("name", sorted(BAD))
def test_unreadable_run_config_names_the_file(tmp_path, capsys, command, name) -> None:
    path = tmp_path / name
    path.write_bytes(BAD[name])
    assert main([command, "--config", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"samrepro {command}: error: {path}: ") and "\n" not in err


@pytest.mark.parametrize("content", [b"a: [1\n", b"\xff\xfe\x00bin"])
def test_unreadable_paper_results_before_any_job_names_the_file(tmp_path, content) -> None:
    """The workflow's claims check (common.smk turns a ValueError into one WorkflowError line)."""
    from samrepro.report.published import check_study_claims

    paper = tmp_path / "paper_results.yaml"
    paper.write_bytes(content)
    with pytest.raises(ValueError, match=f"^{paper}: "):
        check_study_claims({}, CLAIMS, paper)
