"""Multi-GPU training with `torchrun` (DDP) and the SAM perturbation's gradient synchronisation.

DESIGN ("Execution"): multi-GPU experiments run `torchrun` inside one SLURM job. SAM's first pass takes the
gradient at w; under DDP that backward all-reduces the gradient like any other, so by default every rank
perturbs with the same ε computed from the *global* batch gradient. With `ddp_sync_perturbation: false` the
first backward skips the all-reduce: each rank perturbs with its own shard's gradient — the SAM paper's
m-sharpness with m = per-GPU batch — and only the second (update) gradient is averaged. That works through
DDP's own switch, `require_backward_grad_sync` (what `no_sync()` sets), read by DDP at forward time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group torchrun describes (WORLD_SIZE > 1); single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    import torch.distributed as dist

    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistInfo(rank=rank, world=world, local_rank=local_rank)


def shutdown(info: DistInfo) -> None:
    if info.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


class PerturbationSync(nn.Module):
    """Wraps a DDP model; `skip_next_sync()` makes the next forward's backward skip the all-reduce.

    The engine calls it before each two-pass step when `ddp_sync_perturbation` is false: the step's first
    forward/backward (the perturbation gradient) then stays local, the second is all-reduced as usual.
    """

    def __init__(self, ddp: nn.Module) -> None:
        super().__init__()
        self.ddp = ddp
        self._skip = False

    @property
    def module(self) -> nn.Module:
        return self.ddp.module

    def skip_next_sync(self) -> None:
        self._skip = True

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        self.ddp.require_backward_grad_sync = not self._skip
        self._skip = False
        return self.ddp(x, y)


def wrap_ddp(net: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """DDP(net) inside a PerturbationSync (the callable train_step receives); `net` when not distributed."""
    if not info.enabled:
        return net
    from torch.nn.parallel import DistributedDataParallel as DDP

    ddp = DDP(net, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=True)
    return PerturbationSync(ddp)


def all_reduce_sum(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    """Sum a few scalars over ranks (epoch loss/accuracy counters, the stop flag)."""
    if not info.enabled:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def all_reduce_tensor_(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum `t` over ranks in place, without reading it back (the caller's one host read comes later)."""
    if info.enabled:
        import torch.distributed as dist

        dist.all_reduce(t)
    return t


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's `obj` on every rank (per-rank RNG states for the checkpoint)."""
    if not info.enabled:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * info.world
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    if info.enabled:
        import torch.distributed as dist

        dist.barrier()
