"""The training setups of the three papers (DESIGN.md "The algorithms") and the optimizer they use.

A Setup says which perturbation the SAM step uses, which loss drives the update, which head sits on the
backbone, and which setup it is compared against (the report's Welch t-test).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch.optim import Optimizer

from .sam import SAM, _check_rho

Task = Literal["classification", "face"]
Perturbation = Literal["none", "sam", "aace", "asam"]
UpdateLoss = Literal["ce", "smooth_ce", "margin"]
Head = Literal["linear", "arcface", "adaface"]


@dataclass(frozen=True)
class Setup:
    """One training recipe. ``perturbation`` "none" = plain SGD (one pass); others = two-pass SAM family."""

    name: str
    task: Task
    perturbation: Perturbation
    update_loss: UpdateLoss
    head: Head
    baseline: str | None

    @property
    def two_pass(self) -> bool:
        return self.perturbation != "none"


def _face(name: str, perturbation: Perturbation, head: Head, baseline: str | None) -> Setup:
    return Setup(name, "face", perturbation, "margin", head, baseline)


SETUPS: dict[str, Setup] = {
    s.name: s
    for s in (
        Setup("SGD", "classification", "none", "ce", "linear", None),
        Setup("SAM", "classification", "sam", "ce", "linear", "SGD"),
        Setup("AACE", "classification", "aace", "ce", "linear", "SAM"),
        Setup("SCE-SAM", "classification", "sam", "smooth_ce", "linear", "SAM"),
        Setup("SAACE", "classification", "aace", "smooth_ce", "linear", "SCE-SAM"),
        Setup("ASAM", "classification", "asam", "ce", "linear", "SAM"),
        _face("ArcFace", "none", "arcface", None),
        _face("AdaFace", "none", "adaface", None),
        _face("FlatFace-SAM-ArcFace", "sam", "arcface", "ArcFace"),
        _face("FlatFace-SAM-AdaFace", "sam", "adaface", "AdaFace"),
        _face("FlatFace-AACE-ArcFace", "aace", "arcface", "ArcFace"),
        _face("FlatFace-AACE-AdaFace", "aace", "adaface", "AdaFace"),
    )
}


def get_setup(name: str) -> Setup:
    """The Setup called ``name``; ValueError listing the known names otherwise."""
    try:
        return SETUPS[name]
    except KeyError:
        raise ValueError(f"setup={name!r} is unknown; known setups: {', '.join(SETUPS)}.") from None


def build_optimizer(
    setup: Setup,
    params_or_groups: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
    lr: float,
    momentum: float,
    weight_decay: float,
    nesterov: bool,
    rho: float | None,
) -> Optimizer:
    """Plain ``torch.optim.SGD`` for perturbation "none", else ``SAM`` wrapping SGD with radius ``rho``."""
    sgd_kw = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    if setup.perturbation == "none":
        return torch.optim.SGD(params_or_groups, **sgd_kw)
    if rho is None:
        raise ValueError(f"setup {setup.name!r} needs rho (its perturbation radius); got None. Set rho in the run config.")
    _check_rho(rho)
    return SAM(params_or_groups, torch.optim.SGD, rho=rho, perturbation=setup.perturbation, **sgd_kw)
