"""run.yaml contents of a small digits run, shared by the engine tests (one place to change the tiny run)."""

from __future__ import annotations


def digits_run(**kw) -> dict:
    """SAM on digits with a width-8 small_cnn, 2 epochs, single-threaded, in-process loading; `kw` overrides
    top-level keys (a nested key such as `schedule` is replaced whole)."""
    cfg = {
        "study": "t",
        "experiment": "digits",
        "setup": "SAM",
        "seed": 1,
        "rho": 0.05,
        "dataset": {"name": "digits"},
        "model": {"name": "small_cnn", "kwargs": {"width": 8}},
        "schedule": {"epochs": 2},
        "batch_size": 64,
        "probe_batch_size": 32,
        "threads": 1,
        "workers": 0,
        "sharpness": {"samples": 64, "iterations": 5},
    }
    cfg.update(kw)
    return cfg
