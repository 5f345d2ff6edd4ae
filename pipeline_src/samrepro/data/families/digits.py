"""scikit-learn's bundled 8×8 digits: real data that works offline, for the embedded study.

- ``digits``: 10-class classification; a fixed stratified 25 % test split (seed 0, the same for every run),
  the validation split for ρ tuning carved from the remaining 75 % with ``split_seed``.
- ``digits_openset``: the face protocol in miniature — training identities are the classes 0–6, the test
  benchmark ``digits_unseen`` is balanced same/different pairs over images of the unseen classes 7–9
  (10 folds × 60 pairs by default, fixed seed); when tuning, the "val" pairs come from images of the
  training identities held out of training. With the option ``heldout_fraction`` f > 0, a fixed stratified
  fraction f of the training identities' images (seed 0, the same for every run) never enters training,
  tuning included, and a second benchmark ``digits_heldout`` pairs those images (new images of known
  identities, the closed-set half of the protocol); it is listed first.

Everything is one small uint8 tensor (values 0–16), so loading costs nothing next to training.
"""

from __future__ import annotations

import hashlib
import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..datasets import TensorImageDataset
from ..registry import DataBundle, DatasetSpec, VerificationSet, register
from ..splits import make_pairs, stratified_split
from .in_memory import AUG_OPTIONS, augmentation, in_memory_bundle

TEST_FRACTION = 0.25
TEST_SEED = 0
PAIRS_SEED = 0
TRAIN_CLASSES = 7  # digits_openset trains on 0..6 and verifies on the unseen 7..9
SCALE = 1.0 / 16.0


@lru_cache(maxsize=1)
def load_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [1797, 1, 8, 8] with values 0..16, int64 labels) from sklearn's bundled copy.

    Reads the CSV that ships inside scikit-learn directly: locating the package with find_spec does not
    import it, which saves one to three seconds in each of the study's ~100 short jobs. Same rows, same
    order as ``sklearn.datasets.load_digits`` (a test checks it)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "dataset 'digits' needs scikit-learn (its bundled copy of the data): pip install scikit-learn"
        )
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    table = np.loadtxt(path, delimiter=",", dtype=np.float64)
    x = table[:, :-1].astype(np.uint8).reshape(-1, 1, 8, 8)
    return x, table[:, -1].astype(np.int64)


def _transform(x: np.ndarray, options: dict[str, Any]):
    """Normalization by the mean/std of the training pixels; light augmentation: 1-pixel shifts.

    Digits are not mirror-symmetric, so no flip by default; Cutout off by default (an 8×8 image has no
    room for it), both can be switched on through options."""
    v = x.astype(np.float64) * SCALE
    mean, std = float(v.mean()), float(v.std())
    return augmentation(options, (mean,), (std,), crop_padding=1, flip=False, cutout=0, scale=SCALE)


def _build_digits(root: Path, *, use_validation, val_fraction, split_seed, download, options) -> DataBundle:
    x, y = load_arrays()
    tr, te = stratified_split(y, TEST_FRACTION, TEST_SEED)
    tf = _transform(x[tr], options)
    return in_memory_bundle(
        "digits",
        (torch.from_numpy(x[tr]), torch.from_numpy(y[tr])),
        (torch.from_numpy(x[te]), torch.from_numpy(y[te])),
        tf,
        10,
        use_validation=use_validation,
        val_fraction=val_fraction,
        split_seed=split_seed,
        options=options,
    )


def _pairs_set(
    name: str, images: torch.Tensor, labels: np.ndarray, n_pairs: int, seed: int, tf
) -> VerificationSet:
    a, b, same = make_pairs(labels, n_pairs, seed)
    order = torch.from_numpy(np.stack([a, b], axis=1).reshape(-1))
    return VerificationSet(name, tf(images.index_select(0, order)), torch.from_numpy(same))


def _heldout_split(labels: np.ndarray, options: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) indices into the training identities' images; nothing held out when f = 0."""
    f = float(options.get("heldout_fraction", 0.0))
    if not 0.0 <= f < 1.0:
        raise ValueError(
            f"options heldout_fraction={f} must lie in [0, 1) (e.g. 0.25; 0 = no held-out benchmark)"
        )
    if f == 0.0:
        return np.arange(labels.size), np.arange(0)
    return stratified_split(labels, f, TEST_SEED)


def _test_benchmarks(
    x: np.ndarray, y: np.ndarray, held: np.ndarray, options, eval_tf
) -> dict[str, VerificationSet]:
    """digits_heldout (when images are held out) and digits_unseen, both on fixed pairs (seed PAIRS_SEED)."""
    n_pairs = int(options.get("test_pairs", 600))
    seen, unseen = np.flatnonzero(y < TRAIN_CLASSES), np.flatnonzero(y >= TRAIN_CLASSES)
    out = {}
    if held.size:
        out["digits_heldout"] = _pairs_set(
            "digits_heldout", torch.from_numpy(x[seen[held]]), y[seen[held]], n_pairs, PAIRS_SEED, eval_tf
        )
    out["digits_unseen"] = _pairs_set(
        "digits_unseen", torch.from_numpy(x[unseen]), y[unseen], n_pairs, PAIRS_SEED, eval_tf
    )
    return out


def _build_openset(root: Path, *, use_validation, val_fraction, split_seed, download, options) -> DataBundle:
    x, y = load_arrays()
    seen = y < TRAIN_CLASSES
    kept, held = _heldout_split(y[seen], options)
    xs, ys = torch.from_numpy(x[seen][kept]), y[seen][kept]
    tf = _transform(x[seen][kept], options)
    eval_tf = tf.eval_copy()
    full = TensorImageDataset(xs, torch.from_numpy(ys), tf)
    if use_validation:
        tr, va = stratified_split(ys, val_fraction, split_seed)
        val = _pairs_set(
            "val", xs[torch.from_numpy(va)], ys[va], int(options.get("val_pairs", 600)), split_seed, eval_tf
        )
        verification = {"val": val}
        train = full.subset(tr)
    else:
        verification = _test_benchmarks(x, y, held, options, eval_tf)
        train = full
    return DataBundle(
        name="digits_openset",
        task="face",
        num_classes=TRAIN_CLASSES,
        input_shape=(1, 8, 8),
        train=train,
        train_eval=train.with_transform(eval_tf),
        eval=None,
        verification=verification,
        info={
            "train_size": len(train),
            "identities": TRAIN_CLASSES,
            "benchmarks": list(verification),
            "mean": list(tf.mean),
            "std": list(tf.std),
        },
    )


def _prepare(root: Path, download: bool) -> dict[str, Any]:
    x, y = load_arrays()
    return {
        "files": [],
        "counts": {"images": int(y.size), "classes": int(np.unique(y).size)},
        "data_sha256": hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest(),
        "source": "sklearn.datasets.load_digits (bundled with scikit-learn)",
    }


def _prepare_openset(root: Path, download: bool) -> dict[str, Any]:
    m = _prepare(root, download)
    _, y = load_arrays()
    seen = y < TRAIN_CLASSES
    m["counts"].update(
        {
            "train_identities": TRAIN_CLASSES,
            "train_images": int(seen.sum()),
            "unseen_images": int((~seen).sum()),
        }
    )
    return m


register(DatasetSpec("digits", _build_digits, _prepare, "bundled with scikit-learn", AUG_OPTIONS))
register(
    DatasetSpec(
        "digits_openset",
        _build_openset,
        _prepare_openset,
        "bundled with scikit-learn",
        AUG_OPTIONS | {"val_pairs", "test_pairs", "heldout_fraction"},
    )
)
