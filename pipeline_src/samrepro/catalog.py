"""Every name samrepro knows — training setups, datasets, backbones — in one torch-free table.

Everything that lists names reads them from here: the study schema's enums (filled in by
`samrepro.schema`), study validation (the task of a setup and of a dataset, the rho-free setups) and the
registries, which refuse a name missing here (`optim.setups`, `data.registry`, `models`). Adding a setup,
dataset or backbone is one entry here plus its implementation (tests/test_catalog.py checks that every
entry has one and that no other name list exists).

A setup's task must equal its dataset's task; a setup compares against its `baseline` in the report
(Welch t-test); a setup is rho-free iff its perturbation is "none" (plain SGD: one pass, no rho to tune).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

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

    @property
    def rho_free(self) -> bool:
        """No perturbation, hence no rho: never tuned, and a rho given for it is an error."""
        return self.perturbation == "none"


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

# Dataset name -> task. Face datasets train an embedding with a margin head and are scored by verification.
DATASETS: dict[str, Task] = {
    "digits": "classification",
    "digits_openset": "face",
    "cifar10": "classification",
    "cifar100": "classification",
    "fashion_mnist": "classification",
    "food101": "classification",
    "imagenet": "classification",
    "face_rec": "face",
    "face_folder": "face",
    "casia_webface": "face",
    "ms1mv2": "face",
}

# Backbone names (samrepro.models.build); embedding backbones serve both tasks.
MODELS: tuple[str, ...] = (
    "small_cnn",
    "wrn28_10",
    "wrn",
    "pyramidnet",
    "resnet50",
    "iresnet18",
    "iresnet34",
    "iresnet50",
    "iresnet100",
)


def _unknown(kind: str, name: str, known: Iterable[str]) -> ValueError:
    return ValueError(
        f"{kind}={name!r} is unknown; known {kind}s: {', '.join(known)}. "
        f"(A new {kind} needs an entry in samrepro/catalog.py and its implementation.)"
    )


def get_setup(name: str) -> Setup:
    """The Setup called ``name``; ValueError listing the known names otherwise."""
    if name not in SETUPS:
        raise _unknown("setup", name, SETUPS)
    return SETUPS[name]


def dataset_task(name: str) -> Task:
    """The task of dataset ``name`` (classification or face); ValueError listing the known names otherwise."""
    if name not in DATASETS:
        raise _unknown("dataset", name, DATASETS)
    return DATASETS[name]


def setups_of_task(task: str) -> list[str]:
    return [name for name, s in SETUPS.items() if s.task == task]
