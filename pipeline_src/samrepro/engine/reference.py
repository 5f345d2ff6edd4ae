"""`samrepro reference --config run.yaml --out pixels.json`: the raw-pixel verification reference.

What a face experiment's verification accuracy would be with no learning at all: the embedding of an image is
its pixels, f(x) = vec(x), exactly as the trained networks receive them (the experiment's evaluation
transform: scaled, normalized by the training pixels' mean and std, un-augmented). Everything after f is the
protocol the trained runs are scored with (`engine.verification.verify`, the same code path): the flip test
e = normalize(f(x) + f(mirror x)), the squared Euclidean distance of a pair's two embeddings, the 10 folds in
order and the best of the thresholds 0.00 … 3.99 on nine folds scoring the tenth; the same pairs, because the
benchmarks come from the same dataset build (`trainer.load_data` of a final run's config).

Output (shaped like a face eval.json): {"experiment", "name": "raw pixels", "task": "face",
"benchmarks": {name: {acc_mean, acc_std}}, "verification_mean", "embedding": "pixels", "flip_test": true,
"embedding_dim"}. Exit codes: 0 ok, 2 bad input (missing or bad run.yaml, not a face dataset).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

NAME = "raw pixels"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="a final run's run.yaml (written by `samrepro plan`)")
    parser.add_argument("--out", required=True, help="where to write the JSON (atomically)")


def pixel_embed(x: Any) -> Any:
    """f(x) = the image's pixels as one vector."""
    return x.flatten(1)


def pixel_reference(cfg: dict[str, Any]) -> dict[str, Any]:
    """Every figure of pixels.json for the face experiment of the run config `cfg`."""
    import torch

    from samrepro.engine.evaluation import mean_verification
    from samrepro.engine.trainer import load_data
    from samrepro.engine.verification import verify

    bundle = load_data({**cfg, "phase": "final"})
    if bundle.task != "face":
        raise ValueError(
            f"dataset {cfg['dataset']['name']!r} is a {bundle.task} dataset; the pixel reference "
            "is a face-verification row (give the run.yaml of a face experiment)"
        )
    device = torch.device("cpu")
    scores = {
        name: verify(pixel_embed, vs.images, vs.issame, int(cfg["eval_batch_size"]), device)
        for name, vs in bundle.verification.items()
    }
    return {
        "study": cfg["study"],
        "experiment": cfg["experiment"],
        "name": NAME,
        "task": "face",
        "benchmarks": scores,
        "verification_mean": mean_verification(scores),
        "embedding": "pixels",
        "flip_test": True,
        "embedding_dim": int(torch.Size(bundle.input_shape).numel()),
    }


def run(args: argparse.Namespace) -> int:
    from samrepro.atomic import atomic_write_json
    from samrepro.engine import config as config_mod

    try:
        result = pixel_reference(config_mod.load(args.config))
    except ValueError as exc:
        print(f"samrepro reference: error: {exc}", file=sys.stderr)
        return 2
    atomic_write_json(Path(args.out), result)
    table = ", ".join(f"{k} {v['acc_mean']:.2f}%" for k, v in result["benchmarks"].items())
    print(f"samrepro reference: {result['experiment']}: raw pixels {table} -> {args.out}", flush=True)
    return 0
