"""ASAM's perturbation (Kwon et al. 2021) against hand computations: ε = ρ T² g / ‖T g‖, both choices of T."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from samrepro.optim import build_optimizer, get_setup
from samrepro.optim.sam import SAM

W = [[1.0, -2.0], [0.5, 0.0]]
GW = [[0.1, 0.2], [-0.3, 0.4]]
B = [2.0, -0.5]
GB = [0.5, -0.5]
RHO = 0.1


def _perturb(**kw) -> tuple[torch.Tensor, torch.Tensor]:
    w = nn.Parameter(torch.tensor(W, dtype=torch.float64))
    b = nn.Parameter(torch.tensor(B, dtype=torch.float64))
    w.grad, b.grad = torch.tensor(GW, dtype=torch.float64), torch.tensor(GB, dtype=torch.float64)
    opt = SAM([w, b], torch.optim.SGD, rho=RHO, perturbation="asam", lr=0.1, **kw)
    opt.first_step()
    return w.detach() - torch.tensor(W, dtype=torch.float64), b.detach() - torch.tensor(
        B, dtype=torch.float64
    )


def test_kwon_weights_scaled_biases_not():
    # T_W = |W| + 0.01 = [[1.01, 2.01], [0.51, 0.01]];  T_W ∘ g_W = [[0.101, 0.402], [-0.153, 0.004]]
    # T_b = 1: T_b ∘ g_b = [0.5, -0.5];  ‖T g‖² = 0.010201 + 0.161604 + 0.023409 + 0.000016 + 0.5 = 0.69523
    # ε_W = ρ T_W² g_W / ‖T g‖ = 0.1 · [[0.10201, 0.80802], [-0.07803, 0.00004]] / √0.69523;  ε_b = 0.1 · g_b / √0.69523
    eps_w, eps_b = _perturb()  # the defaults: scope "weights", η = 0.01
    norm = math.sqrt(0.69523)
    torch.testing.assert_close(
        eps_w, torch.tensor([[0.010201, 0.080802], [-0.007803, 0.000004]], dtype=torch.float64) / norm
    )
    torch.testing.assert_close(eps_b, torch.tensor([0.05, -0.05], dtype=torch.float64) / norm)


def test_every_parameter_scaled():
    # scope "all", η = 0 (davda54/sam's adaptive): T_W = |W| = [[1, 2], [0.5, 0]], T_b = |b| = [2, 0.5]
    # T g = [[0.1, 0.4], [-0.15, 0]] and [1.0, -0.25];  ‖T g‖² = 0.01 + 0.16 + 0.0225 + 0 + 1 + 0.0625 = 1.255
    # ε = 0.1 · T² g / √1.255: [[0.1, 0.8], [-0.075, 0]] and [2.0, -0.125]
    eps_w, eps_b = _perturb(asam_scope="all", asam_eta=0.0)
    norm = math.sqrt(1.255)
    torch.testing.assert_close(
        eps_w, torch.tensor([[0.01, 0.08], [-0.0075, 0.0]], dtype=torch.float64) / norm
    )
    torch.testing.assert_close(eps_b, torch.tensor([0.2, -0.0125], dtype=torch.float64) / norm)


def test_batchnorm_parameters_get_t_equal_one_and_the_config_reaches_the_optimizer():
    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    for p in net.parameters():
        p.grad = torch.ones_like(p)
    w0 = [p.detach().clone() for p in net.parameters()]
    opt = build_optimizer(
        get_setup("ASAM"), net.parameters(), 0.1, 0.9, 0.0, False, 0.5, asam={"scope": "weights", "eta": 0.01}
    )
    assert (opt.asam_scope, opt.asam_eta) == ("weights", 0.01)
    opt.first_step()
    eps = [p.detach() - w for p, w in zip(net.parameters(), w0, strict=True)]
    # the linear bias, BatchNorm's weight and bias (1-D) all move by the same ρ g / ‖T g‖ (T = 1, g = 1)
    assert torch.allclose(eps[1], eps[2]) and torch.allclose(eps[2], eps[3])
    t = w0[0].abs() + 0.01
    assert torch.allclose(eps[0] / eps[1][0], t * t)  # the weight matrix: T² relative to them
    with pytest.raises(ValueError, match="asam_scope='both' is unknown"):
        SAM(list(net.parameters()), torch.optim.SGD, rho=0.1, perturbation="asam", asam_scope="both", lr=0.1)
