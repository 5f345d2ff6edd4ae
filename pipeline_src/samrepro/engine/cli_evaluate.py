"""`samrepro evaluate --run DIR [--out DIR/eval.json]`: score a trained run (DESIGN "The DAG", step 4).

Classification: test_top1, test_top5, train_acc, gap = train_acc − test_top1.
Face: benchmarks {name: {acc_mean, acc_std}} (flip test, 10 folds), verification_mean, train_acc (nearest class
weight by cosine), gap = train_acc − verification_mean.
Both: sharpness_top_eigenvalue — top Hessian eigenvalue of the training loss (CE; margin CE for face) over a
fixed subset of the un-augmented training set (same images for every run of a dataset), by power iteration.
All accuracies in percent. The run folder must hold model.pt and run.resolved.yaml (written by train).
Exit codes: 0 ok, 2 bad input (missing, corrupt or crafted run files, bad config), 4 cannot write eval.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

SHARPNESS_SEED = 7  # subset and start vector of the power iteration: fixed, identical for every run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="a run folder written by `samrepro train`")
    parser.add_argument("--out", default=None, help="where to write the JSON (default: RUN/eval.json)")
    parser.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default=None, help="override the run config's device"
    )


def sharpness(net: Any, bundle: Any, cfg: dict[str, Any], device: Any) -> float:
    """λ_max of the Hessian of the mean training loss over `sharpness.samples` fixed training images."""
    import torch
    import torch.nn.functional as F

    from samrepro.engine.evaluation import eval_mode
    from samrepro.engine.loader import get_batch
    from samrepro.engine.sharpness import top_hessian_eigenvalue

    sc = cfg["sharpness"]
    n = len(bundle.train_eval)
    gen = torch.Generator().manual_seed(SHARPNESS_SEED)
    idx = torch.randperm(n, generator=gen)[: min(int(sc["samples"]), n)].sort().values.tolist()
    bs = int(cfg["eval_batch_size"])
    batches = []
    for s in range(0, len(idx), bs):
        x, y = get_batch(bundle.train_eval, idx[s : s + bs])
        batches.append((x.to(device), y.to(device)))

    def loss_fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(net(x, y).float(), y)

    params = [p for p in net.parameters() if p.requires_grad]
    with eval_mode(net), torch.enable_grad():
        return top_hessian_eigenvalue(
            loss_fn, batches, params, iterations=int(sc["iterations"]), seed=SHARPNESS_SEED
        )


def evaluate_run(run_dir: str | Path, device: str | None = None) -> dict[str, Any]:
    """Every figure of eval.json for the run in `run_dir`."""
    from samrepro.engine.records import eval_split, run_identity

    t0 = time.perf_counter()
    cfg, rt, bundle, net = load_trained(Path(run_dir), device)
    out: dict[str, Any] = {**run_identity(cfg), "task": bundle.task, "split": eval_split(cfg)}
    out.update(accuracies(net, bundle, int(cfg["eval_batch_size"]), rt))
    out.update(sharpness_figures(net, bundle, cfg, rt.device))
    out["eval_time_s"] = time.perf_counter() - t0
    return out


def load_trained(run_dir: Path, device: str | None) -> tuple[dict[str, Any], Any, Any, Any]:
    """(config, runtime, data bundle, network with the trained weights on the device) of a run folder."""
    from samrepro.engine import checkpoint as ckpt
    from samrepro.engine import config as config_mod
    from samrepro.engine import trainer
    from samrepro.optim import get_setup

    model_path, cfg_path = run_dir / trainer.MODEL, run_dir / trainer.RESOLVED_CONFIG
    for p in (model_path, cfg_path):
        if not p.is_file():
            raise ValueError(
                f"--run {str(run_dir)!r}: {p.name} is missing; train the run first "
                f"(samrepro train --config run.yaml --out {run_dir})"
            )
    cfg = config_mod.load(cfg_path)
    if device is not None:
        cfg["device"] = device
    rt = trainer.resolve_runtime(cfg)
    setup = get_setup(cfg["setup"])
    bundle = trainer.load_data(cfg)
    net = trainer.build_network(cfg, setup, bundle)
    try:
        net.load_state_dict(ckpt.torch_load(model_path)["model"])
    except (RuntimeError, TypeError, AttributeError) as exc:  # tensors that are not this run's network
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ckpt.CheckpointError(
            f"{model_path}: its weights do not fit the network of {cfg_path} ({first}); "
            f"retrain the run (snakemake --forcerun {model_path})"
        ) from exc
    net.to(rt.device)
    if rt.channels_last:
        import torch

        net = net.to(memory_format=torch.channels_last)
    return cfg, rt, bundle, net


def accuracies(net: Any, bundle: Any, bs: int, rt: Any) -> dict[str, Any]:
    """Face: benchmarks, verification_mean, train_acc, gap; classification: test_top1/5, train_acc, gap."""
    from samrepro.engine.evaluation import (
        classification_accuracy,
        face_train_accuracy,
        mean_verification,
        verification_accuracy,
    )

    out: dict[str, Any] = {}
    if bundle.task == "face":
        scores = verification_accuracy(net, bundle.verification, bs, rt.device, rt.amp, rt.channels_last)
        out["benchmarks"] = scores
        out["verification_mean"] = mean_verification(scores)
        out["train_acc"] = face_train_accuracy(
            net, bundle.train_eval, bs, rt.device, rt.amp, rt.channels_last
        )
        out["gap"] = out["train_acc"] - out["verification_mean"]
    else:
        test = classification_accuracy(net, bundle.eval, bs, rt.device, rt.amp, rt.channels_last)
        out["test_top1"], out["test_top5"] = test["top1"], test["top5"]
        out["train_acc"] = classification_accuracy(
            net, bundle.train_eval, bs, rt.device, rt.amp, rt.channels_last
        )["top1"]
        out["gap"] = out["train_acc"] - out["test_top1"]
    return out


def sharpness_figures(net: Any, bundle: Any, cfg: dict[str, Any], device: Any) -> dict[str, Any]:
    """sharpness_top_eigenvalue (None when disabled) and how it was measured."""
    if not cfg["sharpness"]["enabled"]:
        return {"sharpness_top_eigenvalue": None}
    return {
        "sharpness_top_eigenvalue": sharpness(net, bundle, cfg, device),
        "sharpness": {
            "samples": min(int(cfg["sharpness"]["samples"]), len(bundle.train_eval)),
            "iterations": int(cfg["sharpness"]["iterations"]),
            "loss": "cross_entropy",
        },
    }


def run(args: argparse.Namespace) -> int:
    from samrepro.engine.checkpoint import atomic_write_json

    try:
        result = evaluate_run(args.run, args.device)
    except ValueError as exc:
        print(f"samrepro evaluate: error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(args.run) / "eval.json"
    atomic_write_json(out, result)
    main = result.get("test_top1", result.get("verification_mean"))
    print(
        f"samrepro evaluate: {args.run}: {'top-1' if 'test_top1' in result else 'verification'} {main:.2f}% "
        f"train {result['train_acc']:.2f}% gap {result['gap']:.2f} "
        f"sharpness {result['sharpness_top_eigenvalue']} -> {out}",
        flush=True,
    )
    return 0
