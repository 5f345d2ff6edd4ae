"""samrepro: reproduce AACE-SAM, SAM + label smoothing + AACE, and FlatFace (see DESIGN.md)."""

__version__ = "0.1.0"
