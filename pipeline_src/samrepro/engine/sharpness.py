"""Sharpness of a trained model: the top eigenvalue of the Hessian of the training loss (issue 3, beyond the papers).

The papers claim SAM/AACE reach flatter minima; the largest Hessian eigenvalue λ_max is the standard measure of
it (as PyHessian computes it). We never form the Hessian: power iteration needs only Hessian-vector products,
Hv = ∂/∂w (∇L(w) · v), two backward passes per product (Pearlmutter's trick via double backprop). The loss is
the mean over a fixed subset of the training set (same subset for every model of a study), the model in eval
mode so BatchNorm uses its running statistics and nothing about the model changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def _dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.stack([(x * y).sum() for x, y in zip(a, b, strict=True)]).sum()


def hessian_vector_product(
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    params: Sequence[torch.Tensor],
    vec: Sequence[torch.Tensor],
) -> list[torch.Tensor]:
    """H v for the loss averaged over all samples of `batches` (each batch weighted by its size)."""
    total = sum(int(x.shape[0]) for x, _ in batches)
    out = [torch.zeros_like(p) for p in params]
    for x, y in batches:
        loss = loss_fn(x, y)
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        pairs = [(g, v) for g, v in zip(grads, vec, strict=True) if g is not None]
        if not pairs:
            raise ValueError("the loss does not depend on any of the given parameters")
        gv = torch.stack([(g * v).sum() for g, v in pairs]).sum()
        hv = torch.autograd.grad(gv, params, allow_unused=True)
        w = x.shape[0] / total
        for o, h in zip(out, hv, strict=True):
            if h is not None:
                o.add_(h.detach(), alpha=w)
    return out


def top_hessian_eigenvalue(
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    params: Sequence[torch.Tensor],
    iterations: int = 20,
    tol: float = 1e-3,
    seed: int = 0,
) -> float:
    """Largest-magnitude Hessian eigenvalue by power iteration (stops early when λ changes < tol relatively).

    The start vector is drawn from a private generator (seeded), so the global RNG stream is not touched.
    """
    if iterations < 1:
        raise ValueError(f"sharpness.iterations={iterations} must be >= 1")
    params = [p for p in params if p.requires_grad]
    gen = torch.Generator(device="cpu").manual_seed(seed)
    vec = [torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device) for p in params]
    norm = torch.sqrt(_dot(vec, vec))
    vec = [v / norm for v in vec]
    eig = None
    for _ in range(iterations):
        hv = hessian_vector_product(loss_fn, batches, params, vec)
        new = float(_dot(hv, vec))
        hv_norm = float(torch.sqrt(_dot(hv, hv)))
        if hv_norm == 0.0:
            return 0.0
        vec = [h / hv_norm for h in hv]
        if eig is not None and abs(new - eig) <= tol * (abs(eig) + 1e-12):
            return new
        eig = new
    return float(eig)
