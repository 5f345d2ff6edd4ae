"""MXNet RecordIO without mxnet: byte layout, continuation records, insightface face sets through build()."""

from __future__ import annotations

import io
import struct

import pytest
import torch
from formats import (
    MAGIC,
    face_images,
    pack_record,
    write_bin,
    write_record,
    write_recordio,
)

import samrepro.data as data
from samrepro.data.formats.recordio import IndexedRecordIO, RecordIOError, iter_records, unpack

M = struct.pack("<I", MAGIC)


def lrec(cflag: int, length: int) -> bytes:
    return struct.pack("<I", (cflag << 29) | length)


def test_magic_bytes_are_little_endian_0xced7230a() -> None:
    assert M == bytes([0x0A, 0x23, 0xD7, 0xCE])


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        # plain record: one part, flag 0, zero padding to 4 bytes
        (b"abcdef", M + lrec(0, 6) + b"abcdef" + b"\0\0"),
        # magic at an aligned position: parts flag 1 and 3, the magic itself dropped
        (b"AAAA" + M + b"BBBBBB", M + lrec(1, 4) + b"AAAA" + M + lrec(3, 6) + b"BBBBBB\0\0"),
        # payload starting with the magic: an empty first part
        (M + b"xy", M + lrec(1, 0) + M + lrec(3, 2) + b"xy\0\0"),
        # two magics: first, middle (flag 2, empty) and last parts
        (b"QQQQ" + M + M + b"Z", M + lrec(1, 4) + b"QQQQ" + M + lrec(2, 0) + M + lrec(3, 1) + b"Z\0\0\0"),
        # magic at an unaligned position is NOT a split point
        (b"A" + M + b"BBB", M + lrec(0, 8) + b"A" + M + b"BBB"),
    ],
)
def test_writer_layout_matches_dmlc_and_reader_rejoins(tmp_path, payload: bytes, expected: bytes) -> None:
    buf = io.BytesIO()
    assert write_record(buf, payload) == 0
    assert buf.getvalue() == expected
    (tmp_path / "x.rec").write_bytes(expected)
    (tmp_path / "x.idx").write_text("7\t0\n")
    reader = IndexedRecordIO(tmp_path / "x.rec", tmp_path / "x.idx")
    assert reader.read(7) == payload
    assert list(iter_records(tmp_path / "x.rec")) == [payload]


def test_unpack_scalar_and_array_labels() -> None:
    h, rest = unpack(pack_record(3.0, b"IMG", id1=5, id2=9))
    assert (h.flag, h.labels, h.id, h.id2, rest) == (0, (3.0,), 5, 9, b"IMG")
    h, rest = unpack(pack_record([7.0, 2.5], b"IMG"))
    assert h.flag == 2 and h.labels == (7.0, 2.5) and h.label == 7.0 and rest == b"IMG"
    assert len(pack_record(1.0)) == 24  # <IfQQ


def test_face_rec_layout_like_insightface(tmp_path) -> None:
    imgs = face_images(3, [2, 4, 3], size=112)
    info = write_recordio(tmp_path, imgs, split_magic_record=True)
    reader = IndexedRecordIO(tmp_path / "train.rec", tmp_path / "train.idx")
    h0 = reader.read_header(0)
    assert h0.flag == 2 and h0.labels == (10.0, 13.0)  # [N+1, N+1+num_ids]
    assert [reader.read_header(k).labels for k in (10, 11, 12)] == [(1.0, 3.0), (3.0, 7.0), (7.0, 10.0)]
    assert unpack(reader.read(10))[1] == b""  # identity records carry no image
    # the first image record was split in 3 parts: flags 1, 2, 3 in the file, rejoined by the reader
    raw = (tmp_path / "train.rec").read_bytes()
    off = int(reader.offsets[list(reader.keys).index(1)])
    flags = []
    while True:
        magic, word = struct.unpack_from("<II", raw, off)
        assert magic == MAGIC
        flags.append(word >> 29)
        off += 8 + (((word & ((1 << 29) - 1)) + 3) & ~3)
        if word >> 29 in (0, 3):
            break
    assert flags == [1, 2, 3] and info["split_keys"] == [1]
    header, img = reader.read_image_record(1)
    assert header.id2 == MAGIC and M in img  # magic restored inside the payload
    assert header.label == 0.0


def test_build_face_rec_reads_every_image_and_label(tmp_path) -> None:
    imgs = face_images(3, [2, 4, 3], size=112, seed=1)
    write_recordio(tmp_path, imgs, fmt="png", split_magic_record=True)
    bundle = data.build("face_rec", tmp_path, use_validation=False, options={"benchmarks": []})
    assert bundle.task == "face" and bundle.num_classes == 3 and bundle.input_shape == (3, 112, 112)
    assert bundle.eval is None and len(bundle.verification) == 0
    flat = [(img, ident) for ident in sorted(imgs) for img in imgs[ident]]
    assert len(bundle.train_eval) == len(flat) == len(bundle.train)
    for i, (img, ident) in enumerate(flat):
        x, y = bundle.train_eval[i]
        assert y == ident
        expected = (torch.from_numpy(img).permute(2, 0, 1).float() / 255 - 0.5) / 0.5
        torch.testing.assert_close(x, expected)  # includes the split record (key 1), PNG is lossless
    # training view: flip augmentation only, so each image equals the original or its mirror
    torch.manual_seed(0)
    seen_flip = seen_plain = False
    for _ in range(20):
        x, _ = bundle.train[0]
        ref = bundle.train_eval[0][0]
        if torch.equal(x, ref):
            seen_plain = True
        elif torch.equal(x, ref.flip(-1)):
            seen_flip = True
        else:
            raise AssertionError("face training augmentation must be a horizontal flip only")
    assert seen_flip and seen_plain


def test_array_labels_and_missing_header(tmp_path) -> None:
    imgs = face_images(2, 3, size=112, seed=2)
    write_recordio(tmp_path / "a", imgs, label_as_array=True)
    write_recordio(tmp_path / "b", imgs, with_header=False)
    for sub in ("a", "b"):
        b = data.build("face_rec", tmp_path / sub, use_validation=False, options={"benchmarks": []})
        assert b.num_classes == 2
        assert b.train.labels.tolist() == [0, 0, 0, 1, 1, 1]


def test_corrupt_record_is_a_clear_error(tmp_path) -> None:
    imgs = face_images(2, 2, size=112)
    write_recordio(tmp_path, imgs)
    raw = bytearray((tmp_path / "train.rec").read_bytes())
    reader = IndexedRecordIO(tmp_path / "train.rec")
    off = int(reader.offsets[list(reader.keys).index(2)])
    raw[off : off + 4] = b"\0\0\0\0"
    (tmp_path / "train.rec").write_bytes(bytes(raw))
    with pytest.raises(RecordIOError, match="bad magic"):
        IndexedRecordIO(tmp_path / "train.rec").read(2)


def test_missing_rec_names_dataset_path_and_source(tmp_path) -> None:
    with pytest.raises(data.DatasetMissingError) as exc:
        data.build("ms1mv2", tmp_path, use_validation=False)
    msg = str(exc.value)
    assert "ms1mv2" in msg and str(tmp_path / "train.rec") in msg and "insightface" in msg
    assert isinstance(exc.value, ValueError)


def test_alias_checks_identity_count(tmp_path) -> None:
    write_recordio(tmp_path, face_images(2, 2, size=112))
    with pytest.raises(ValueError, match="10572"):
        data.build("casia_webface", tmp_path, use_validation=False, options={"benchmarks": []})
    b = data.build(
        "casia_webface", tmp_path, use_validation=False, options={"benchmarks": [], "check_identities": False}
    )
    assert b.num_classes == 2


def test_face_validation_pairs_from_held_out_images(tmp_path) -> None:
    imgs = face_images(6, 10, size=112, seed=3)
    write_recordio(tmp_path, imgs)
    kw = {"use_validation": True, "val_fraction": 0.3, "split_seed": 4, "options": {"val_pairs": 30}}
    b1 = data.build("face_rec", tmp_path, **kw)
    b2 = data.build("face_rec", tmp_path, **kw)
    assert list(b1.verification) == ["val"]
    v1, v2 = b1.verification["val"], b2.verification["val"]
    assert v1.num_pairs == 30 and int(v1.issame.sum()) == 15
    assert torch.equal(v1.images, v2.images) and torch.equal(v1.issame, v2.issame)  # deterministic
    assert len(b1.train) == 60 - 6 * 3 and b1.num_classes == 6
    # every pair image is a held-out training image, never one the model trains on
    train_imgs = {tuple(b1.train_eval[i][0].flatten()[:64].tolist()) for i in range(len(b1.train_eval))}
    for img in v1.images:
        assert tuple(img.flatten()[:64].tolist()) not in train_imgs


def test_benchmarks_through_build(tmp_path) -> None:
    imgs = face_images(3, 2, size=112, seed=5)
    write_recordio(tmp_path, imgs)
    pairs = [(imgs[0][0], imgs[0][1]), (imgs[1][0], imgs[2][1]), (imgs[2][0], imgs[2][1])]
    write_bin(tmp_path / "lfw.bin", pairs, [True, False, True])
    write_bin(tmp_path / "cfp_fp.bin", pairs[:2], [True, False], fmt="jpeg")
    b = data.build("face_rec", tmp_path, use_validation=False, options={"benchmarks": ["lfw", "cfp_fp"]})
    assert sorted(b.verification) == ["cfp_fp", "lfw"]
    lfw = b.verification["lfw"]
    assert lfw.issame.tolist() == [True, False, True] and lfw.images.shape == (6, 3, 112, 112)
    expected = (torch.from_numpy(pairs[1][1]).permute(2, 0, 1).float() / 255 - 0.5) / 0.5
    torch.testing.assert_close(lfw.images[3], expected)
    assert b.verification["cfp_fp"].num_pairs == 2
    with pytest.raises(data.DatasetMissingError, match="agedb_30.bin"):
        data.build("face_rec", tmp_path, use_validation=False)  # default: all five benchmarks


def test_read_header_skips_image_bytes_and_handles_split_records(tmp_path) -> None:
    write_recordio(tmp_path, face_images(2, 3, size=112), label_as_array=True)
    reader = IndexedRecordIO(tmp_path / "train.rec")
    for key in reader.keys.tolist():
        assert reader.read_header(key) == unpack(reader.read(key))[0]  # key 1 is split: full-read fallback
    with pytest.raises(KeyError, match="999"):
        reader.read(999)


def test_recordio_dataset_in_dataloader_workers(tmp_path) -> None:
    """Worker processes re-open the .rec file (one handle per process, never a shared file position)."""
    from torch.utils.data import DataLoader

    write_recordio(tmp_path, face_images(3, 4, size=112, seed=9))
    b = data.build("face_rec", tmp_path, use_validation=False, options={"benchmarks": []})
    b.train_eval[0]  # opens the handle in this process first
    loaded = list(DataLoader(b.train_eval, batch_size=4, num_workers=2))
    xs = torch.cat([x for x, _ in loaded])
    ys = torch.cat([y for _, y in loaded])
    ref_x, ref_y = b.train_eval.get_batch(range(len(b.train_eval)))
    assert torch.equal(xs, ref_x) and torch.equal(ys, ref_y)
