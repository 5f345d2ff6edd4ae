"""GPU acceptance check (`make gpu-check`): one short run that gives every figure the cluster needs, no dataset.

1. torch / CUDA / cuDNN versions and the device's name;
2. through the engine's own epoch loop (`trainer.prepare` + `trainer.run_epoch`: device-resident data, batched
   augmentation on the device, host reads every `sync_every` steps) on CIFAR-shaped random uint8 images:
   images/s of the SGD, SAM and AACE steps in fp32 and in bf16 + channels_last, the SAM/SGD and AACE/SGD step
   time ratios (ideal 2), bf16 speed-up, peak device memory, host reads per 100 steps (Tensor → Python
   conversions in the loop, and on CUDA also the synchronisations torch's sync-debug mode reports), SAM bf16 at
   sync_every 1 vs the default (what the sync removal buys), and the loader's images/s on device-resident data;
3. the tiny study (both tracks, one epoch) end to end through Snakemake with `device: <device>`, checking the
   report and that every run trained on that device.

    .venv/bin/python bench/gpu_check.py                                     # CUDA: WRN-28-10, batch 256
    .venv/bin/python bench/gpu_check.py --device cpu --model small_cnn --batch-size 16 --steps 2 --no-study

Targets on an H100-class GPU (issue 9): SAM bf16 >= 2x its fp32 images/s, SAM/SGD <= 2.05, <= 1 host sync per
50 steps. The JSON (--json, default results/gpu_check.json) holds every figure and the pass/fail of each target.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
SETUPS = ("SGD", "SAM", "AACE")
PRECISIONS = {
    "fp32": {"amp": "off", "channels_last": "false"},
    "bf16": {"amp": "bf16", "channels_last": "true"},
}
TARGETS = {"sam_bf16_speedup_min": 2.0, "sam_over_sgd_max": 2.05, "host_syncs_per_50_steps_max": 1}


def environment(device: torch.device) -> dict[str, Any]:
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "device": str(device),
        "host": platform.node(),
    }
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
        env["device_count"] = torch.cuda.device_count()
        env["bf16_supported"] = torch.cuda.is_bf16_supported()
        env["memory_gib"] = round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1)
    else:
        env["device_name"] = platform.processor() or platform.machine()
        env["threads"] = torch.get_num_threads()
    return env


def synthetic_bundle(n: int, num_classes: int = 10) -> Any:
    """CIFAR-shaped random uint8 images with the CIFAR-10 recipe's augmentation (crop 4, flip, cutout 16)."""
    from samrepro.data.datasets import TensorImageDataset
    from samrepro.data.registry import DataBundle
    from samrepro.data.transforms import CIFAR10_MEAN, CIFAR10_STD, BatchTransform

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, num_classes, (n,), generator=g)
    tf = BatchTransform(CIFAR10_MEAN, CIFAR10_STD, train=True, crop_padding=4, flip=True, cutout=16)
    train = TensorImageDataset(images, labels, tf)
    small = TensorImageDataset(images[:64], labels[:64], tf.eval_copy())
    return DataBundle(
        name="cifar10",
        task="classification",
        num_classes=num_classes,
        input_shape=(3, 32, 32),
        train=train,
        train_eval=small,
        eval=small,
    )


def run_config(args: argparse.Namespace, setup: str, precision: str, sync_every: int | None = None) -> dict:
    from samrepro.engine import config as C

    cfg = {
        "study": "gpu_check",
        "experiment": "synthetic",
        "setup": setup,
        "seed": 0,
        "rho": None if setup == "SGD" else 0.05,
        "dataset": {"name": "cifar10"},
        "model": {"name": args.model, "kwargs": json.loads(args.model_kwargs)},
        "schedule": {"name": "cosine", "epochs": 10},
        "batch_size": args.batch_size,
        "workers": 0,
        "device": args.device,
        "data_on_device": "true",
        "probe_batch_size": 16,
        **PRECISIONS[precision],
    }
    if sync_every is not None:
        cfg["sync_every"] = sync_every
    return C.validate(cfg)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def cuda_sync_warnings(device: torch.device, counter: dict[str, int]):
    """Count the synchronising CUDA calls torch's sync-debug mode reports inside the block (CUDA only)."""
    if device.type != "cuda":
        yield
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode("default")
    counter["n"] = sum("synchroniz" in str(w.message).lower() for w in caught)


def measure(
    args: argparse.Namespace, bundle: Any, setup: str, precision: str, sync_every: int | None = None
) -> dict[str, Any]:
    """Images/s of one timed epoch (as many steps as `bundle` has batches) after a warm-up epoch, through
    trainer.run_epoch; the host reads and (CUDA) synchronisations inside the timed epoch."""
    from samrepro.engine import trainer
    from samrepro.engine.records import Progress
    from samrepro.engine.window import HostReads

    cfg = run_config(args, setup, precision, sync_every)
    real_load = trainer.load_data  # the engine's data hook: the synthetic bundle instead of a dataset on disk
    trainer.load_data = lambda _cfg: bundle
    try:
        with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
            run = trainer.prepare(cfg, Path(tmp), trainer.StopFlag())
    finally:
        trainer.load_data = real_load
    run.train_net = run.net
    state = trainer.RunState(epoch_gen_state=run.generator.get_state())
    progress = Progress("gpu_check", 1, stream=io.StringIO())
    device = run.rt.device
    trainer.run_epoch(run, state, progress)  # warm-up: allocator, cuDNN autotuning
    state.step = 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    syncs: dict[str, int] = {}
    _sync(device)
    with HostReads() as reads, cuda_sync_warnings(device, syncs):
        t = time.perf_counter()
        trainer.run_epoch(run, state, progress)
        _sync(device)
        seconds = time.perf_counter() - t
    out = {
        "images_per_s": run.steps * args.batch_size / seconds,
        "step_s": seconds / run.steps,
        "host_reads_per_100_steps": 100.0 * reads.count / run.steps,
        "sync_every": int(cfg["sync_every"]),
        "amp": "bf16" if run.rt.amp else "off",
        "channels_last": run.rt.channels_last,
    }
    if device.type == "cuda":
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        out["cuda_syncs_per_100_steps"] = 100.0 * syncs.get("n", 0) / run.steps
    if not math.isfinite(state.sums["loss"]):
        raise SystemExit(f"gpu_check: {setup} {precision}: the training loss is not finite")
    return out


def loader_rate(args: argparse.Namespace, bundle: Any, device: torch.device) -> float:
    """Images/s of the device-resident loader alone (index, crop, flip, normalise, cutout on the device)."""
    from samrepro.engine.loader import DeviceData

    data = DeviceData(bundle.train, device)
    gen = torch.Generator().manual_seed(0)
    for _ in data.batches(data.epoch_indices(args.batch_size, gen)):
        pass
    _sync(device)
    t = time.perf_counter()
    n = 0
    for _ in range(3):
        for _x, y in data.batches(data.epoch_indices(args.batch_size, gen)):
            n += int(y.shape[0])
    _sync(device)
    return n / (time.perf_counter() - t)


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    bundle = synthetic_bundle(args.batch_size * args.steps)
    res: dict[str, Any] = {
        "model": args.model,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "runs": {},
    }
    for precision in PRECISIONS:
        for setup in SETUPS:
            r = measure(args, bundle, setup, precision)
            res["runs"][f"{setup}/{precision}"] = r
            print(
                f"  {setup:5s} {precision}: {r['images_per_s']:9.1f} images/s, "
                f"{r['host_reads_per_100_steps']:.1f} host reads/100 steps"
                + (f", peak {r['peak_memory_gib']:.2f} GiB" if "peak_memory_gib" in r else ""),
                flush=True,
            )
    r1 = measure(args, bundle, "SAM", "bf16", sync_every=1)
    res["runs"]["SAM/bf16/sync_every=1"] = r1
    long = measure(args, synthetic_bundle(args.batch_size * args.sync_steps), "SAM", "bf16")
    res["runs"][f"SAM/bf16/{args.sync_steps}_steps"] = long
    runs = res["runs"]
    for precision in PRECISIONS:
        sgd = runs[f"SGD/{precision}"]["step_s"]
        res[f"sam_over_sgd_{precision}"] = runs[f"SAM/{precision}"]["step_s"] / sgd
        res[f"aace_over_sgd_{precision}"] = runs[f"AACE/{precision}"]["step_s"] / sgd
    res["sam_bf16_speedup"] = runs["SAM/bf16"]["images_per_s"] / runs["SAM/fp32"]["images_per_s"]
    res["sam_bf16_sync_every_default_over_1"] = runs["SAM/bf16"]["images_per_s"] / r1["images_per_s"]
    # counted over one epoch of sync_steps (>= 100) steps: the epoch's final read is then not over-weighted
    res["host_syncs_per_100_steps"] = long["host_reads_per_100_steps"]
    if "cuda_syncs_per_100_steps" in long:
        res["cuda_syncs_per_100_steps"] = long["cuda_syncs_per_100_steps"]
    res["loader_images_per_s"] = loader_rate(args, bundle, device)
    res["targets"] = {
        "sam_bf16_speedup": res["sam_bf16_speedup"] >= TARGETS["sam_bf16_speedup_min"],
        "sam_over_sgd_bf16": res["sam_over_sgd_bf16"] <= TARGETS["sam_over_sgd_max"],
        "host_syncs": max(res["host_syncs_per_100_steps"], res.get("cuda_syncs_per_100_steps", 0.0))
        <= 2 * TARGETS["host_syncs_per_50_steps_max"],
    }
    return res


TINY_EXPERIMENT = {
    "epochs": 1,
    "optim": {"lr": 0.05},
    "batch_size": 128,
    "workers": 0,
    "probe_batch_size": 64,
    "sharpness": {"enabled": True, "samples": 64, "iterations": 2},
}


def tiny_study(device: str) -> dict[str, Any]:
    """Both tracks, one epoch, one seed: the workflow's whole DAG on `device`."""
    return {
        "study": "gpu_check",
        "resources": {k: {"cpus_per_task": 1} for k in ("tune", "train", "evaluate")},
        "experiments": {
            "digits": {
                "dataset": {"name": "digits", "root": str(ROOT / "data"), "val_fraction": 0.15},
                "model": {"name": "small_cnn", "kwargs": {"in_channels": 1}},
                "setups": ["SGD", "SAM"],
                "rho_grid": [0.05],
                "seeds": [0],
                "tune": {"seeds": [0]},
                "device": device,
                **TINY_EXPERIMENT,
            },
            "openset": {
                "dataset": {"name": "digits_openset", "root": str(ROOT / "data"), "val_fraction": 0.15},
                "model": {"name": "small_cnn", "kwargs": {"in_channels": 1}},
                "embedding_dim": 16,
                "head": {"kwargs": {"s": 16.0}},
                "setups": ["ArcFace", "FlatFace-SAM-ArcFace"],
                "seeds": [0],
                "setup_overrides": {"FlatFace-SAM-ArcFace": {"rho": 0.1}},
                "device": device,
                **TINY_EXPERIMENT,
            },
        },
    }


def run_study(device: str, workdir: Path) -> dict[str, Any]:
    """Snakemake over the tiny study; then the report must exist and every run must have trained on `device`."""
    import yaml

    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(tiny_study(device)))
    t = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(ROOT / "Snakefile"),
            "--directory",
            str(workdir),
            "--configfile",
            str(workdir / "tiny.yaml"),
            "--cores",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    out: dict[str, Any] = {
        "returncode": proc.returncode,
        "seconds": time.perf_counter() - t,
        "workdir": str(workdir),
    }
    if proc.returncode != 0:
        out["error"] = (proc.stdout + proc.stderr)[-3000:]
        return out
    metrics = [json.loads(p.read_text()) for p in (workdir / "results/gpu_check/runs").rglob("metrics.json")]
    report = workdir / "reports/gpu_check/report.md"
    out.update(
        runs=len(metrics),
        devices=sorted({m["device"] for m in metrics}),
        amp=sorted({m.get("amp", "?") for m in metrics}),
        report=report.is_file(),
    )
    out["ok"] = bool(metrics) and out["devices"] == [torch.device(device).type] and out["report"]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--model", default="wrn28_10")
    p.add_argument("--model-kwargs", default="{}", help="JSON, e.g. '{\"width\": 8}'")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=30, help="timed steps per configuration (after a warm-up)")
    p.add_argument(
        "--sync-steps", type=int, default=100, help="steps of the SAM bf16 epoch whose syncs are counted"
    )
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--no-study", dest="study", action="store_false", help="skip the tiny study")
    p.add_argument("--workdir", default="", help="where the tiny study runs (default: a temporary folder)")
    p.add_argument("--json", default="results/gpu_check.json")
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            "gpu_check: --device cuda but torch sees no CUDA device; run on a GPU node or pass --device cpu",
            file=sys.stderr,
        )
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    res: dict[str, Any] = {"environment": environment(torch.device(args.device))}
    env = res["environment"]
    print(f"gpu_check: torch {env['torch']}, CUDA {env['cuda']}, {env['device']} = {env['device_name']}")
    print(f"{args.model}, batch {args.batch_size}, {args.steps} timed steps per configuration:", flush=True)
    res.update(benchmark(args))
    print(
        f"  SAM/SGD {res['sam_over_sgd_fp32']:.2f} fp32, {res['sam_over_sgd_bf16']:.2f} bf16 (target <= 2.05); "
        f"AACE/SGD {res['aace_over_sgd_fp32']:.2f} fp32, {res['aace_over_sgd_bf16']:.2f} bf16"
    )
    print(
        f"  SAM bf16+channels_last / fp32: {res['sam_bf16_speedup']:.2f}x (target >= 2); "
        f"sync_every {res['runs']['SAM/bf16']['sync_every']} vs 1: {res['sam_bf16_sync_every_default_over_1']:.3f}x"
    )
    cuda = f", CUDA syncs {res['cuda_syncs_per_100_steps']:.1f}" if "cuda_syncs_per_100_steps" in res else ""
    print(
        f"  host reads per 100 steps (SAM bf16, {args.sync_steps}-step epoch): "
        f"{res['host_syncs_per_100_steps']:.1f}{cuda} (target <= 2); "
        f"device-resident loader {res['loader_images_per_s']:.0f} images/s"
    )
    if args.study:
        workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="gpu_check_"))
        res["study"] = run_study(args.device, workdir)
        print(
            f"  tiny study on {args.device}: {'ok' if res['study'].get('ok') else 'FAILED'} "
            f"({res['study']['seconds']:.0f} s, {workdir})"
        )
        if "error" in res["study"]:
            print(res["study"]["error"], file=sys.stderr)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(res, f, indent=2)
    print(f"  figures written to {args.json}")
    return 0 if not args.study or res["study"].get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
