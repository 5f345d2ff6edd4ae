"""digits and digits_openset: the real bundled data of the embedded study."""

from __future__ import annotations

import numpy as np
import torch

import samrepro.data as data
from samrepro.data.families.digits import load_arrays


def test_digits_fixed_test_split_and_seeded_validation() -> None:
    b = data.build("digits", None, use_validation=False)
    assert (b.task, b.num_classes, b.input_shape) == ("classification", 10, (1, 8, 8))
    assert len(b.train) + len(b.eval) == 1797 and abs(len(b.eval) - 0.25 * 1797) < 10
    counts = torch.bincount(b.eval.labels, minlength=10)
    assert int(counts.min()) >= 43  # stratified: every class ~45 test images
    b2 = data.build("digits", None, use_validation=False, split_seed=7)
    assert torch.equal(b.eval.images, b2.eval.images)  # the test split never depends on split_seed
    v1 = data.build("digits", None, use_validation=True, split_seed=1)
    v2 = data.build("digits", None, use_validation=True, split_seed=2)
    assert len(v1.train) + len(v1.eval) == len(b.train)
    assert not torch.equal(v1.eval.images, v2.eval.images)
    test_rows = {bytes(r.numpy()) for r in b.eval.images.flatten(1)}
    # the validation images come from the training part, never from the test split
    all_rows = [bytes(r) for r in load_arrays()[0].reshape(1797, -1)]
    assert len(set(all_rows)) == 1797  # no duplicate images, so pixel rows identify images
    assert not any(bytes(r.numpy()) in test_rows for r in v1.eval.images.flatten(1))


def test_digits_items_are_normalized_floats() -> None:
    b = data.build("digits", None, use_validation=False)
    x = b.train_eval.get_batch(list(range(len(b.train_eval))))[0]
    assert x.dtype == torch.float32 and x.shape[1:] == (1, 8, 8)
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.05
    xi, yi = b.train[0]
    assert xi.shape == (1, 8, 8) and isinstance(yi, int)


def test_openset_trains_on_0_to_6_and_verifies_on_unseen_7_to_9() -> None:
    b = data.build("digits_openset", None, use_validation=False)
    assert b.task == "face" and b.num_classes == 7 and b.eval is None
    assert set(b.train.labels.tolist()) == set(range(7))
    ((name, vs),) = b.verification.items()
    assert name == "digits_unseen"
    assert vs.num_pairs >= 600 and int(vs.issame.sum()) * 2 == vs.num_pairs
    assert vs.images.shape == (2 * vs.num_pairs, 1, 8, 8)
    # every pair image is an image of class 7, 8 or 9 (after normalization)
    x, y = load_arrays()
    tf = b.train.transform.eval_copy()
    unseen = {bytes(r.numpy()) for r in tf(torch.from_numpy(x[y >= 7])).flatten(1)}
    seen = {bytes(r.numpy()) for r in tf(torch.from_numpy(x[y < 7])).flatten(1)}
    rows = [bytes(r.numpy()) for r in vs.images.flatten(1)]
    assert all(r in unseen for r in rows) and not any(r in seen and r not in unseen for r in rows)
    # same pairs are same-digit: check on the raw labels via an exact lookup
    lookup = {
        bytes(r.numpy()): int(lab)
        for r, lab in zip(tf(torch.from_numpy(x[y >= 7])).flatten(1), y[y >= 7], strict=True)
    }
    labels = np.array([lookup[r] for r in rows]).reshape(-1, 2)
    assert np.array_equal(labels[:, 0] == labels[:, 1], vs.issame.numpy())
    for f in range(10):  # balanced folds
        assert int(vs.issame[f * 60 : (f + 1) * 60].sum()) == 30
    b2 = data.build("digits_openset", None, use_validation=False, split_seed=5)
    assert torch.equal(b2.verification["digits_unseen"].images, vs.images)  # deterministic


def test_openset_validation_pairs_from_held_out_train_identities() -> None:
    b = data.build("digits_openset", None, use_validation=True, val_fraction=0.1, split_seed=0)
    assert list(b.verification) == ["val"]
    vs = b.verification["val"]
    assert vs.num_pairs == 600 and int(vs.issame.sum()) == 300
    x, y = load_arrays()
    n_seen = int((y < 7).sum())
    per_class = np.bincount(y[y < 7])
    assert len(b.train) == int(sum(c - round(0.1 * c) for c in per_class))
    tf = b.train.transform.eval_copy()
    train_rows = {
        bytes(r.numpy()) for r in b.train_eval.get_batch(list(range(len(b.train_eval))))[0].flatten(1)
    }
    seen_rows = {bytes(r.numpy()) for r in tf(torch.from_numpy(x[y < 7])).flatten(1)}
    rows = [bytes(r.numpy()) for r in vs.images.flatten(1)]
    assert all(r in seen_rows for r in rows)  # train identities
    assert len(seen_rows) == n_seen  # no duplicates: rows identify images
    assert not any(r in train_rows for r in rows)  # held out of training
    other = data.build("digits_openset", None, use_validation=True, split_seed=1).verification["val"]
    assert not torch.equal(other.images, vs.images)


def test_loading_digits_is_fast() -> None:
    import time

    data.build("digits_openset", None, use_validation=False)  # warm sklearn's loader
    t = time.perf_counter()
    for _ in range(5):
        data.build("digits", None, use_validation=True)
        data.build("digits_openset", None, use_validation=True)
    assert (time.perf_counter() - t) / 5 < 1.0


def test_digits_csv_reader_equals_sklearn_loader() -> None:
    """The direct CSV read (no sklearn import per job) gives sklearn's exact arrays."""
    from sklearn.datasets import load_digits

    from samrepro.data.families.digits import load_arrays

    x, y = load_arrays()
    ref = load_digits()
    assert x.shape == (1797, 1, 8, 8)
    assert (x[:, 0].astype(np.float64) == ref.images).all()
    assert (y == ref.target).all()
