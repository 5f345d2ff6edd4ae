"""Issue 8, item 8: properties the suite asserted only loosely, pinned exactly, so that the plausible one-line
bugs of a mutation run fail a test: the tuning phase's data split, the reported training loss, the
normalisation statistics, every recipe default, the last-batch rule and SAM's ε at a zero gradient."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from run_configs import tiny_sgd_run
from torch import nn

from samrepro import data
from samrepro.cli import main
from samrepro.engine import checkpoint as ckpt
from samrepro.engine import config as engine_config
from samrepro.engine.loader import epoch_batches, steps_per_epoch
from samrepro.models import Network
from samrepro.optim import SAM, get_setup
from samrepro.optim.step import train_step, update_loss_fn
from samrepro.study.config import validate_schema

TINY = tiny_sgd_run(seed=3, phase="tune", dataset={"name": "digits", "val_fraction": 0.2, "split_seed": 5})


def top1(net: nn.Module, dataset) -> float:
    x, y = dataset.get_batch(list(range(len(dataset))))
    with torch.no_grad():
        return 100.0 * float((net(x).argmax(dim=1) == torch.as_tensor(y)).double().mean())


# -------------------------------------------------------------- the tuning phase never sees the test set
@pytest.mark.parametrize("phase", ["tune", "final"])
def test_each_phase_trains_and_scores_on_its_own_split(tmp_path, phase: str) -> None:
    """ρ is chosen on eval_acc of tuning runs: it must be the validation split's accuracy, and the training
    must exclude the validation images (not just carry the label eval_split: val); a final run trains on the
    whole training set and scores the test set."""
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({**TINY, "phase": phase}))
    out = tmp_path / "run"
    assert main(["train", "--config", str(tmp_path / "run.yaml"), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    ds = TINY["dataset"]
    tune = data.build(
        "digits", None, use_validation=True, val_fraction=ds["val_fraction"], split_seed=ds["split_seed"]
    )
    final = data.build("digits", None, use_validation=False)
    own, other = (tune, final) if phase == "tune" else (final, tune)
    assert len(tune.train) < len(final.train)
    assert ckpt.torch_load(out / "checkpoint.pt")["timing"]["images"] == len(own.train)

    net = Network.build(get_setup("SGD"), "small_cnn", 10, model_kw={"width": 4, "in_channels": 1})
    net.load_state_dict(ckpt.torch_load(out / "model.pt")["model"])
    net.eval()
    on_own, on_other = top1(net, own.eval), top1(net, other.eval)
    one_image = 100.0 / min(len(tune.eval), len(final.eval))
    assert abs(on_own - on_other) > one_image  # the two splits tell apart for this seed
    assert metrics["eval_acc"] == pytest.approx(on_own, abs=one_image + 1e-9)
    assert metrics["selection_score"] == metrics["eval_acc"]


# ------------------------------------------------------------------ the reported training loss per setup
class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.fc(x)


@pytest.mark.parametrize("name", ["SGD", "SAM", "AACE", "SCE-SAM", "SAACE", "ASAM"])
def test_reported_train_loss_is_the_update_loss_at_w(name: str) -> None:
    """history's train_loss is the setup's update loss (CE or smoothed CE) on the first-pass logits — for AACE
    setups never the AACE perturbation loss."""
    torch.manual_seed(0)
    setup, net = get_setup(name), _Tiny()
    x, y = torch.randn(12, 6), torch.randint(0, 5, (12,))
    opt = (
        SAM(net.parameters(), torch.optim.SGD, rho=0.05, perturbation=setup.perturbation, lr=0.1)
        if setup.two_pass
        else torch.optim.SGD(net.parameters(), lr=0.1)
    )
    result = train_step(net, opt, setup, x, y, label_smoothing=0.1)
    expected = update_loss_fn(setup, 0.1)(result.logits, y)
    assert float(result.loss) == pytest.approx(float(expected), rel=1e-6)
    if setup.perturbation == "aace":
        from samrepro.losses import aace_loss

        assert abs(float(result.loss) - float(aace_loss(result.logits, y))) > 1e-3


# ----------------------------------------------------------------- normalisation from training pixels only
@pytest.mark.parametrize("name", ["digits", "digits_openset"])
def test_normalisation_statistics_come_from_the_training_images_only(name: str) -> None:
    """Normalised un-augmented training images have mean 0 and std 1 exactly when the statistics are theirs;
    statistics over train+test (or over unseen identities) leave an offset."""
    bundle = data.build(name, None, use_validation=False)
    x, _ = bundle.train_eval.get_batch(list(range(len(bundle.train_eval))))
    x = x.double()
    assert abs(float(x.mean())) < 1e-5 and abs(float(x.std(unbiased=False)) - 1.0) < 1e-5


# ------------------------------------------------------------------------- every recipe default, not one
RECIPE = {  # docs/DESIGN.md "Recipes the authors' code uses"; the schema is the only place they live
    "optim": {"lr": 0.1, "momentum": 0.9, "weight_decay": 5.0e-4, "nesterov": False, "label_smoothing": 0.1},
    "schedule": {"name": "multistep", "milestones": [0.3, 0.6, 0.8], "gamma": 0.2, "warmup_epochs": 0},
    "rho_grid": [0.01, 0.02, 0.05, 0.1, 0.2, 0.5],
    "epochs": 200,
    "seeds": [0, 1, 2],
    "batch_size": 128,
    "embedding_dim": 512,
}


def test_every_recipe_default_of_an_experiment() -> None:
    cfg = validate_schema(
        {
            "study": "s",
            "experiments": {
                "e": {"dataset": {"name": "digits"}, "model": {"name": "small_cnn"}, "setups": ["SGD"]}
            },
        }
    )
    exp = cfg["experiments"]["e"]
    for key, value in RECIPE.items():
        got = {k: exp[key][k] for k in value} if isinstance(value, dict) else exp[key]
        assert got == value, key
    assert exp["dataset"]["val_fraction"] == 0.1 and exp["tune"]["seeds"] == [0]


def test_every_recipe_default_of_a_run_yaml() -> None:
    cfg = engine_config.validate(
        {
            "setup": "SAM",
            "rho": 0.05,
            "dataset": {"name": "digits"},
            "model": {"name": "small_cnn"},
            "schedule": {"epochs": 3},
        }
    )
    assert {k: cfg["optim"][k] for k in RECIPE["optim"]} == RECIPE["optim"]
    for key in ("name", "gamma", "warmup_epochs"):
        assert cfg["schedule"][key] == RECIPE["schedule"][key], key
    assert cfg["batch_size"] == RECIPE["batch_size"] and cfg["embedding_dim"] == RECIPE["embedding_dim"]
    assert cfg["dataset"]["val_fraction"] == 0.1 and cfg["dataset"]["split_seed"] == 0


# --------------------------------------------------------------------------------- the last-batch rule
def _expected_sizes(n: int, bs: int, min_last: int) -> list[int]:
    """Full batches of `bs`, then the remainder, which is dropped when it is smaller than `min_last` and not
    the only batch."""
    full, rest = divmod(n, bs)
    sizes = [bs] * full + ([rest] if rest else [])
    return sizes[:-1] if full and 0 < rest < min_last else sizes


@pytest.mark.parametrize("min_last", [1, 2, 4])
def test_steps_per_epoch_and_epoch_batches_follow_the_last_batch_rule_exactly(min_last: int) -> None:
    for n in range(1, 70):
        for bs in range(1, 12):
            sizes = _expected_sizes(n, bs, min_last)
            assert steps_per_epoch(n, bs, min_last=min_last) == len(sizes), (n, bs, min_last)
            batches = epoch_batches(n, bs, torch.Generator().manual_seed(n), min_last=min_last)
            assert [len(b) for b in batches] == sizes, (n, bs, min_last)
            flat = [i for b in batches for i in b]
            assert len(set(flat)) == len(flat) and set(flat) <= set(range(n))


# ---------------------------------------------------------------------------- SAM's ε at a zero gradient
@pytest.mark.parametrize("perturbation", ["sam", "asam", "aace"])
@pytest.mark.parametrize("grad", [0.0, 1e-30])
def test_sam_first_step_is_finite_when_the_gradient_is_zero_or_underflows(
    perturbation: str, grad: float
) -> None:
    """A fitted batch can give an exactly zero (or float32-underflowing) gradient: ε must be 0 (or tiny),
    never NaN/inf, and second_step must restore w bitwise."""
    torch.manual_seed(0)
    params = [nn.Parameter(torch.randn(4, 3)), nn.Parameter(torch.randn(3))]
    before = [p.detach().clone() for p in params]
    opt = SAM(params, torch.optim.SGD, rho=0.05, perturbation=perturbation, lr=0.1)
    for p in params:
        p.grad = torch.full_like(p, grad)
    opt.first_step(zero_grad=False)
    for p, b in zip(params, before, strict=True):
        assert torch.isfinite(p).all()
        assert torch.allclose(p, b, atol=1e-6)
        if grad == 0.0:
            assert torch.equal(p.detach(), b)
    opt.second_step(zero_grad=True)
    assert all(torch.isfinite(p).all() for p in params)
