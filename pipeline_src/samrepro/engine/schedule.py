"""Learning-rate schedules: cosine or multistep (DESIGN recipe: ×0.2 at 30/60/80 % of the epochs), with an
optional linear warmup.

The learning rate is a pure function of (epoch, step within epoch): nothing accumulates, so a resumed run
(even one resumed in the middle of an epoch) sets exactly the learning rate the uninterrupted run had. The
schedule writes the `lr` of every parameter group of the optimizer it is given; SAM's param_groups are its
base optimizer's (docs/ARCHITECTURE.md Part A), so this works on SGD and SAM alike.
"""

from __future__ import annotations

import math
from typing import Any

from samrepro.engine.config import resolve_milestones


def lr_factor(cfg: dict[str, Any], epoch: int, step: int, steps_per_epoch: int) -> float:
    """Multiplier of the base learning rate at `step` of `epoch` (both 0-based).

    Warmup: linear from 1/warmup_steps to 1 over the first `warmup_epochs` (per step). Cosine: per step,
    0.5·(1 + cos(π·t/T)) with t, T counted after the warmup. Multistep: gamma^(number of milestones ≤ epoch),
    changing at epoch boundaries as torch's MultiStepLR does.
    """
    if steps_per_epoch <= 0:
        raise ValueError(f"steps_per_epoch={steps_per_epoch} must be > 0 (is the training set empty?)")
    epochs = int(cfg["epochs"])
    warmup_steps = int(round(float(cfg.get("warmup_epochs", 0)) * steps_per_epoch))
    global_step = epoch * steps_per_epoch + step
    if global_step < warmup_steps:
        return (global_step + 1) / warmup_steps
    if cfg["name"] == "cosine":
        total = epochs * steps_per_epoch - warmup_steps
        t = global_step - warmup_steps
        return 0.5 * (1.0 + math.cos(math.pi * min(t, total) / max(total, 1)))
    if cfg["name"] == "multistep":
        milestones = resolve_milestones(list(cfg["milestones"]), epochs)
        return float(cfg["gamma"]) ** sum(1 for m in milestones if epoch >= m)
    raise ValueError(f"schedule.name={cfg['name']!r} is invalid: choose cosine or multistep")


class LRSchedule:
    """Sets the learning rate of each param group to base_lr × lr_factor before every optimizer step."""

    def __init__(self, optimizer: Any, cfg: dict[str, Any], steps_per_epoch: int) -> None:
        self.optimizer = optimizer
        self.cfg = dict(cfg)
        self.steps_per_epoch = steps_per_epoch
        self.base_lrs = [float(g["lr"]) for g in optimizer.param_groups]
        self.last_lr = self.base_lrs[0] if self.base_lrs else 0.0

    def set(self, epoch: int, step: int) -> float:
        """Apply the learning rate of (epoch, step); returns the first group's lr (the one logged)."""
        factor = lr_factor(self.cfg, epoch, step, self.steps_per_epoch)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * factor
        self.last_lr = self.base_lrs[0] * factor
        return self.last_lr

    def state_dict(self) -> dict[str, Any]:
        return {
            "base_lrs": list(self.base_lrs),
            "cfg": dict(self.cfg),
            "steps_per_epoch": self.steps_per_epoch,
            "last_lr": self.last_lr,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["base_lrs"]) != len(self.optimizer.param_groups):
            raise ValueError(
                "checkpoint scheduler has a different number of parameter groups; start a new run"
            )
        self.base_lrs = [float(x) for x in state["base_lrs"]]
        self.last_lr = float(state.get("last_lr", self.base_lrs[0]))
