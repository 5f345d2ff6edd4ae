"""Training throughput of the engine (issue 3 benchmark; not a test).

Images/s of SGD vs SAM vs AACE for small_cnn on digits (the embedded study's workload) through the engine's own
loop pieces (epoch permutation, batched augmentation, `train_step`), and loader-only images/s on the same
batches: data loading must not be the bottleneck (loader ≥ 5× training). Median over repeats.

    .venv/bin/python bench/bench_train.py [--threads 1] [--batch-size 64] [--epochs 3] [--repeats 3] [--json out.json]

On a CUDA machine add `--device cuda --model wrn28_10 --dataset-shape 3,32,32` for WRN-28-10 on CIFAR-shaped
random data (images/s and peak GPU memory, SAM vs SGD).

Engine mode, before/after a change: `--compare-with OTHER_TREE` times the engine's whole epoch loop
(`trainer.train`, its own `images_per_s` = training images / step-loop seconds) for SGD and SAM at batch 128 on
digits (small_cnn) and on CIFAR-shaped random data (a small WRN), once with this tree's code and once with
OTHER_TREE's (each in a subprocess with that tree's `pipeline_src` first on the path), rounds interleaved so a
shared machine's load hits both alike; it prints and writes the median after/before ratio per workload.
`--clock process` times the loop in process CPU time instead of wall time (one thread: the work done, not
the time spent waiting for a core that other jobs hold — the robust figure on a loaded machine).

    git worktree add /tmp/wt-before <commit>
    .venv/bin/python bench/bench_train.py --compare-with /tmp/wt-before --rounds 3 --json ratios.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def _bundle(args: argparse.Namespace):
    if args.dataset_shape:
        from samrepro.data.datasets import TensorImageDataset
        from samrepro.data.transforms import BatchTransform

        c, h, w = (int(v) for v in args.dataset_shape.split(","))
        g = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (args.synthetic_n, c, h, w), dtype=torch.uint8, generator=g)
        labels = torch.randint(0, 10, (args.synthetic_n,), generator=g)
        tf = BatchTransform((0.5,) * c, (0.25,) * c, train=True, crop_padding=4, flip=True, cutout=16)
        return TensorImageDataset(images, labels, tf), 10, c
    from samrepro import data

    b = data.build("digits", "data", use_validation=False)
    return b.train, b.num_classes, b.input_shape[0]


def _epoch(train_set, batch_size: int, gen: torch.Generator, step=None, device=None, amp=False) -> int:
    from samrepro.engine.evaluation import autocast
    from samrepro.engine.loader import epoch_batches, iterate_train

    n = 0
    for x, y in iterate_train(train_set, epoch_batches(len(train_set), batch_size, gen), 0, gen):
        if step is not None:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with autocast(device, amp):
                step(x, y)
        n += int(y.shape[0])
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize()
    return n


def bench(args: argparse.Namespace) -> dict:
    from samrepro.models import Network
    from samrepro.models import build as build_model
    from samrepro.optim import build_optimizer, get_setup
    from samrepro.optim.step import train_step

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    amp = device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    train_set, num_classes, channels = _bundle(args)
    out: dict = {
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "model": args.model,
        "n_train": len(train_set),
        "device": str(device),
        "setups": {},
    }

    gen = torch.Generator().manual_seed(0)
    _epoch(train_set, args.batch_size, gen)
    loader = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        n = _epoch(train_set, args.batch_size, gen)
        loader.append(n / (time.perf_counter() - t))
    out["loader_images_per_s"] = statistics.median(loader)

    for name in args.setups.split(","):
        setup = get_setup(name)
        torch.manual_seed(0)
        kw = {"in_channels": channels} if args.model != "wrn28_10" else {"in_channels": channels}
        net = Network(build_model(args.model, num_classes, **kw)).to(device)
        if device.type == "cuda":
            net = net.to(memory_format=torch.channels_last)
        opt = build_optimizer(
            setup, net.parameters(), 0.05, 0.9, 5e-4, False, None if name == "SGD" else 0.05
        )

        def step(x, y, net=net, opt=opt, setup=setup):
            return train_step(net, opt, setup, x, y)

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        _epoch(train_set, args.batch_size, gen, step, device, amp)  # warm-up (allocator, cudnn autotune)
        rates = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            n = sum(_epoch(train_set, args.batch_size, gen, step, device, amp) for _ in range(args.epochs))
            rates.append(n / (time.perf_counter() - t))
        res = {"images_per_s": statistics.median(rates)}
        if device.type == "cuda":
            res["peak_gpu_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        out["setups"][name] = res
    fastest = max(r["images_per_s"] for r in out["setups"].values())
    out["loader_over_fastest_training"] = out["loader_images_per_s"] / fastest
    return out


# (name, dataset, model, model kwargs, epochs): digits is small_cnn's workload; "wrn" is CIFAR-shaped random data
ENGINE_WORKLOADS = (
    ("digits/small_cnn", "digits", "small_cnn", {}, 8),
    ("cifar_shaped/wrn10_2", "synthetic", "wrn", {"depth": 10, "width": 2}, 2),
)


def engine_once(
    workload: str, setup: str, batch_size: int, clock: str = "wall", sync_every: int = 0
) -> float:
    """images/s of the engine's step loop for one run (metrics.json of `trainer.train`), in this process.
    clock "process": the engine's timer (time.perf_counter) reads this process's CPU time instead."""
    from samrepro.engine import config as C
    from samrepro.engine import trainer

    if clock == "process":
        time.perf_counter = time.process_time

    _, dataset, model, kwargs, epochs = next(w for w in ENGINE_WORKLOADS if w[0] == workload)
    cfg = {
        "study": "bench",
        "experiment": "bench",
        "setup": setup,
        "seed": 0,
        "rho": None if setup == "SGD" else 0.05,
        "dataset": {"name": "digits" if dataset == "digits" else "cifar10"},
        "model": {"name": model, "kwargs": dict(kwargs)},
        "schedule": {"name": "cosine", "epochs": epochs},
        "batch_size": batch_size,
        "workers": 0,
        "threads": 1,
        "device": "cpu",
        "probe_batch_size": 32,
    }
    if sync_every:
        cfg["sync_every"] = sync_every
    if dataset == "synthetic":
        trainer.load_data = lambda _cfg: _synthetic_bundle(768)
    with tempfile.TemporaryDirectory() as tmp:
        return float(trainer.train(C.validate(cfg), tmp)["images_per_s"])


def _synthetic_bundle(n: int):
    from samrepro.data.datasets import TensorImageDataset
    from samrepro.data.registry import DataBundle
    from samrepro.data.transforms import BatchTransform

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    tf = BatchTransform((0.5,) * 3, (0.25,) * 3, train=True, crop_padding=4, flip=True, cutout=16)
    small = TensorImageDataset(images[:128], labels[:128], tf.eval_copy())
    return DataBundle(
        name="synthetic",
        task="classification",
        num_classes=10,
        input_shape=(3, 32, 32),
        train=TensorImageDataset(images, labels, tf),
        train_eval=small,
        eval=small,
    )


def _engine_subprocess(tree: Path, workload: str, setup: str, batch_size: int, clock: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree / "pipeline_src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            __file__,
            "--engine-once",
            workload,
            "--setups",
            setup,
            "--batch-size",
            str(batch_size),
            "--clock",
            clock,
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    if proc.returncode != 0:
        raise SystemExit(f"bench_train: {tree} {workload} {setup} failed:\n{proc.stderr[-2000:]}")
    return float(proc.stdout.strip().splitlines()[-1])


def compare(other: Path, rounds: int, batch_size: int, setups: list[str], clock: str = "wall") -> dict:
    """Interleaved rounds (before, after, then after, before, ...) of every workload x setup; median ratios."""
    here = Path(__file__).resolve().parents[1]
    rates: dict[str, dict[str, list[float]]] = {}
    for r in range(rounds):
        order = [("before", other), ("after", here)]
        for label, tree in order if r % 2 == 0 else order[::-1]:
            for workload, *_ in ENGINE_WORKLOADS:
                for setup in setups:
                    rate = _engine_subprocess(tree, workload, setup, batch_size, clock)
                    rates.setdefault(f"{workload}/{setup}", {"before": [], "after": []})[label].append(rate)
                    print(
                        f"  round {r + 1} {label:6s} {workload:22s} {setup:4s} {rate:9.1f} images/s",
                        flush=True,
                    )
    out = {
        "batch_size": batch_size,
        "rounds": rounds,
        "clock": clock,
        "before_tree": str(other),
        "workloads": {},
    }
    for key, v in rates.items():
        ratios = [a / b for a, b in zip(v["after"], v["before"], strict=True)]
        # best-of: on a shared machine the fastest round is the one least slowed by other load
        out["workloads"][key] = {
            "before": v["before"],
            "after": v["after"],
            "median_after_over_before": statistics.median(ratios),
            "best_after_over_best_before": max(v["after"]) / max(v["before"]),
        }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--compare-with", default="", help="another checkout: engine before/after ratios")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--clock", choices=("wall", "process"), default="wall", help="engine mode: wall or CPU time"
    )
    p.add_argument(
        "--sync-every", type=int, default=0, help="engine mode: the run's sync_every (0 = default)"
    )
    p.add_argument("--engine-once", default="", help="engine mode: one run of this workload, print images/s")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--setups", default="SGD,SAM,AACE")
    p.add_argument("--model", default="small_cnn")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dataset-shape", default="", help="C,H,W: random uint8 images instead of digits")
    p.add_argument("--synthetic-n", type=int, default=4096)
    p.add_argument("--json", default="")
    args = p.parse_args()
    if args.engine_once:
        print(engine_once(args.engine_once, args.setups, args.batch_size, args.clock, args.sync_every))
        return
    if args.compare_with:
        res = compare(
            Path(args.compare_with), args.rounds, args.batch_size, args.setups.split(","), args.clock
        )
        for key, w in res["workloads"].items():
            print(
                f"{key:28s} after/before {w['median_after_over_before']:.3f} (median of {args.rounds} rounds), "
                f"best/best {w['best_after_over_best_before']:.3f}"
            )
        if args.json:
            with open(args.json, "w") as f:
                json.dump(res, f, indent=2)
        return
    res = bench(args)
    print(
        f"device {res['device']}, threads {res['threads']}, model {res['model']}, batch {res['batch_size']}, "
        f"{res['n_train']} training images"
    )
    for name, r in res["setups"].items():
        extra = f", peak GPU memory {r['peak_gpu_mem_gib']:.2f} GiB" if "peak_gpu_mem_gib" in r else ""
        print(f"  {name:5s} {r['images_per_s']:10.0f} images/s{extra}")
    print(
        f"  loader {res['loader_images_per_s']:9.0f} images/s = {res['loader_over_fastest_training']:.1f}x the "
        "fastest training setup (target >= 5x)"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
