"""Engine building blocks that need no training: verification protocol, schedules, config, atomic files,
RNG capture, sharpness by power iteration."""

from __future__ import annotations

import math
import os
import random
import re

import numpy as np
import pytest
import torch

import samrepro.atomic
from samrepro.engine import checkpoint as ckpt
from samrepro.engine import config as C
from samrepro.engine.schedule import LRSchedule, lr_factor
from samrepro.engine.sharpness import hessian_vector_product, top_hessian_eigenvalue
from samrepro.engine.verification import THRESHOLDS, flip_embeddings, kfold_accuracy, pair_distances, verify


# ---------------------------------------------------------------- verification (insightface protocol)
def _reference_kfold(dist: np.ndarray, issame: np.ndarray) -> np.ndarray:
    """insightface's calculate_roc, written out with sklearn's KFold(shuffle=False) and loops."""
    from sklearn.model_selection import KFold

    thresholds = np.arange(0, 4, 0.01)
    accs = []
    for train, test in KFold(n_splits=10, shuffle=False).split(np.arange(len(dist))):
        train_acc = []
        for t in thresholds:
            pred = np.less(dist[train], t)
            train_acc.append(np.mean(pred == issame[train]))
        best = int(np.argmax(train_acc))
        accs.append(np.mean(np.less(dist[test], thresholds[best]) == issame[test]))
    return np.array(accs)


def test_thresholds_are_0_to_3_99_step_0_01() -> None:
    assert len(THRESHOLDS) == 400 and THRESHOLDS[0] == 0.0 and THRESHOLDS[-1] == pytest.approx(3.99)
    assert np.allclose(np.diff(THRESHOLDS), 0.01)


@pytest.mark.parametrize("n", [600, 457])  # 457: folds of unequal size, as sklearn's KFold makes them
def test_kfold_matches_insightface_reference(n: int) -> None:
    rng = np.random.default_rng(n)
    issame = rng.random(n) < 0.5
    # overlapping distance distributions, and the folds differ (the first pairs are easier) so order matters
    dist = np.where(issame, rng.normal(1.0, 0.35, n), rng.normal(1.6, 0.35, n)).clip(0, 4)
    dist[: n // 10] = np.where(issame[: n // 10], 0.2, 3.0)
    mean, std, accs = kfold_accuracy(dist, issame)
    ref = _reference_kfold(dist, issame)
    assert np.array_equal(accs, ref)
    assert mean == pytest.approx(ref.mean()) and std == pytest.approx(ref.std())
    assert accs[0] == 1.0 and accs[1:].max() < 1.0  # fold 0 is the easy block: folds were not shuffled


def test_distance_equal_to_threshold_counts_as_different() -> None:
    # all distances exactly 1.0: "same" needs dist < t, so the best thresholds classify by t > 1.0
    dist = np.full(20, 1.0)
    issame = np.array([True] * 20)
    mean, _, _ = kfold_accuracy(dist, issame)
    assert mean == 1.0
    _, _, accs = kfold_accuracy(dist, issame, thresholds=np.array([0.5, 1.0]))
    assert accs.max() == 0.0  # t = 1.0 is not > 1.0


def test_flip_embeddings_sum_original_and_mirror_then_normalize() -> None:
    torch.manual_seed(0)
    w = torch.randn(2 * 4 * 4, 3)

    def f(x: torch.Tensor) -> torch.Tensor:  # not flip-invariant
        return x.flatten(1) @ w

    x = torch.randn(5, 2, 4, 4)
    got = flip_embeddings(f, x, batch_size=2, device=torch.device("cpu"))
    ref = torch.nn.functional.normalize(f(x) + f(x.flip(-1)), dim=1).double().numpy()
    assert np.allclose(got, ref, atol=1e-6)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0)
    d = pair_distances(got[0::2][:2], got[1::2][:2])
    assert np.allclose(d, ((got[0:4:2] - got[1:4:2]) ** 2).sum(1))


def test_verify_separable_pairs_is_100_percent_and_rejects_odd_images() -> None:
    torch.manual_seed(1)
    n = 40
    issame = torch.tensor([i % 2 == 0 for i in range(n)])
    protos = torch.randn(2 * n, 16)
    imgs = protos.clone()
    imgs[1::2][issame] = protos[0::2][issame] + 0.01 * torch.randn(int(issame.sum()), 16)
    images = imgs.view(2 * n, 1, 4, 4)
    res = verify(lambda x: x.flatten(1), images, issame, 16, torch.device("cpu"))
    assert res["acc_mean"] == 100.0 and res["acc_std"] == 0.0
    with pytest.raises(ValueError, match="2 images per pair"):
        verify(lambda x: x.flatten(1), images[:-1], issame, 16, torch.device("cpu"))


# ---------------------------------------------------------------- schedules
def test_cosine_schedule_per_step() -> None:
    cfg = {"name": "cosine", "epochs": 10, "warmup_epochs": 0}
    assert lr_factor(cfg, 0, 0, 5) == 1.0
    assert lr_factor(cfg, 5, 0, 5) == pytest.approx(0.5)
    assert lr_factor(cfg, 9, 4, 5) == pytest.approx(0.5 * (1 + math.cos(math.pi * 49 / 50)))


def test_warmup_is_linear_then_cosine_starts_at_one() -> None:
    cfg = {"name": "cosine", "epochs": 10, "warmup_epochs": 2}
    got = [lr_factor(cfg, e, s, 4) for e in range(2) for s in range(4)]
    assert got == pytest.approx([(i + 1) / 8 for i in range(8)])
    assert lr_factor(cfg, 2, 0, 4) == 1.0


def test_multistep_fractions_match_torch_multisteplr() -> None:
    cfg = {"name": "multistep", "epochs": 20, "milestones": [0.3, 0.6, 0.8], "gamma": 0.2, "warmup_epochs": 0}
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    ref = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[6, 12, 16], gamma=0.2)
    for epoch in range(20):
        assert lr_factor(cfg, epoch, 3, 7) == pytest.approx(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()


def test_lr_schedule_sets_every_group_and_round_trips() -> None:
    p1, p2 = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([{"params": [p1], "lr": 0.1}, {"params": [p2], "lr": 0.01}], lr=0.1)
    cfg = {"name": "multistep", "epochs": 10, "milestones": [5], "gamma": 0.1, "warmup_epochs": 0}
    sched = LRSchedule(opt, cfg, steps_per_epoch=3)
    assert sched.set(5, 0) == pytest.approx(0.01)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.01, 0.001])
    other = LRSchedule(opt, cfg, 3)  # built after the lrs changed: base lrs come from the state
    other.load_state_dict(sched.state_dict())
    assert other.set(0, 0) == pytest.approx(0.1)


# ---------------------------------------------------------------- run config
BASE = {
    "setup": "SAM",
    "rho": 0.05,
    "dataset": {"name": "digits"},
    "model": {"name": "small_cnn"},
    "schedule": {"epochs": 2},
}


def test_config_defaults_filled() -> None:
    cfg = C.validate(BASE)
    assert cfg["optim"]["lr"] == 0.1 and cfg["schedule"]["name"] == "multistep" and cfg["phase"] == "final"
    assert (cfg["workers"], cfg["probe_batch_size"], cfg["sharpness"]["samples"]) == (
        2,
        256,
        1024,
    )  # the study's
    assert cfg["ddp_sync_perturbation"] is True and cfg["sharpness"]["enabled"] is True
    assert C.config_hash(cfg) == C.config_hash(C.validate(dict(reversed(list(BASE.items())))))


@pytest.mark.parametrize(
    "patch, key",
    [
        ({"optim": {"lrr": 0.1}}, "optim': Additional properties are not allowed ('lrr' was unexpected"),
        ({"phase": "train"}, "phase"),
        ({"setup": None}, "setup"),
        ({"schedule": {"epochs": 0}}, "schedule.epochs"),
        ({"schedule": {"epochs": 10, "name": "multistep", "milestones": [0.5, 3]}}, "schedule.milestones"),
        ({"rho": -1}, "rho"),
        ({"batch_size": 1.5}, "batch_size"),
        ({"device": "tpu"}, "device"),
        ({"sharpness": {"enabled": "yes"}}, "sharpness.enabled"),
    ],
)
def test_config_errors_name_the_key(patch: dict, key: str) -> None:
    raw = {**BASE, **patch}
    with pytest.raises(ValueError, match=re.escape(key)):
        C.validate(raw)


def test_config_load_reads_yaml(tmp_path) -> None:
    p = tmp_path / "run.yaml"
    p.write_text("setup: SGD\ndataset: {name: digits}\nmodel: {name: small_cnn}\nschedule: {epochs: 3}\n")
    assert C.load(p)["schedule"]["epochs"] == 3
    with pytest.raises(ValueError, match="does not exist"):
        C.load(tmp_path / "missing.yaml")


# ---------------------------------------------------------------- atomic files and RNG
def test_atomic_write_keeps_old_file_when_interrupted(tmp_path, monkeypatch) -> None:
    target = tmp_path / "metrics.json"
    ckpt.atomic_write_json(target, {"a": 1})

    def boom(fd: int) -> None:  # interrupted after the bytes went to the temp file, before the rename
        raise KeyboardInterrupt

    monkeypatch.setattr(samrepro.atomic.os, "fsync", boom)
    with pytest.raises(KeyboardInterrupt):
        ckpt.atomic_write_bytes(target, b"partial")
    assert target.read_text().strip().startswith("{") and '"a": 1' in target.read_text()
    assert os.listdir(tmp_path) == ["metrics.json"]  # no temp file left behind


def test_rng_capture_restore_replays_every_generator() -> None:
    ckpt.seed_everything(3)
    state = ckpt.capture_rng()
    a = (torch.rand(3), np.random.rand(3), random.random())
    ckpt.restore_rng(state)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


# ---------------------------------------------------------------- sharpness
def test_power_iteration_finds_top_eigenvalue_of_known_hessian() -> None:
    # L(w) = 1/2 wᵀ A w on one "batch": the Hessian is A, top eigenvalue known
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))
    eig = torch.tensor([7.0, 3.0, 1.0, 0.5, -0.2, 0.1], dtype=torch.float64)
    a = q @ torch.diag(eig) @ q.T
    w = torch.randn(6, dtype=torch.float64, requires_grad=True)

    def loss_fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 0.5 * w @ a @ w

    batch = [(torch.zeros(1), torch.zeros(1))]
    lam = top_hessian_eigenvalue(loss_fn, batch, [w], iterations=200, tol=1e-10)
    assert lam == pytest.approx(7.0, rel=1e-6)


def test_hvp_matches_autograd_hessian_and_weights_batches() -> None:
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 2).double()
    xs = [torch.randn(4, 3, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)]
    ys = [torch.randint(0, 2, (4,)), torch.randint(0, 2, (2,))]
    params = list(lin.parameters())
    vec = [torch.randn_like(p) for p in params]

    def loss_fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(lin(x), y)

    got = hessian_vector_product(loss_fn, list(zip(xs, ys, strict=True)), params, vec)
    x_all, y_all = torch.cat(xs), torch.cat(ys)  # mean over all 6 samples = size-weighted batch means
    flat = torch.cat([p.detach().flatten() for p in params])

    def f(theta: torch.Tensor) -> torch.Tensor:
        w, b = theta[:6].view(2, 3), theta[6:]
        return torch.nn.functional.cross_entropy(x_all @ w.T + b, y_all)

    hess = torch.autograd.functional.hessian(f, flat)
    ref = hess @ torch.cat([v.flatten() for v in vec])
    assert torch.allclose(torch.cat([g.flatten() for g in got]), ref, atol=1e-10)
