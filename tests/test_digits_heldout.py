"""digits_openset's held-out benchmark (option heldout_fraction) and the raw-pixel reference on its pairs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from samrepro import data
from samrepro.data.families.digits import load_arrays
from samrepro.engine.reference import pixel_reference
from samrepro.engine.reference import run as reference_run
from samrepro.engine.verification import kfold_accuracy

OPTS = {"heldout_fraction": 0.25}


def rows(x: torch.Tensor) -> list[bytes]:
    return [bytes(r.numpy()) for r in x.flatten(1)]


def test_heldout_images_are_training_identities_never_trained_on() -> None:
    b = data.build("digits_openset", None, use_validation=False, options=OPTS)
    assert list(b.verification) == ["digits_heldout", "digits_unseen"]
    vs = b.verification["digits_heldout"]
    assert vs.num_pairs == 600 and int(vs.issame.sum()) == 300
    x, y = load_arrays()
    tf = b.train.transform.eval_copy()
    label_of = {r: int(lab) for r, lab in zip(rows(tf(torch.from_numpy(x))), y, strict=True)}
    pair_labels = np.array([label_of[r] for r in rows(vs.images)]).reshape(-1, 2)
    assert pair_labels.max() < 7  # training identities
    assert np.array_equal(pair_labels[:, 0] == pair_labels[:, 1], vs.issame.numpy())
    train_rows = set(rows(b.train_eval.get_batch(list(range(len(b.train_eval))))[0]))
    assert not train_rows & set(rows(vs.images))  # never trained on
    n_seen = int((y < 7).sum())
    assert len(b.train) == n_seen - sum(round(0.25 * c) for c in np.bincount(y[y < 7]))


def test_tuning_never_sees_the_heldout_images() -> None:
    final = data.build("digits_openset", None, use_validation=False, options=OPTS)
    tune = data.build("digits_openset", None, use_validation=True, val_fraction=0.15, options=OPTS)
    held = set(rows(final.verification["digits_heldout"].images))
    tune_rows = set(rows(tune.train_eval.get_batch(list(range(len(tune.train_eval))))[0]))
    assert not held & (tune_rows | set(rows(tune.verification["val"].images)))


def test_without_the_option_the_dataset_is_unchanged() -> None:
    plain = data.build("digits_openset", None, use_validation=False)
    zero = data.build("digits_openset", None, use_validation=False, options={"heldout_fraction": 0.0})
    assert list(plain.verification) == list(zero.verification) == ["digits_unseen"]
    assert torch.equal(plain.verification["digits_unseen"].images, zero.verification["digits_unseen"].images)
    with pytest.raises(ValueError, match="heldout_fraction=1.0 must lie in"):
        data.build("digits_openset", None, use_validation=False, options={"heldout_fraction": 1.0})


def test_pixel_reference_is_the_protocol_on_flattened_images() -> None:
    cfg = {
        "study": "s",
        "experiment": "e",
        "phase": "tune",
        "eval_batch_size": 100,
        "dataset": {
            "name": "digits_openset",
            "root": None,
            "val_fraction": 0.15,
            "split_seed": 0,
            "download": False,
            "options": OPTS,
        },
    }
    out = pixel_reference(cfg)
    b = data.build("digits_openset", None, use_validation=False, options=OPTS)
    for name, vs in b.verification.items():
        v = vs.images.flatten(1).double()
        e = torch.nn.functional.normalize(v + vs.images.flip(-1).flatten(1).double(), dim=1).numpy()
        dist = ((e[0::2] - e[1::2]) ** 2).sum(axis=1)
        mean, std, _ = kfold_accuracy(dist, vs.issame.numpy())
        assert out["benchmarks"][name]["acc_mean"] == pytest.approx(100 * mean, abs=1e-9)
        assert out["benchmarks"][name]["acc_std"] == pytest.approx(100 * std, abs=1e-9)
    assert out["name"] == "raw pixels" and out["task"] == "face" and out["flip_test"] is True
    assert out["verification_mean"] == pytest.approx(
        np.mean([s["acc_mean"] for s in out["benchmarks"].values()])
    )


def test_reference_refuses_a_classification_config(tmp_path, capsys) -> None:
    cfg = tmp_path / "run.json"
    cfg.write_text(
        json.dumps(
            {
                "setup": "SGD",
                "dataset": {"name": "digits"},
                "model": {"name": "small_cnn"},
                "schedule": {"epochs": 1},
            }
        )
    )

    class Args:
        config, out = str(cfg), str(tmp_path / "pixels.json")

    assert reference_run(Args()) == 2
    assert "is a classification dataset" in capsys.readouterr().err
    assert not (tmp_path / "pixels.json").exists()
