"""ArcFace / AdaFace / linear heads against their equations (DESIGN.md "Margin heads", "Face-track details")."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import functional_call

from samrepro import heads
from samrepro.heads import AdaFace, ArcFace, LinearHead


def _cos(x, w):
    xn = x / x.norm(dim=1, keepdim=True)
    wn = w / w.norm(dim=1, keepdim=True)
    return xn @ wn.T


def test_arcface_logits_equal_equation_and_margin_has_gradient():
    torch.manual_seed(0)
    head = ArcFace(6, 5, s=64.0, m=0.5).double()
    x = torch.randn(7, 6, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 4, 0, 1])
    logits = head(x, y)
    cos = _cos(x, head.weight.detach())
    expect = 64.0 * cos
    for i in range(7):
        theta = math.acos(float(cos[i, y[i]]))
        target = math.cos(theta + 0.5) if theta + 0.5 <= math.pi else math.cos(theta) - 0.5 * math.sin(0.5)
        expect[i, y[i]] = 64.0 * target
    torch.testing.assert_close(logits, expect)
    # full gradient through cos(θ_y + m), w.r.t. embeddings and the class matrix (a no_grad margin fails this)
    xg = x.clone().requires_grad_(True)
    wg = head.weight.detach().clone().requires_grad_(True)

    def f(x_, w_):
        return functional_call(head, {"weight": w_}, (x_, y))

    assert torch.autograd.gradcheck(f, (xg, wg), eps=1e-6, atol=1e-5)


def test_arcface_target_logit_decreases_over_the_whole_angle_range():
    """Past θ_y = π − m, cos(θ_y + m) would rise again and reward pushing an embedding away from its class."""
    head = ArcFace(2, 1, s=1.0, m=0.5).double()
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0]], dtype=torch.float64))
    theta = torch.linspace(0.01, math.pi - 0.01, 400, dtype=torch.float64)
    x = torch.stack([torch.cos(theta), torch.sin(theta)], dim=1)
    target = head(x, torch.zeros(400, dtype=torch.long))[:, 0]
    assert (target[1:] < target[:-1]).all()
    past = theta + 0.5 > math.pi
    torch.testing.assert_close(target[past], torch.cos(theta[past]) - 0.5 * math.sin(0.5))


def _adaface_expected(x, w, y, mean, std, s=64.0, m=0.4, h=0.33, eps=1e-3):
    norms = x.norm(dim=1).clamp(0.001, 100)
    n_hat = (h * (norms - mean) / (std + eps)).clamp(-1, 1)
    cos = _cos(x, w).clamp(-1 + eps, 1 - eps)
    out = s * cos.clone()
    for i in range(x.shape[0]):
        theta = math.acos(float(cos[i, y[i]]))
        g_angle, g_add = -m * float(n_hat[i]), m * float(n_hat[i]) + m
        theta_m = min(max(theta + g_angle, eps), math.pi - eps)
        out[i, y[i]] = s * (math.cos(theta_m) - g_add)
    return out, n_hat


def test_adaface_logits_ema_and_clipping():
    torch.manual_seed(1)
    head = AdaFace(4, 3).double()
    base = torch.randn(6, 4, dtype=torch.float64)
    base = base / base.norm(dim=1, keepdim=True)
    # norms: tiny (clipped up to 0.001), huge (clipped to 100), and ordinary ones
    x = base * torch.tensor([1e-5, 500.0, 10.0, 20.0, 35.0, 60.0], dtype=torch.float64)[:, None]
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    clipped = torch.tensor([0.001, 100.0, 10.0, 20.0, 35.0, 60.0], dtype=torch.float64)
    mean = 0.99 * 20 + 0.01 * clipped.mean()
    std = 0.99 * 100 + 0.01 * clipped.std()

    logits = head.train()(x, y)
    torch.testing.assert_close(head.batch_mean, mean.reshape(1))
    torch.testing.assert_close(head.batch_std, std.reshape(1))
    expect, n_hat = _adaface_expected(x, head.weight.detach(), y, mean, std)
    torch.testing.assert_close(logits, expect)

    # with a tight EMA, n̂ saturates at ±1 (the clip of n̂)
    head.batch_mean.fill_(30.0)
    head.batch_std.fill_(1.0)
    head.eval()
    logits = head(x, y)
    torch.testing.assert_close(
        head.batch_mean, torch.full((1,), 30.0, dtype=torch.float64)
    )  # eval: no update
    expect, n_hat = _adaface_expected(x, head.weight.detach(), y, torch.tensor(30.0), torch.tensor(1.0))
    assert n_hat.min() == -1 and n_hat.max() == 1
    torch.testing.assert_close(logits, expect)

    head.train()
    head.update_stats = False
    head(x, y)
    assert float(head.batch_mean) == 30.0 and float(head.batch_std) == 1.0


def test_adaface_initial_statistics():
    head = AdaFace(8, 4)
    assert float(head.batch_mean) == 20.0 and float(head.batch_std) == 100.0
    assert {"batch_mean", "batch_std"} <= set(head.state_dict())


@pytest.mark.parametrize("name", ["linear", "arcface", "adaface"])
def test_gradients_flow_into_weight(name):
    torch.manual_seed(2)
    head = heads.build(name, 8, 5)
    assert head.weight.shape == (5, 8)
    x = torch.randn(4, 8, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3])
    torch.nn.functional.cross_entropy(head(x, y), y).backward()
    assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0
    assert x.grad.abs().sum() > 0
    assert any(p is head.weight for p in head.parameters())


def test_margin_heads_under_bf16_autocast_stay_float32():
    head = ArcFace(8, 5)
    x = torch.randn(4, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(x.bfloat16(), torch.tensor([0, 1, 2, 3]))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_bad_inputs():
    arc = ArcFace(8, 5)
    with pytest.raises(ValueError, match="labels"):
        arc(torch.randn(4, 8), torch.tensor([[0], [1], [2], [3]]))
    with pytest.raises(ValueError, match="labels"):
        arc(torch.randn(4, 8), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="labels are required"):
        AdaFace(8, 5)(torch.randn(4, 8), None)
    with pytest.raises(ValueError, match=r"\(N, 8\)"):
        LinearHead(8, 5)(torch.randn(4, 7))
    with pytest.raises(ValueError, match="head="):
        heads.build("cosface", 8, 5)
    with pytest.raises(ValueError, match="bad keyword"):
        heads.build("arcface", 8, 5, margin=0.3)
