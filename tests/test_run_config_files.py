"""A run.yaml/run.json that cannot be read as a run config is one line naming the file (exit 2), whichever
command reads it (engine.config.load): malformed YAML or JSON, a python tag, binary bytes, a non-mapping."""

import pytest

from samrepro.cli import main

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
