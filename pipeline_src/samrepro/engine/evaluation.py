"""Evaluation figures (DESIGN "The DAG", step 4), all accuracies in percent.

- classification: top-1 / top-5 accuracy of the logits `net(x)`;
- face: verification accuracy per benchmark (`verification.verify`: flip test, 10 folds) and their mean;
  face *training* accuracy = nearest class weight by cosine (argmax of normalize(f(x))·normalize(W)ᵀ), i.e.
  the margin head without its margin, which is how the class matrix is used at test time;
- the mechanism probes (`probe`): CE and AACE loss and the global gradient norms of both on a fixed batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from samrepro.engine.loader import iterate_eval
from samrepro.engine.verification import verify


def autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on the device when enabled (CUDA, and the CPU too: `amp: bf16` exercises the mixed-precision
    path anywhere); a no-op when off. Losses and the margin heads compute in float32 inside it."""
    if amp:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def eval_mode(net: nn.Module) -> Iterator[nn.Module]:
    """Eval mode for the block (BN running stats, no dropout, no EMA update), the previous mode restored after."""
    was_training = net.training
    net.eval()
    try:
        yield net
    finally:
        net.train(was_training)


def to_device(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


@torch.no_grad()
def classification_accuracy(
    net: nn.Module,
    dataset: Any,
    batch_size: int,
    device: torch.device,
    amp: bool = False,
    channels_last: bool = False,
) -> dict[str, float]:
    """Top-1 and top-5 accuracy (percent) of `net(x)` on `dataset` (top-5 = top-k with k = min(5, classes))."""
    correct1 = correct5 = total = 0
    with eval_mode(net):
        for x, y in iterate_eval(dataset, batch_size):
            x, y = to_device(x, device, channels_last), y.to(device)
            with autocast(device, amp):
                logits = net(x)
            k = min(5, logits.shape[1])
            top = logits.float().topk(k, dim=1).indices
            hit = top == y[:, None]
            correct1 += int(hit[:, 0].sum())
            correct5 += int(hit.any(dim=1).sum())
            total += int(y.shape[0])
    if total == 0:
        raise ValueError("the evaluation set is empty")
    return {"top1": 100.0 * correct1 / total, "top5": 100.0 * correct5 / total}


@torch.no_grad()
def face_train_accuracy(
    net: nn.Module,
    dataset: Any,
    batch_size: int,
    device: torch.device,
    amp: bool = False,
    channels_last: bool = False,
) -> float:
    """Percent of training images whose nearest class weight (cosine) is their identity's."""
    head = getattr(net, "head", None)
    if head is None or not hasattr(head, "weight"):
        raise ValueError("face training accuracy needs net.head.weight (the class-weight matrix)")
    weight = F.normalize(head.weight.detach().float(), dim=1)
    correct = total = 0
    with eval_mode(net):
        for x, y in iterate_eval(dataset, batch_size):
            x, y = to_device(x, device, channels_last), y.to(device)
            with autocast(device, amp):
                emb = net.embed(x)
            pred = (F.normalize(emb.float(), dim=1) @ weight.t()).argmax(dim=1)
            correct += int((pred == y).sum())
            total += int(y.shape[0])
    if total == 0:
        raise ValueError("the training-evaluation set is empty")
    return 100.0 * correct / total


def verification_accuracy(
    net: nn.Module,
    sets: dict[str, Any],
    batch_size: int,
    device: torch.device,
    amp: bool = False,
    channels_last: bool = False,
) -> dict[str, dict[str, float]]:
    """{benchmark: {acc_mean, acc_std}} (percent) for every VerificationSet (images [2N,C,H,W], issame [N])."""
    if not sets:
        raise ValueError("no verification sets: a face dataset must provide at least one")
    out: dict[str, dict[str, float]] = {}

    def embed(x: torch.Tensor) -> torch.Tensor:
        with autocast(device, amp):
            return net.embed(x)

    with eval_mode(net):
        for name, vs in sets.items():
            out[name] = verify(embed, vs.images, vs.issame, batch_size, device, channels_last)
    return out


def mean_verification(scores: dict[str, dict[str, float]]) -> float:
    return float(sum(s["acc_mean"] for s in scores.values()) / len(scores))


def grad_norm(loss: torch.Tensor, params: list[torch.Tensor], retain_graph: bool = False) -> float:
    """Global l2 norm of d loss / d params over all parameters together (as SAM's ‖g‖)."""
    grads = torch.autograd.grad(loss, params, retain_graph=retain_graph, allow_unused=True)
    norms = [g.detach().float().norm() for g in grads if g is not None]
    return float(torch.stack(norms).norm()) if norms else 0.0


def probe(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """The papers' mechanism on a fixed batch: CE and AACE loss of the logits, and the gradient norm of each.

    Computed in eval mode and fp32, through `torch.autograd.grad` (no `.grad` is touched, no BN/EMA statistic
    moves, no RNG is drawn), so probing never changes the training trajectory. For face setups the logits are
    the margin head's (the loss both perturbations differentiate).
    """
    from samrepro.losses import aace_loss

    params = [p for p in net.parameters() if p.requires_grad]
    with eval_mode(net), torch.enable_grad():
        logits = net(x, y).float()
        ce = F.cross_entropy(logits, y)
        aace = aace_loss(logits, y)
        ce_norm = grad_norm(ce, params, retain_graph=True)
        aace_norm = grad_norm(aace, params)
    return {
        "probe_ce_loss": float(ce.detach()),
        "probe_aace_loss": float(aace.detach()),
        "probe_ce_grad_norm": ce_norm,
        "probe_aace_grad_norm": aace_norm,
    }
