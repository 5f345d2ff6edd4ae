"""Deterministic splits and verification pairs.

- ``stratified_split``: the validation split carved from the training set for ρ tuning (DESIGN.md, "The
  DAG" step 2: train on train-minus-validation, score on the validation split); stratified so that every
  class keeps its share.
- ``make_pairs``: balanced same/different pairs in the layout of the verification protocol (10 folds in
  order, each fold balanced), for the open-set digits benchmark and for face tuning on held-out images.
"""

from __future__ import annotations

import numpy as np


def _check_fraction(fraction: float) -> None:
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"val_fraction={fraction} must lie strictly between 0 and 1 (e.g. 0.1)")


def stratified_split(
    labels: np.ndarray | list[int], fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (train, val), taking round(fraction·n_c) of every class c into val (at least one
    image of each class stays in train). Same labels and seed ⇒ same split. Both index arrays are sorted."""
    _check_fraction(fraction)
    y = np.asarray(labels, dtype=np.int64)
    n = y.shape[0]
    if n < 2:
        raise ValueError(f"cannot carve a validation split from {n} training samples")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    order = perm[np.argsort(y[perm], kind="stable")]  # grouped by class, random inside a class
    ys = y[order]
    classes, starts, counts = np.unique(ys, return_index=True, return_counts=True)
    rank = np.arange(n) - np.repeat(starts, counts)
    n_val = np.minimum(np.rint(counts * fraction).astype(np.int64), np.maximum(counts - 1, 0))
    is_val = rank < np.repeat(n_val, counts)
    val = np.sort(order[is_val])
    train = np.sort(order[~is_val])
    if val.size == 0:
        raise ValueError(
            f"val_fraction={fraction} leaves no validation sample for {n} samples in {classes.size} classes; "
            "raise val_fraction"
        )
    return train, val


def subsample(n: int, max_n: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of a fixed random subset of at most ``max_n`` of ``n`` items (all when small)."""
    if max_n is None or n <= max_n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_n, replace=False))


def _unique_pairs_same(groups: list[np.ndarray], k: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    sizes = np.array([g.size for g in groups], dtype=np.int64)
    counts = sizes * (sizes - 1) // 2
    total = int(counts.sum())
    k = min(k, total)
    if total <= 4 * k:  # enumerate all and draw without replacement
        allp = [(int(g[i]), int(g[j])) for g in groups for i in range(g.size) for j in range(i + 1, g.size)]
        pick = rng.choice(len(allp), size=k, replace=False)
        return [allp[i] for i in pick]
    probs = counts / total
    seen: set[tuple[int, int]] = set()
    out: list[tuple[int, int]] = []
    while len(out) < k:
        for gi in rng.choice(len(groups), size=2 * (k - len(out)), p=probs):  # groups drawn in bulk
            g = groups[gi]
            i, j = rng.choice(g.size, size=2, replace=False)
            a, b = int(g[i]), int(g[j])
            key = (min(a, b), max(a, b))
            if key not in seen:
                seen.add(key)
                out.append((a, b))
                if len(out) == k:
                    break
    return out


def _unique_pairs_diff(y: np.ndarray, k: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    n = y.size
    _, cnt = np.unique(y, return_counts=True)
    total = int((n * n - int((cnt * cnt).sum())) // 2)
    k = min(k, total)
    if total <= 4 * k:
        allp = [(a, b) for a in range(n) for b in range(a + 1, n) if y[a] != y[b]]
        pick = rng.choice(len(allp), size=k, replace=False)
        return [allp[i] for i in pick]
    seen: set[tuple[int, int]] = set()
    out: list[tuple[int, int]] = []
    while len(out) < k:
        a, b = (int(v) for v in rng.integers(0, n, size=2))
        if y[a] == y[b]:
            continue
        key = (min(a, b), max(a, b))
        if key not in seen:
            seen.add(key)
            out.append((a, b))
    return out


def make_pairs(
    labels: np.ndarray | list[int], n_pairs: int, seed: int, folds: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Balanced verification pairs over the images with these labels: (index_a, index_b, issame).

    n_pairs/2 distinct same-identity pairs and as many distinct different-identity pairs (fewer when the
    images do not allow that many, always equal numbers). The pairs are laid out in ``folds`` consecutive
    folds with the same share of positives each, as LFW's 10 folds are, because the evaluation splits
    the pairs into folds in order. Deterministic in (labels, n_pairs, seed).
    """
    y = np.asarray(labels, dtype=np.int64)
    if n_pairs < 2:
        raise ValueError(f"n_pairs={n_pairs} must be at least 2 (one same and one different pair)")
    rng = np.random.default_rng(seed)
    order = np.argsort(y, kind="stable")  # group indices by label in O(n log n), not O(n * classes)
    _, starts = np.unique(y[order], return_index=True)
    groups = np.split(order, starts[1:]) if y.size else []
    multi = [g for g in groups if g.size >= 2]
    if not multi or len(groups) < 2:
        raise ValueError(
            f"verification pairs need an identity with >= 2 images and >= 2 identities; got {len(groups)} "
            f"identities over {y.size} images"
        )
    same = _unique_pairs_same(multi, n_pairs // 2, rng)
    diff = _unique_pairs_diff(y, len(same), rng)
    k = min(len(same), len(diff))
    same, diff = same[:k], diff[:k]
    folds = max(1, min(folds, k))
    a: list[int] = []
    b: list[int] = []
    issame: list[bool] = []
    for f in range(folds):
        chunk = [(p, True) for p in same[f::folds]] + [(p, False) for p in diff[f::folds]]
        for i in rng.permutation(len(chunk)):
            (pa, pb), s = chunk[i]
            a.append(pa)
            b.append(pb)
            issame.append(s)
    return np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64), np.asarray(issame, dtype=bool)
