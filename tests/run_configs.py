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


def tiny_sgd_run(**kw) -> dict:
    """The smallest run that still trains: SGD, width-4 small_cnn, 1 epoch of batch 128, no sharpness."""
    return digits_run(
        **{
            "setup": "SGD",
            "seed": 0,
            "rho": None,
            "model": {"name": "small_cnn", "kwargs": {"width": 4}},
            "schedule": {"epochs": 1},
            "batch_size": 128,
            "probe_batch_size": 16,
            "sharpness": {"enabled": False},
            **kw,
        }
    )
