"""DDP on CPU with gloo and 2 processes: SAM's perturbation from the all-reduced gradient (default) or per
process (m-sharpness, `ddp_sync_perturbation: false`), and a real `torchrun` training run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

RHO, LR, MOMENTUM, WD = 0.5, 0.1, 0.9, 0.01


class Tiny(nn.Module):
    """No BatchNorm, so a sharded step can equal a single-process step exactly (up to rounding)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.lin(torch.tanh(x))


def _data() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    net = Tiny()
    x = torch.randn(8, 5) * 2
    y = torch.tensor([0, 1, 2, 0, 2, 2, 1, 0])
    return net, x, y


def _sam(net: nn.Module):
    from samrepro.optim import build_optimizer, get_setup

    return build_optimizer(get_setup("SAM"), net.parameters(), LR, MOMENTUM, WD, False, RHO)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    from samrepro.engine import distributed as D
    from samrepro.optim import get_setup
    from samrepro.optim.step import train_step

    info = D.init_distributed("cpu")
    for mode in ("sync", "local"):
        net, x, y = _data()
        opt = _sam(net)
        wrapped = D.wrap_ddp(net, info, torch.device("cpu"))
        if mode == "local":
            wrapped.skip_next_sync()
        train_step(wrapped, opt, get_setup("SAM"), x[4 * rank : 4 * rank + 4], y[4 * rank : 4 * rank + 4])
        torch.save(net.state_dict(), Path(out_dir) / f"{mode}{rank}.pt")
    D.shutdown(info)


def _run_ddp(tmp: Path) -> dict[str, list[dict[str, torch.Tensor]]]:
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(_free_port(), str(tmp)), nprocs=2, join=True)
    return {mode: [torch.load(tmp / f"{mode}{r}.pt") for r in range(2)] for mode in ("sync", "local")}


def _per_shard_reference() -> dict[str, torch.Tensor]:
    """m-sharpness by hand: ε_r from shard r's gradient; update = SGD with the mean of the shards' gradients
    taken at their own w + ε_r."""
    net, x, y = _data()
    params = list(net.parameters())
    grads = []
    for r in range(2):
        xr, yr = x[4 * r : 4 * r + 4], y[4 * r : 4 * r + 4]
        g = torch.autograd.grad(F.cross_entropy(net(xr), yr), params)
        norm = torch.sqrt(sum((gi**2).sum() for gi in g))
        with torch.no_grad():
            for p, gi in zip(params, g, strict=True):
                p.add_(RHO * gi / (norm + 1e-12))
        grads.append(torch.autograd.grad(F.cross_entropy(net(xr), yr), params))
        with torch.no_grad():
            for p, gi in zip(params, g, strict=True):
                p.sub_(RHO * gi / (norm + 1e-12))
    ref_net, _, _ = _data()
    opt = torch.optim.SGD(ref_net.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)
    for p, g0, g1 in zip(ref_net.parameters(), *grads, strict=True):
        p.grad = (g0 + g1) / 2
    opt.step()
    return ref_net.state_dict()


def _close(a: dict, b: dict) -> bool:
    return all(torch.allclose(a[k], b[k], atol=1e-6, rtol=1e-5) for k in a)


def test_ddp_perturbation_synced_and_per_process(tmp_path) -> None:
    from samrepro.optim import get_setup
    from samrepro.optim.step import train_step

    net, x, y = _data()
    train_step(net, _sam(net), get_setup("SAM"), x, y)  # one process, the whole batch
    global_ref = net.state_dict()
    shard_ref = _per_shard_reference()
    assert not _close(global_ref, shard_ref)  # the two modes are distinguishable on this data

    got = _run_ddp(tmp_path)
    for ranks, ref in ((got["sync"], global_ref), (got["local"], shard_ref)):
        assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])  # replicas stay identical
        assert _close(ranks[0], ref)


@pytest.mark.slow
def test_torchrun_two_process_training(tmp_path) -> None:
    cfg = {
        "setup": "SAM",
        "rho": 0.05,
        "seed": 0,
        "dataset": {"name": "digits"},
        "model": {"name": "small_cnn", "kwargs": {"width": 8}},
        "schedule": {"epochs": 1},
        "batch_size": 64,
        "probe_batch_size": 32,
        "threads": 1,
        "workers": 0,
        "ddp_sync_perturbation": False,
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "samrepro",
            "train",
            "--config",
            str(tmp_path / "run.yaml"),
            "--out",
            str(tmp_path / "out"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["world_size"] == 2 and m["eval_acc"] > 20.0
    assert proc.stdout.count("epoch 1/1") == 1  # only rank 0 reports
    state = torch.load(tmp_path / "out" / "checkpoint.pt", weights_only=False)
    assert len(state["rng"]) == 2 and state["world_size"] == 2  # every rank's RNG state is kept
