"""Issue 8, items 1, 5 and 6: files from disk are data, never code; their failures are one line; outputs honour
the umask.

Every crafted file is built here: a pickle whose ``__reduce__`` would run ``touch <marker>``. Loading it must
fail with one line naming the file, and the marker must never appear (the command never ran)."""

from __future__ import annotations

import errno
import os
import pickle
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from formats import encode_image, face_images, write_cifar_batches, write_image_folder
from run_configs import tiny_sgd_run

import samrepro.atomic
from samrepro.atomic import atomic_write_json, atomic_write_text
from samrepro.cli import main
from samrepro.data.formats import verification_bin as vb
from samrepro.engine import checkpoint as ckpt

TINY = tiny_sgd_run()


class RunsCommand:
    """Unpickling this runs `touch marker` (what an attacker's file would do with a worse command)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def run_yaml(path: Path, **kw) -> Path:
    path.write_text(yaml.safe_dump({**TINY, **kw}))
    return path


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One finished tiny run (digits, 1 epoch, well under a second of training)."""
    root = tmp_path_factory.mktemp("trained")
    assert main(["train", "--config", str(run_yaml(root / "run.yaml")), "--out", str(root / "run")]) == 0
    return root / "run"


# ------------------------------------------------------------------------- item 1: crafted files run nothing
def test_crafted_checkpoint_is_refused_and_runs_nothing(tmp_path, capsys) -> None:
    marker, out = tmp_path / "pwned", tmp_path / "run"
    out.mkdir()
    torch.save({"format": 1, "model": RunsCommand(marker), "epoch": 0}, out / "checkpoint.pt")
    rc = main(["train", "--config", str(run_yaml(tmp_path / "run.yaml")), "--out", str(out)])
    line = one_error_line(capsys)
    assert rc == 2 and not marker.exists()
    assert (
        str(out / "checkpoint.pt") in line
        and "posix.system" in line
        and f"delete {out / 'checkpoint.pt'}" in line
    )


def test_crafted_model_pt_is_refused_by_evaluate(tmp_path, trained, capsys) -> None:
    marker, run = tmp_path / "pwned", tmp_path / "run"
    run.mkdir()
    (run / "run.resolved.yaml").write_bytes((trained / "run.resolved.yaml").read_bytes())
    torch.save({"model": RunsCommand(marker)}, run / "model.pt")
    rc = main(["evaluate", "--run", str(run)])
    line = one_error_line(capsys)
    assert rc == 2 and not marker.exists() and str(run / "model.pt") in line
    assert not (run / "eval.json").exists()


def test_legacy_pickle_checkpoint_is_refused(tmp_path) -> None:
    """torch.load also reads plain (pre-zip) pickles: the same refusal applies to them."""
    marker = tmp_path / "pwned"
    with open(tmp_path / "checkpoint.pt", "wb") as f:
        pickle.dump({"model": RunsCommand(marker)}, f, protocol=2)
    with pytest.raises(ckpt.CheckpointError, match="checkpoint.pt: it asks to call posix.system"):
        ckpt.torch_load(tmp_path / "checkpoint.pt")
    assert not marker.exists()


def test_genuine_checkpoint_with_numpy_rng_state_loads(tmp_path) -> None:
    ckpt.seed_everything(5)
    ckpt.atomic_torch_save(
        tmp_path / "c.pt",
        {"model": {"w": torch.ones(2)}, "rng": [ckpt.capture_rng()], "history": [{"a": 1.0}], "t": (1, "x")},
    )
    state = ckpt.torch_load(tmp_path / "c.pt")
    expected = np.random.rand(3)
    ckpt.restore_rng(state["rng"][0])
    assert np.array_equal(np.random.rand(3), expected) and state["t"] == (1, "x")
    torch.save([1, 2], tmp_path / "list.pt")  # plain data, but not a checkpoint
    with pytest.raises(ckpt.CheckpointError, match="not a samrepro checkpoint"):
        ckpt.torch_load(tmp_path / "list.pt")


def test_crafted_lfw_bin_is_refused_and_runs_nothing(tmp_path, capsys) -> None:
    marker, root = tmp_path / "pwned", tmp_path / "faces"
    write_image_folder(root, face_images(2, 2, size=112))
    with open(root / "lfw.bin", "wb") as f:
        pickle.dump(([b"\x89PNG", RunsCommand(marker)], [True]), f, protocol=2)
    with pytest.raises(vb.VerificationBinError, match=r"lfw\.bin: refused to load.*posix\.system"):
        vb.load_bin(root / "lfw.bin", 112, disk_cache=False)
    assert (
        main(["prepare", "--dataset", "face_folder", "--root", str(root), "--out", str(tmp_path / "m.json")])
        == 2
    )
    assert str(root / "lfw.bin") in one_error_line(capsys)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_genuine_bin_with_numpy_images_loads_at_every_protocol(tmp_path, protocol: int) -> None:
    blob = np.frombuffer(encode_image(face_images(1, 1, size=56)[0][0]), dtype=np.uint8)
    with open(tmp_path / "x.bin", "wb") as f:
        pickle.dump(([blob, blob.copy()], [np.bool_(True)]), f, protocol=protocol)
    images, issame = vb.load_bin(tmp_path / "x.bin", 56, disk_cache=False)
    assert images.shape == (2, 3, 56, 56) and issame.tolist() == [True]


def test_crafted_cifar_batch_is_refused_and_runs_nothing(tmp_path, capsys) -> None:
    marker, root = tmp_path / "pwned", tmp_path / "data"
    write_cifar_batches(root, n=20, num_classes=10)
    batch = root / "cifar-10-batches-py" / "data_batch_3"
    with open(batch, "wb") as f:
        pickle.dump({b"data": RunsCommand(marker), b"labels": [0]}, f, protocol=2)
    rc = main(["prepare", "--dataset", "cifar10", "--root", str(root), "--out", str(tmp_path / "m.json")])
    line = one_error_line(capsys)
    assert rc == 2 and not marker.exists() and str(batch) in line and "posix.system" in line


def test_refused_codec_in_a_protocol2_bytes_global(tmp_path) -> None:
    """`_codecs.encode` is admitted only as protocol 2 spells bytes (latin-1), not as a general codec call."""
    from samrepro.data.formats import safe_pickle

    crafted = b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x05\x00\x00\x00rot13\x86R."
    (tmp_path / "b").write_bytes(crafted)
    with pytest.raises(safe_pickle.UnsafePickleError, match="b: refused to load.*codec 'rot13'"):
        safe_pickle.load(tmp_path / "b", "CIFAR python batch")


# ------------------------------------------------------------------ item 5: one line, documented exit codes
def test_python_tagged_run_yaml_is_one_line_exit_2(tmp_path, capsys) -> None:
    marker = tmp_path / "pwned"
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(TINY) + f"extra: !!python/object/apply:os.system ['touch {marker}']\n")
    rc = main(["train", "--config", str(cfg), "--out", str(tmp_path / "out")])
    line = one_error_line(capsys)
    assert rc == 2 and not marker.exists() and str(cfg) in line and "python tags are refused" in line


def test_python_tagged_study_yaml_for_plan_is_one_line_exit_2(tmp_path, capsys) -> None:
    study = tmp_path / "study.yaml"
    study.write_text("study: s\nexperiments: !!python/object/apply:os.system ['true']\n")
    rc = main(
        [
            "plan",
            "--config",
            str(study),
            "--experiment",
            "e",
            "--setup",
            "SGD",
            "--seed",
            "0",
            "--phase",
            "final",
            "--out",
            str(tmp_path / "run.yaml"),
        ]
    )
    line = one_error_line(capsys)
    assert rc == 2 and str(study) in line and "line 2" in line and "python tags are refused" in line


def test_truncated_checkpoint_says_delete_to_restart(tmp_path, trained, capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    blob = (trained / "checkpoint.pt").read_bytes()
    (out / "checkpoint.pt").write_bytes(blob[: len(blob) // 2])
    rc = main(["train", "--config", str(run_yaml(tmp_path / "run.yaml")), "--out", str(out)])
    line = one_error_line(capsys)
    assert rc == 2 and f"delete {out / 'checkpoint.pt'} to restart" in line


def test_disk_full_while_checkpointing_exit_4_keeps_last_checkpoint(tmp_path, monkeypatch, capsys) -> None:
    """ENOSPC at the second epoch's checkpoint: one line naming checkpoint.pt, exit 4, the first epoch's
    checkpoint intact and no temp file left; the same command then resumes and finishes."""
    out, cfg = tmp_path / "run", run_yaml(tmp_path / "run.yaml", schedule={"epochs": 2})
    real_fsync, writes = os.fsync, {"checkpoint": 0}

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").split("/")[-1].startswith(".checkpoint.pt."):
            writes["checkpoint"] += 1
            if writes["checkpoint"] == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(samrepro.atomic.os, "fsync", fsync)
    rc = main(["train", "--config", str(cfg), "--out", str(out)])
    line = one_error_line(capsys)
    assert rc == 4 and str(out / "checkpoint.pt") in line and "No space left on device" in line
    assert ckpt.torch_load(out / "checkpoint.pt")["epoch"] == 1
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]
    monkeypatch.setattr(samrepro.atomic.os, "fsync", real_fsync)
    assert main(["train", "--config", str(cfg), "--out", str(out)]) == 0
    assert (out / "metrics.json").is_file()


# ------------------------------------------------------------------------------ item 6: the umask, as open()
@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_atomic_writes_honour_the_umask_like_open(tmp_path, umask: int) -> None:
    old = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "metrics.json", {"a": 1})
        ckpt.atomic_torch_save(tmp_path / "checkpoint.pt", {"model": {}})
        with open(tmp_path / "plain.txt", "w") as fh:
            fh.write("x")
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    for name in ("metrics.json", "checkpoint.pt", "plain.txt"):
        assert oct((tmp_path / name).stat().st_mode & 0o777) == oct(expected), name


def test_atomic_rewrite_keeps_the_existing_mode_like_open(tmp_path) -> None:
    target = tmp_path / "best.json"
    target.write_text("{}")
    target.chmod(0o640)
    atomic_write_text(target, '{"rho": 0.05}')
    assert target.stat().st_mode & 0o777 == 0o640 and target.read_text() == '{"rho": 0.05}'


def test_select_rho_names_a_corrupt_metrics_json_and_its_redo(tmp_path, capsys) -> None:
    metrics = tmp_path / "rho0.05_seed0" / "metrics.json"
    metrics.parent.mkdir()
    metrics.write_text('{"experiment": "e", "setup": "SAM", "rho": 0.0')
    assert main(["select-rho", "--metrics", str(metrics), "--out", str(tmp_path / "best.json")]) == 2
    line = one_error_line(capsys)
    assert str(metrics) in line and f"snakemake --forcerun {metrics}" in line
    assert not (tmp_path / "best.json").exists()


def test_plan_names_a_corrupt_best_json_and_its_redo(tmp_path, capsys) -> None:
    study = tmp_path / "study.yaml"
    study.write_text(
        yaml.safe_dump(
            {
                "study": "s",
                "experiments": {
                    "e": {
                        "dataset": {"name": "digits"},
                        "model": {"name": "small_cnn"},
                        "setups": ["SAM"],
                        "rho_grid": [0.05],
                    }
                },
            }
        )
    )
    best = tmp_path / "best.json"
    best.write_text("\x00\x01")
    rc = main(
        [
            "plan",
            "--config",
            str(study),
            "--experiment",
            "e",
            "--setup",
            "SAM",
            "--seed",
            "0",
            "--phase",
            "final",
            "--best",
            str(best),
            "--out",
            str(tmp_path / "run.yaml"),
        ]
    )
    line = one_error_line(capsys)
    assert rc == 2 and str(best) in line and f"snakemake --forcerun {best}" in line


def test_an_undecodable_image_in_a_bin_names_the_file(tmp_path) -> None:
    good = encode_image(face_images(1, 1, size=56)[0][0])
    with open(tmp_path / "cfp_fp.bin", "wb") as f:
        pickle.dump(([good, b"GIF89a not really an image"], [True]), f, protocol=2)
    with pytest.raises(vb.VerificationBinError, match=r"cfp_fp\.bin: an image in it cannot be decoded"):
        vb.load_bin(tmp_path / "cfp_fp.bin", 56, disk_cache=False)


def test_a_corrupt_food101_meta_file_is_one_line_naming_it(tmp_path, capsys) -> None:
    from formats import write_food101

    write_food101(tmp_path, ["apple_pie", "sushi"], 2, 1)
    meta = tmp_path / "food-101" / "meta" / "train.json"
    meta.write_text('{"apple_pie": ["apple_pie/0"')
    rc = main(["prepare", "--dataset", "food101", "--root", str(tmp_path), "--out", str(tmp_path / "m.json")])
    line = one_error_line(capsys)
    assert rc == 2 and str(meta) in line and "re-extract" in line


def test_report_with_a_malformed_spec_is_one_line(tmp_path, capsys) -> None:
    assert main(["report", "--spec", "{'study': 1}", "--out", str(tmp_path / "rep")]) == 2
    assert "--spec is not valid JSON" in one_error_line(capsys)


def test_plan_without_experiment_is_one_line_exit_2(tmp_path, capsys) -> None:
    rc = main(
        [
            "plan",
            "--config",
            str(tmp_path / "s.yaml"),
            "--setup",
            "SGD",
            "--seed",
            "0",
            "--phase",
            "final",
            "--out",
            str(tmp_path / "run.yaml"),
        ]
    )
    assert rc == 2 and "--config needs --experiment NAME" in one_error_line(capsys)


def test_a_binary_run_yaml_is_one_line_naming_it(tmp_path, capsys) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_bytes(b"study: t\n\xff\xfe\x00garbage")
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "out")]) == 2
    assert str(cfg) in one_error_line(capsys)


def test_a_model_pt_of_another_network_is_one_line(tmp_path, trained, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.resolved.yaml").write_bytes((trained / "run.resolved.yaml").read_bytes())
    torch.save({"model": {"fc.weight": torch.zeros(3, 3)}}, run / "model.pt")  # plain data, wrong network
    assert main(["evaluate", "--run", str(run)]) == 2
    line = one_error_line(capsys)
    assert str(run / "model.pt") in line and "do not fit the network" in line


def test_report_names_a_corrupt_best_json_and_paper_file(tmp_path, capsys) -> None:
    best = tmp_path / "best.json"
    best.write_text('{"experiment": "e", ')
    assert main(["report", "--best", str(best), "--out", str(tmp_path / "rep")]) == 2
    line = one_error_line(capsys)
    assert str(best) in line and f"snakemake --forcerun {best}" in line
    paper = tmp_path / "paper_results.yaml"
    paper.write_text("aace: !!python/object/apply:os.system ['true']\n")
    assert main(["report", "--paper", str(paper), "--out", str(tmp_path / "rep")]) == 2
    line = one_error_line(capsys)
    assert str(paper) in line and "python tags are refused" in line


def test_an_undecodable_image_in_a_face_folder_names_the_file(tmp_path) -> None:
    from samrepro import data

    imgs = face_images(3, [3, 2, 4], size=112, seed=12)
    written = write_image_folder(tmp_path, {f"id{i:02d}": v for i, v in imgs.items()})
    bad = Path(written[1][0])
    bad.write_bytes(b"\xff\xd8\xff\xe0 a JPEG header and nothing else")
    with pytest.raises(ValueError, match=rf"{bad.name}: not a decodable image.*replace or remove it"):
        bundle = data.build(
            "face_folder", tmp_path, use_validation=True, val_fraction=0.5, options={"val_pairs": 2}
        )
        bundle.train.get_batch(list(range(len(bundle.train))))


@pytest.mark.parametrize("payload", [(5, [True]), ([b"\x89PNG", 7], [True]), ([b"a", b"b"], [np.ones(3)])])
def test_a_bin_of_the_wrong_shape_names_the_file(tmp_path, payload) -> None:
    with open(tmp_path / "agedb_30.bin", "wb") as f:
        pickle.dump(payload, f, protocol=2)
    with pytest.raises(vb.VerificationBinError, match=r"agedb_30\.bin: "):
        vb.read_bin_raw(tmp_path / "agedb_30.bin")


def test_a_cifar_batch_of_the_wrong_types_names_the_file(tmp_path, capsys) -> None:
    root = tmp_path / "data"
    write_cifar_batches(root, n=20, num_classes=10)
    batch = root / "cifar-10-batches-py" / "test_batch"
    with open(batch, "wb") as f:
        pickle.dump({b"data": {}, b"labels": [0], 3: "x"}, f, protocol=2)
    rc = main(["prepare", "--dataset", "cifar10", "--root", str(root), "--out", str(tmp_path / "m.json")])
    assert rc == 2 and str(batch) in one_error_line(capsys)


def test_samrepro_traceback_keeps_the_traceback_for_maintainers(tmp_path, capsys, monkeypatch) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text("setup: !!python/name:os.system\n")
    argv = ["train", "--config", str(cfg), "--out", str(tmp_path / "out")]
    assert main(argv) == 2 and "python tags are refused" in one_error_line(capsys)
    monkeypatch.setenv("SAMREPRO_TRACEBACK", "1")
    study = tmp_path / "study.yaml"
    study.write_text("study: [unclosed\n")
    with pytest.raises(Exception, match="flow sequence"):
        main(
            [
                "plan",
                "--config",
                str(study),
                "--experiment",
                "e",
                "--setup",
                "SGD",
                "--seed",
                "0",
                "--phase",
                "final",
                "--out",
                str(tmp_path / "r.yaml"),
            ]
        )
