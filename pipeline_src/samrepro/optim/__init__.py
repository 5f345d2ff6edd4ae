"""samrepro.optim — SAM-family optimizer, the papers' setups, and the one/two-pass training step."""

from .sam import PERTURBATIONS, SAM
from .setups import SETUPS, Setup, build_optimizer, get_setup
from .step import StepResult, frozen_running_stats, train_step

__all__ = [
    "PERTURBATIONS",
    "SAM",
    "SETUPS",
    "Setup",
    "StepResult",
    "build_optimizer",
    "frozen_running_stats",
    "get_setup",
    "train_step",
]
