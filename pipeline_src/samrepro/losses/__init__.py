"""samrepro.losses — AACE (perturbation loss of AACE-SAM / FlatFace-AACE) and authors' label smoothing."""

from .aace import aace_loss, aace_target
from .ce import cross_entropy
from .smoothing import smooth_ce

__all__ = ["aace_loss", "aace_target", "cross_entropy", "smooth_ce"]
