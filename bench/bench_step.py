"""Cost of the SAM-family step relative to SGD, and of the AACE loss relative to CE (issue 2's benchmark).

For each model, the same batch and the same initial weights go through ``samrepro.optim.train_step`` with
the SGD, SAM and AACE setups; setups are timed in interleaved rounds (so load drift on a shared machine hits
all of them alike), each round timing ``--steps`` consecutive steps. Reported: the median over rounds of
(step time of SAM or AACE) ÷ (step time of SGD in the same round). Ideal 2.0 (two forward/backward passes);
target ≤ 2.05. The loss benchmark times forward+backward of the loss alone on fixed logits, AACE ÷ CE,
target ≤ 1.05, and the same ratio inside a full SGD-style step (model forward, loss, backward).
Default clock: process CPU time with one intra-op thread, so other jobs on a shared machine inflate the
timings less than wall time (``--clock wall`` for elapsed time).

    python bench/bench_step.py [--rounds 30] [--threads 1] [--clock cpu|wall]
"""

from __future__ import annotations

import argparse
import copy
import functools
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from samrepro.losses import aace_loss
from samrepro.models import Network, build
from samrepro.optim import build_optimizer, get_setup, train_step

MODELS = {
    # name: (model name, kwargs, input shape, classes, batch, steps per round)
    "small_cnn 8x8 b128": ("small_cnn", {"in_channels": 1}, (1, 8, 8), 10, 128, 2),
    "wrn-16-2 32x32 b32": ("wrn", {"depth": 16, "width": 2}, (3, 32, 32), 10, 32, 1),
}


CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
_clock = CLOCKS["cpu"]


def _time(fn: Callable[[], object], n: int) -> float:
    t = _clock()
    for _ in range(n):
        fn()
    return (_clock() - t) / n


def bench_steps(rounds: int) -> list[tuple[str, float, float, float, float, float]]:
    rows = []
    for label, (name, kw, shape, classes, batch, steps) in MODELS.items():
        torch.manual_seed(0)
        base = Network(build(name, classes, **kw))
        x, y = torch.randn(batch, *shape), torch.randint(0, classes, (batch,))
        runs = {}
        for setup_name in ("SGD", "SAM", "AACE"):
            setup = get_setup(setup_name)
            net = copy.deepcopy(base).train()
            opt = build_optimizer(setup, net.parameters(), 0.01, 0.9, 5e-4, False, 0.05)
            runs[setup_name] = functools.partial(train_step, net, opt, setup, x, y)
            _time(runs[setup_name], 3)  # warm-up (allocator, momentum buffers, SAM's backup buffer)
        times: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(rounds):
            for k, fn in runs.items():
                times[k].append(_time(fn, steps))
        sgd = times["SGD"]
        sam_ratio = statistics.median(a / b for a, b in zip(times["SAM"], sgd, strict=True))
        aace_ratio = statistics.median(a / b for a, b in zip(times["AACE"], sgd, strict=True))
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        rows.append((label, med["SGD"], med["SAM"], med["AACE"], sam_ratio, aace_ratio))
    return rows


def _loss_fb(loss: Callable, z: torch.Tensor, y: torch.Tensor) -> None:
    loss(z, y).backward()


def bench_losses(rounds: int) -> list[tuple[str, float, float, float]]:
    rows = []
    for n, c in ((128, 10), (256, 100), (128, 10572)):
        g = torch.Generator().manual_seed(0)
        z = torch.randn(n, c, generator=g).requires_grad_(True)
        y = torch.randint(0, c, (n,), generator=g)
        reps = max(5, 20000 // max(c, 1))

        ce = functools.partial(_loss_fb, F.cross_entropy, z, y)
        aace = functools.partial(_loss_fb, aace_loss, z, y)
        _time(ce, 5)
        _time(aace, 5)
        t_ce, t_aace = [], []
        for _ in range(rounds):
            t_ce.append(_time(ce, reps))
            t_aace.append(_time(aace, reps))
        ratio = statistics.median(a / b for a, b in zip(t_aace, t_ce, strict=True))
        rows.append(
            (
                f"loss only, logits {n}x{c}",
                statistics.median(t_ce) * 1e6,
                statistics.median(t_aace) * 1e6,
                ratio,
            )
        )
    # inside a full forward+backward of small_cnn on 8x8 digits, batch 128
    torch.manual_seed(0)
    net = build("small_cnn", 10, in_channels=1)
    x, y = torch.randn(128, 1, 8, 8), torch.randint(0, 10, (128,))

    def step(loss: Callable) -> Callable[[], None]:
        def run() -> None:
            net.zero_grad(set_to_none=True)
            loss(net(x), y).backward()

        return run

    _time(step(F.cross_entropy), 5)
    _time(step(aace_loss), 5)
    t_ce, t_aace = [], []
    for _ in range(rounds):
        t_ce.append(_time(step(F.cross_entropy), 20))
        t_aace.append(_time(step(aace_loss), 20))
    ratio = statistics.median(a / b for a, b in zip(t_aace, t_ce, strict=True))
    rows.append(
        ("fwd+loss+bwd small_cnn b128", statistics.median(t_ce) * 1e6, statistics.median(t_aace) * 1e6, ratio)
    )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=30, help="interleaved timing rounds (median over them)")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch intra-op threads (1 is steadiest on a shared CPU)"
    )
    ap.add_argument(
        "--clock", choices=list(CLOCKS), default="cpu",
        help="cpu: process CPU time (robust to other jobs on a shared machine); wall: elapsed time",
    )  # fmt: skip
    args = ap.parse_args()
    global _clock
    _clock = CLOCKS[args.clock]
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), {args.rounds} rounds, {args.clock} clock, CPU"
    )
    print(
        f"\n{'model':<22}{'SGD ms':>9}{'SAM ms':>9}{'AACE ms':>9}{'SAM/SGD':>9}{'AACE/SGD':>10}   (target ≤ 2.05)"
    )
    for label, sgd, sam, aace, r_sam, r_aace in bench_steps(args.rounds):
        print(f"{label:<22}{sgd:9.2f}{sam:9.2f}{aace:9.2f}{r_sam:9.3f}{r_aace:10.3f}")
    print(f"\n{'loss':<30}{'CE µs':>10}{'AACE µs':>10}{'AACE/CE':>9}   (target ≤ 1.05)")
    for label, ce, aace, ratio in bench_losses(args.rounds):
        print(f"{label:<30}{ce:10.1f}{aace:10.1f}{ratio:9.3f}")


if __name__ == "__main__":
    main()
