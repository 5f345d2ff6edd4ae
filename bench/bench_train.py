"""Training throughput of the engine (issue 3 benchmark; not a test).

Images/s of SGD vs SAM vs AACE for small_cnn on digits (the embedded study's workload) through the engine's own
loop pieces (epoch permutation, batched augmentation, `train_step`), and loader-only images/s on the same
batches: data loading must not be the bottleneck (loader ≥ 5× training). Median over repeats.

    .venv/bin/python bench/bench_train.py [--threads 1] [--batch-size 64] [--epochs 3] [--repeats 3] [--json out.json]

On a CUDA machine add `--device cuda --model wrn28_10 --dataset-shape 3,32,32` for WRN-28-10 on CIFAR-shaped
random data (images/s and peak GPU memory, SAM vs SGD).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

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
    out: dict = {"threads": torch.get_num_threads(), "batch_size": args.batch_size, "model": args.model,
                 "n_train": len(train_set), "device": str(device), "setups": {}}

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
        opt = build_optimizer(setup, net.parameters(), 0.05, 0.9, 5e-4, False, None if name == "SGD" else 0.05)

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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    res = bench(args)
    print(f"device {res['device']}, threads {res['threads']}, model {res['model']}, batch {res['batch_size']}, "
          f"{res['n_train']} training images")
    for name, r in res["setups"].items():
        extra = f", peak GPU memory {r['peak_gpu_mem_gib']:.2f} GiB" if "peak_gpu_mem_gib" in r else ""
        print(f"  {name:5s} {r['images_per_s']:10.0f} images/s{extra}")
    print(f"  loader {res['loader_images_per_s']:9.0f} images/s = {res['loader_over_fastest_training']:.1f}x the "
          "fastest training setup (target >= 5x)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
