"""The training setups of the three papers (DESIGN.md "The algorithms") and the optimizer they use.

A Setup says which perturbation the SAM step uses, which loss drives the update, which head sits on the
backbone, and which setup it is compared against (the report's Welch t-test). The table itself lives in
the torch-free `samrepro.catalog` (re-exported here: SETUPS, Setup, get_setup); this module builds the
optimizer a setup needs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from samrepro.catalog import SETUPS, Setup, get_setup

from .sam import SAM, _check_rho

__all__ = ["SETUPS", "Setup", "build_optimizer", "get_setup"]


def build_optimizer(
    setup: Setup,
    params_or_groups: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
    lr: float,
    momentum: float,
    weight_decay: float,
    nesterov: bool,
    rho: float | None,
    asam: dict[str, Any] | None = None,
) -> Optimizer:
    """Plain ``torch.optim.SGD`` for perturbation "none", else ``SAM`` wrapping SGD with radius ``rho``;
    ``asam`` ({scope, eta}, the run config's optim.asam) sets ASAM's operator T (sam.py)."""
    sgd_kw = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    if setup.perturbation == "none":
        return torch.optim.SGD(params_or_groups, **sgd_kw)
    if rho is None:
        raise ValueError(
            f"setup {setup.name!r} needs rho (its perturbation radius); got None. Set rho in the run config."
        )
    _check_rho(rho)
    extra = {}
    if setup.perturbation == "asam" and asam:
        extra = {"asam_eta": float(asam["eta"]), "asam_scope": asam["scope"]}  # schema-filled run config
    return SAM(params_or_groups, torch.optim.SGD, rho=rho, perturbation=setup.perturbation, **extra, **sgd_kw)
