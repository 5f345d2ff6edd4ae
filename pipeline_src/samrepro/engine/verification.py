"""Face verification accuracy exactly as insightface reports it (DESIGN, "Verification protocol").

embedding = f(img) + f(mirror(img)), l2-normalized; distance = squared Euclidean distance of the two
embeddings of a pair; thresholds 0.00, 0.01, …, 3.99; the pairs are split into 10 folds in order (no
shuffle; fold sizes as sklearn's KFold: the first n mod 10 folds hold one pair more); for each fold the
threshold with the best accuracy on the other nine folds (first one on ties) scores the held-out fold;
report the mean and the (population) std of the ten fold accuracies. A pair is predicted "same" when its
distance is strictly below the threshold (insightface's `np.less`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

THRESHOLDS = np.arange(0, 400, dtype=np.float64) / 100.0  # 0.00 … 3.99, exactly 400 values


def pair_distances(emb1: np.ndarray, emb2: np.ndarray) -> np.ndarray:
    """Squared Euclidean distance per pair (rows of two (N, D) arrays of l2-normalized embeddings)."""
    if emb1.shape != emb2.shape or emb1.ndim != 2:
        raise ValueError(
            f"embeddings must be two (N, D) arrays of one shape, got {emb1.shape} and {emb2.shape}"
        )
    diff = emb1.astype(np.float64) - emb2.astype(np.float64)
    return np.sum(diff * diff, axis=1)


def kfold_accuracy(
    dist: np.ndarray, issame: np.ndarray, nfolds: int = 10, thresholds: np.ndarray = THRESHOLDS
) -> tuple[float, float, np.ndarray]:
    """(mean, std, per-fold accuracies), accuracies as fractions in [0, 1]."""
    dist = np.asarray(dist, dtype=np.float64)
    issame = np.asarray(issame, dtype=bool)
    n = dist.shape[0]
    if issame.shape != (n,):
        raise ValueError(f"issame has shape {issame.shape}, expected ({n},): one flag per pair")
    if n < nfolds:
        raise ValueError(f"{n} pairs cannot be split into {nfolds} folds; give at least {nfolds} pairs")
    predicted = dist[None, :] < thresholds[:, None]  # (T, N)
    correct = predicted == issame[None, :]
    folds = np.array_split(np.arange(n), nfolds)
    accs = np.empty(nfolds, dtype=np.float64)
    total_correct = correct.sum(axis=1)
    for k, test_idx in enumerate(folds):
        train_correct = total_correct - correct[:, test_idx].sum(axis=1)
        best = int(np.argmax(train_correct / (n - len(test_idx))))
        accs[k] = correct[best, test_idx].mean()
    return float(accs.mean()), float(accs.std()), accs


@torch.no_grad()
def flip_embeddings(
    embed: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    batch_size: int,
    device: torch.device,
    channels_last: bool = False,
) -> np.ndarray:
    """l2-normalize(f(x) + f(mirror x)) for every image (mirror = flip of the width axis), as float64 numpy."""
    out = []
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size].to(device, non_blocking=True)
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        e = embed(x).float() + embed(torch.flip(x, dims=[-1])).float()
        out.append(torch.nn.functional.normalize(e, dim=1).cpu())
    return torch.cat(out).double().numpy()


def verify(
    embed: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    issame: torch.Tensor,
    batch_size: int,
    device: torch.device,
    channels_last: bool = False,
) -> dict[str, float]:
    """Verification accuracy (percent) of one benchmark: images[2i], images[2i+1] form pair i."""
    if images.shape[0] != 2 * issame.shape[0]:
        raise ValueError(
            f"a verification set needs 2 images per pair: {images.shape[0]} images for "
            f"{issame.shape[0]} pairs"
        )
    emb = flip_embeddings(embed, images, batch_size, device, channels_last)
    mean, std, _ = kfold_accuracy(pair_distances(emb[0::2], emb[1::2]), issame.cpu().numpy().astype(bool))
    return {"acc_mean": 100.0 * mean, "acc_std": 100.0 * std}
