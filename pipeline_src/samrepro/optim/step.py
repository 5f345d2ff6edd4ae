"""One training step for any setup — DESIGN.md "The algorithms" and "Second pass hygiene".

One pass (perturbation "none"): update loss → backward → SGD step.
Two passes (SAM family): perturbation loss at w → backward → ``first_step`` (w + ε) → update loss at w + ε →
backward → ``second_step`` (restore w, base step). The perturbation loss is CE (margin logits for face setups)
for "sam"/"asam", AACE for "aace"; label smoothing applies to the update loss only.

BatchNorm running statistics and AdaFace's EMA are updated once per step, in the first pass: during the
second pass every BatchNorm runs with ``track_running_stats=False`` (it normalizes with batch statistics, as
in training, but touches no buffer — not even ``num_batches_tracked``) and every module with an
``update_stats`` flag (AdaFace) has it cleared.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim import Optimizer

from ..losses import aace_loss, cross_entropy, smooth_ce
from .sam import SAM
from .setups import Setup

LossFn = Callable[[Tensor, Tensor], Tensor]


@dataclass
class StepResult:
    """``loss``: the update loss at w (first pass, before the step), a detached 0-dim tensor on the device;
    ``logits``: detached first-pass logits. Nothing is read back to the host: ``float(result.loss)`` is the
    caller's choice (the engine reads its losses once every ``sync_every`` steps)."""

    loss: Tensor
    logits: Tensor


def update_loss_fn(setup: Setup, label_smoothing: float = 0.1) -> LossFn:
    """The loss the base optimizer descends: CE, the authors' smoothed CE, or CE on margin logits."""
    if setup.update_loss == "smooth_ce":
        return lambda z, y: smooth_ce(z, y, alpha=label_smoothing)
    if setup.update_loss in ("ce", "margin"):
        return cross_entropy
    raise ValueError(
        f"setup {setup.name!r}: update_loss={setup.update_loss!r} is not ce | smooth_ce | margin."
    )


def perturbation_loss_fn(setup: Setup) -> LossFn:
    """AACE for "aace" (ε = −ρ∇L_AACE), CE for "sam"/"asam" (ε from ∇L_CE, or ∇L_margin for face)."""
    if setup.perturbation == "aace":
        return aace_loss
    if setup.perturbation in ("sam", "asam"):
        return cross_entropy
    raise ValueError(f"setup {setup.name!r} has no perturbation step (perturbation={setup.perturbation!r}).")


_STAT_MODULES: weakref.WeakKeyDictionary[nn.Module, tuple[list[_BatchNorm], list[nn.Module]]] = (
    weakref.WeakKeyDictionary()
)


def _stat_modules(net: nn.Module) -> tuple[list[_BatchNorm], list[nn.Module]]:
    """BatchNorms and EMA holders of ``net``, cached (walking the module tree every step costs on big nets)."""
    cached = _STAT_MODULES.get(net)
    if cached is None:
        mods = list(net.modules())
        cached = (
            [m for m in mods if isinstance(m, _BatchNorm)],
            [m for m in mods if hasattr(m, "update_stats")],
        )
        _STAT_MODULES[net] = cached
    return cached


@contextmanager
def frozen_running_stats(net: nn.Module) -> Iterator[None]:
    """Within the block, BN layers use batch statistics without updating buffers; AdaFace's EMA is frozen."""
    norms, emas = _stat_modules(net)
    norms = [m for m in norms if m.track_running_stats]
    emas = [m for m in emas if m.update_stats]
    for m in norms:
        m.track_running_stats = False
    for m in emas:
        m.update_stats = False
    try:
        yield
    finally:
        for m in norms:
            m.track_running_stats = True
        for m in emas:
            m.update_stats = True


def train_step(
    net: nn.Module,
    optimizer: Optimizer,
    setup: Setup,
    inputs: Tensor,
    targets: Tensor,
    label_smoothing: float = 0.1,
) -> StepResult:
    """The full one- or two-pass step of ``setup``; zero-grads itself. ``net(inputs, targets) -> logits``."""
    update_loss = update_loss_fn(setup, label_smoothing)
    if not setup.two_pass:
        optimizer.zero_grad(set_to_none=True)
        logits = net(inputs, targets)
        loss = update_loss(logits, targets)
        loss.backward()
        optimizer.step()
        return StepResult(loss.detach(), logits.detach())

    if not isinstance(optimizer, SAM):
        raise ValueError(
            f"setup {setup.name!r} is two-pass and needs a samrepro.optim.SAM optimizer; got {type(optimizer).__name__}."
        )
    perturb_loss = perturbation_loss_fn(setup)
    optimizer.zero_grad(set_to_none=True)
    logits = net(inputs, targets)
    loss1 = perturb_loss(logits, targets)
    loss1.backward()
    logits = logits.detach()
    if perturb_loss is update_loss:
        reported = loss1.detach()
    else:
        with torch.no_grad():
            reported = update_loss(logits, targets)
    optimizer.first_step(zero_grad=True)
    with frozen_running_stats(net):
        update_loss(net(inputs, targets), targets).backward()
    optimizer.second_step(zero_grad=False)  # grads stay until the next step's zero_grad, as in the SGD path
    return StepResult(reported, logits)
