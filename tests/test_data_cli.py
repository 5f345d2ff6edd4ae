"""`samrepro prepare`: manifest written atomically, missing data exits 2 with an actionable message."""

from __future__ import annotations

import hashlib
import json

from formats import (
    face_images,
    write_bin,
    write_cifar_batches,
    write_recordio,
)

from samrepro.cli import main


def test_prepare_cifar_manifest(tmp_path) -> None:
    write_cifar_batches(tmp_path / "data", n=30, num_classes=10)
    out = tmp_path / "out" / "manifest.json"
    assert main(["prepare", "--dataset", "cifar10", "--root", str(tmp_path / "data"), "--out", str(out)]) == 0
    m = json.loads(out.read_text())
    assert m["dataset"] == "cifar10" and m["task"] == "classification"
    assert m["counts"] == {"train": 30, "test": 10, "classes": 10}
    entry = {e["path"]: e for e in m["files"]}["cifar-10-batches-py/test_batch"]
    raw = (tmp_path / "data" / "cifar-10-batches-py" / "test_batch").read_bytes()
    assert entry["size"] == len(raw) and entry["sha256"] == hashlib.sha256(raw).hexdigest()
    assert [p.name for p in out.parent.iterdir()] == ["manifest.json"]  # no temp file left behind
    first = out.read_text()
    assert main(["prepare", "--dataset", "cifar10", "--root", str(tmp_path / "data"), "--out", str(out)]) == 0
    assert out.read_text() == first  # deterministic: no timestamps


def test_prepare_missing_data_exits_2_and_keeps_old_manifest(tmp_path, capsys) -> None:
    out = tmp_path / "m.json"
    out.write_text("old")
    rc = main(
        ["prepare", "--dataset", "fashion_mnist", "--root", str(tmp_path / "nowhere"), "--out", str(out)]
    )
    assert rc == 2 and out.read_text() == "old"
    err = capsys.readouterr().err
    assert (
        "fashion_mnist" in err
        and str(tmp_path / "nowhere" / "FashionMNIST" / "raw") in err
        and "--download" in err
    )


def test_prepare_face_rec_and_digits(tmp_path) -> None:
    imgs = face_images(3, 2, size=112)
    write_recordio(tmp_path, imgs)
    write_bin(tmp_path / "lfw.bin", [(imgs[0][0], imgs[0][1])], [True])
    out = tmp_path / "face.json"
    assert main(["prepare", "--dataset", "face_rec", "--root", str(tmp_path), "--out", str(out)]) == 0
    m = json.loads(out.read_text())
    assert m["counts"] == {"images": 6, "identities": 3, "lfw_pairs": 1}
    out2 = tmp_path / "digits.json"
    assert main(["prepare", "--dataset", "digits", "--out", str(out2)]) == 0
    assert json.loads(out2.read_text())["counts"] == {"images": 1797, "classes": 10}


def test_prepare_unknown_dataset(tmp_path, capsys) -> None:
    assert main(["prepare", "--dataset", "nope", "--out", str(tmp_path / "x.json")]) == 2
    assert "known datasets" in capsys.readouterr().err
