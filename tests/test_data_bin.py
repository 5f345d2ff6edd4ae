"""insightface verification .bin files and the face image-folder layout, read back through build()."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from formats import (
    encode_image,
    face_images,
    write_bin,
    write_image_folder,
)

import samrepro.data as data
from samrepro.data.formats import verification_bin as vb


def face_norm(img: np.ndarray) -> torch.Tensor:
    return (torch.from_numpy(img).permute(2, 0, 1).float() / 255 - 0.5) / 0.5


@pytest.fixture
def pairs():
    imgs = face_images(4, 2, size=112, seed=11)
    p = [
        (imgs[0][0], imgs[0][1]),
        (imgs[1][0], imgs[3][1]),
        (imgs[2][0], imgs[2][1]),
        (imgs[3][0], imgs[0][1]),
    ]
    return p, [True, False, True, False]


@pytest.mark.parametrize("python2", [False, True])
def test_read_bin_roundtrip(tmp_path, pairs, python2: bool) -> None:
    p, same = pairs
    write_bin(tmp_path / "lfw.bin", p, same, python2=python2)
    if python2:  # really the Python 2 layout: a plain Python 3 load yields str, not bytes
        with open(tmp_path / "lfw.bin", "rb") as f:
            assert isinstance(pickle.load(f, encoding="latin-1")[0][0], str)
    images, issame = vb.load_bin(tmp_path / "lfw.bin", 112, disk_cache=False)
    assert images.dtype == torch.uint8 and images.shape == (8, 3, 112, 112)
    assert issame.tolist() == same
    for i, (a, b) in enumerate(p):
        assert torch.equal(images[2 * i], torch.from_numpy(a).permute(2, 0, 1))
        assert torch.equal(images[2 * i + 1], torch.from_numpy(b).permute(2, 0, 1))


def test_bin_with_numpy_entries_and_resizing(tmp_path) -> None:
    img = face_images(1, 1, size=56)[0][0]
    bins = [np.frombuffer(encode_image(img), dtype=np.uint8)] * 2
    with open(tmp_path / "x.bin", "wb") as f:
        pickle.dump((bins, [True]), f)
    images, issame = vb.load_bin(tmp_path / "x.bin", 112, disk_cache=False)
    assert images.shape == (2, 3, 112, 112) and issame.tolist() == [True]


def test_bad_bin_is_a_clear_error(tmp_path) -> None:
    with open(tmp_path / "bad.bin", "wb") as f:
        pickle.dump(([b"x"] * 3, [True, False]), f)
    with pytest.raises(ValueError, match="3 images for 2 pairs"):
        vb.load_bin(tmp_path / "bad.bin")
    (tmp_path / "junk.bin").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="not a verification .bin"):
        vb.load_bin(tmp_path / "junk.bin")


def test_decoded_tensors_are_cached(tmp_path, pairs, monkeypatch) -> None:
    p, same = pairs
    write_bin(tmp_path / "agedb_30.bin", p, same, fmt="jpeg")
    first = vb.load_bin(tmp_path / "agedb_30.bin", 112)
    assert list((tmp_path / ".samrepro_cache").glob("agedb_30.*.pt"))
    vb.clear_memory_cache()

    def boom(*a, **k):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(vb, "read_bin_raw", boom)
    again = vb.load_bin(tmp_path / "agedb_30.bin", 112)  # from the disk cache
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert vb.load_bin(tmp_path / "agedb_30.bin", 112)[0] is again[0]  # from memory


def test_face_folder_with_benchmarks(tmp_path, pairs) -> None:
    imgs = face_images(3, [3, 2, 4], size=112, seed=12)
    written = write_image_folder(tmp_path, {f"id{i:02d}": v for i, v in imgs.items()})
    p, same = pairs
    for name in ("lfw", "cfp_fp", "agedb_30", "cplfw", "calfw"):
        write_bin(tmp_path / f"{name}.bin", p, same)
    b = data.build("face_folder", tmp_path, use_validation=False)
    assert b.task == "face" and b.num_classes == 3 and len(b.train) == 9
    assert list(b.verification) == ["lfw", "cfp_fp", "agedb_30", "cplfw", "calfw"]
    assert [lab for _, lab in written] == b.train.labels.tolist()
    x, y = b.train_eval[3]
    assert y == 1
    torch.testing.assert_close(x, face_norm(imgs[1][0]))
    cp = b.verification["cplfw"]
    assert cp.issame.tolist() == same
    torch.testing.assert_close(cp.images[2], face_norm(p[1][0]))
    bv = data.build("face_folder", tmp_path, use_validation=True, val_fraction=0.4, options={"val_pairs": 4})
    assert list(bv.verification) == ["val"] and bv.verification["val"].num_pairs >= 2
    assert len(bv.train) < 9


def test_verification_set_checks_shapes() -> None:
    with pytest.raises(ValueError, match="pairs"):
        data.VerificationSet("x", torch.zeros(3, 1, 8, 8), torch.zeros(2, dtype=torch.bool))


def test_missing_face_folder(tmp_path) -> None:
    with pytest.raises(data.DatasetMissingError, match="face_folder"):
        data.build("face_folder", tmp_path / "none", use_validation=False)
