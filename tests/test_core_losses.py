"""AACE and smoothed CE against their equations (DESIGN.md "AACE target", "Label smoothing")."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from samrepro.losses import aace_loss, aace_target, smooth_ce


def _aace_by_formula(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """−(1/N) Σ_i Σ_{j≠y} τ_ij log q_ij with τ_j = q_j / (1 − q_y) computed literally (float64)."""
    q = torch.softmax(logits, dim=1)
    q_y = q.gather(1, y[:, None])
    tau = (q / (1 - q_y)).detach()
    tau = tau.scatter(1, y[:, None], 0.0)
    return -(tau * torch.log(q)).sum(1).mean()


def test_aace_value_and_gradient_equal_formula():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 7, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 7, (16,), generator=g)
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    la, lb = aace_loss(a, y), _aace_by_formula(b, y)
    torch.testing.assert_close(la, lb, rtol=1e-12, atol=1e-12)
    la.backward()
    lb.backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12)
    # the closed form of the logit gradient: (q − τ)/N, τ stop-gradient
    q = torch.softmax(logits, 1)
    tau = aace_target(logits, y)
    torch.testing.assert_close(a.grad, (q - tau) / 16, rtol=1e-10, atol=1e-12)
    # τ is a distribution over the wrong classes only
    assert torch.all(tau.gather(1, y[:, None]) == 0)
    torch.testing.assert_close(tau.sum(1), torch.ones(16, dtype=torch.float64))


def test_aace_differs_from_ce_and_kl_form():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]], dtype=torch.float64)
    y = torch.tensor([0, 2])
    q = torch.softmax(logits, 1)
    kl = -torch.log(1 - q.gather(1, y[:, None])).mean()
    tau = aace_target(logits, y)
    entropy = -(tau * torch.log(tau.clamp_min(1e-300))).sum(1).mean()
    # cross-entropy value form = KL form + H(τ) (the docstring's statement)
    torch.testing.assert_close(aace_loss(logits, y), kl + entropy)
    assert abs(float(aace_loss(logits, y) - F.cross_entropy(logits, y))) > 0.1


def test_aace_safe_when_true_class_probability_is_one_in_float32():
    logits = torch.tensor([[120.0, 0.0, -3.0], [0.0, 500.0, 1.0]], requires_grad=True)
    y = torch.tensor([0, 1])
    assert (
        float(torch.softmax(logits.detach(), 1)[0, 0]) == 1.0
    )  # 1 − q_y == 0: the literal formula divides by zero
    loss = aace_loss(logits, y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_mechanism_aace_gradient_grows_while_ce_gradient_vanishes():
    """As q_y → 1: CE's gradient norm → 0, AACE's grows to ≥ 1 (one sample) and its loss grows."""
    ce_norms, aace_norms, aace_vals = [], [], []
    for margin in (0.0, 2.0, 5.0, 10.0, 20.0, 40.0):
        z = torch.tensor([[margin, 0.0, 0.3, -0.2]], requires_grad=True)
        y = torch.tensor([0])
        (g_ce,) = torch.autograd.grad(F.cross_entropy(z, y), z)
        la = aace_loss(z, y)
        (g_aace,) = torch.autograd.grad(la, z)
        ce_norms.append(float(g_ce.norm()))
        aace_norms.append(float(g_aace.norm()))
        aace_vals.append(float(la.detach()))
    assert ce_norms[-1] < 1e-12 and all(a > b for a, b in zip(ce_norms, ce_norms[1:], strict=False))
    assert all(b >= a - 1e-7 for a, b in zip(aace_norms, aace_norms[1:], strict=False))
    assert min(aace_norms[3:]) >= 1.0 > aace_norms[0]  # bounded away from 0 once q_y ≈ 1
    assert all(b > a for a, b in zip(aace_vals, aace_vals[1:], strict=False)) and aace_vals[-1] > 35


def test_aace_reductions():
    z = torch.randn(5, 4, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0])
    per = aace_loss(z, y, reduction="none")
    assert per.shape == (5,)
    torch.testing.assert_close(per.mean(), aace_loss(z, y))
    torch.testing.assert_close(per.sum(), aace_loss(z, y, reduction="sum"))


def test_smooth_ce_uses_alpha_over_c_minus_1():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(8, 5, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 5, (8,), generator=g)
    alpha = 0.1
    t = torch.full((8, 5), alpha / 4, dtype=torch.float64).scatter(1, y[:, None], 1 - alpha)
    ref = -(t * torch.log_softmax(z, 1)).sum(1).mean()
    got = smooth_ce(z, y, alpha)
    torch.testing.assert_close(got, ref)
    (g1,) = torch.autograd.grad(got, z)
    (g2,) = torch.autograd.grad(ref, z)
    torch.testing.assert_close(g1, g2)
    # torch's label_smoothing=α (α/C everywhere) is a different loss
    assert abs(float(got.detach() - F.cross_entropy(z.detach(), y, label_smoothing=alpha))) > 1e-4
    torch.testing.assert_close(smooth_ce(z, y, 0.0), F.cross_entropy(z, y))


@pytest.mark.parametrize(
    "logits, target",
    [
        (torch.zeros(4, 3), torch.zeros(4, 1, dtype=torch.long)),  # (N, 1) labels
        (torch.zeros(4, 3), torch.zeros(3, dtype=torch.long)),  # wrong N
        (torch.zeros(4, 3), torch.zeros(4, 3)),  # one-hot
        (torch.zeros(4, 3), torch.zeros(4)),  # float labels
        (torch.zeros(3), torch.zeros(3, dtype=torch.long)),  # 1-D logits
        (torch.zeros(4, 1), torch.zeros(4, dtype=torch.long)),  # one class
    ],
)
def test_bad_shapes_raise_value_error(logits, target):
    with pytest.raises(ValueError):
        aace_loss(logits, target)
    with pytest.raises(ValueError):
        smooth_ce(logits, target)


def test_bad_alpha_and_reduction():
    with pytest.raises(ValueError, match="alpha"):
        smooth_ce(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), alpha=0.9)
    with pytest.raises(ValueError, match="reduction"):
        aace_loss(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), reduction="avg")


def test_aace_target_stays_float32_for_half_precision_logits():
    """Under bf16 autocast the logits are bf16; τ rounded to bf16 would not sum to 1 and bias the gradient."""
    g = torch.Generator().manual_seed(3)
    logits32 = torch.randn(8, 100, generator=g)
    y = torch.randint(0, 100, (8,), generator=g)
    half = logits32.bfloat16()
    loss = aace_loss(half, y)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, aace_loss(half.float(), y))
