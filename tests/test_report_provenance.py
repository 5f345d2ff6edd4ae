"""The report's header names each dataset by the content of its files, not by where they lie."""

import json
from pathlib import Path

import pytest

from samrepro.report.render import provenance


def manifest(path: Path, root: str, sha: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"dataset": "digits", "counts": {"images": 1797}, "data_sha256": sha, "files": [], "root": root}
    path.write_text(json.dumps(body))
    return str(path)


def test_same_data_in_two_places_has_one_digest_and_other_data_another(tmp_path: Path) -> None:
    a = manifest(tmp_path / "a" / "digits.json", "/clone1/data", "65e5")
    b = manifest(tmp_path / "b" / "digits.json", "/clone2/data", "65e5")
    c = manifest(tmp_path / "c" / "digits.json", "/clone1/data", "ffff")
    got = provenance({}, [a, b, c])["manifests"]
    assert got[0]["sha256"] == got[1]["sha256"] != got[2]["sha256"]
    assert [m["root"] for m in got] == ["/clone1/data", "/clone2/data", "/clone1/data"]


def test_a_manifest_that_is_not_an_object_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "digits.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match="digits.json: a prepare manifest is a JSON object"):
        provenance({}, [str(bad)])
