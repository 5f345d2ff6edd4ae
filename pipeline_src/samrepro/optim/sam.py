"""SAM-family optimizer wrapper — DESIGN.md "SAM", "AACE-SAM perturbation", "Second pass hygiene".

Usage (the two-pass step; ``samrepro.optim.step.train_step`` does this for the engine)::

    loss_perturb(net(x), y).backward(); opt.first_step(zero_grad=True)   # w ← w + ε
    loss_update(net(x), y).backward();  opt.second_step(zero_grad=True)  # w ← saved w, base step

Perturbations (ε from the gradients present at ``first_step``):

- ``"sam"``:  ε = ρ g / (‖g‖₂ + 1e-12), the norm taken over *all* parameters together (Foret et al. 2021).
- ``"aace"``: ε = −ρ g, unnormalized (AACE-SAM; the authors' ``p.sub_(ρ·grad)``), g the AACE-loss gradient.
- ``"asam"``: adaptive SAM (Kwon et al. 2021): ε = ρ T² g / (‖T g‖₂ + 1e-12), the norm over all parameters,
  T elementwise. ``asam_scope="weights"`` (default, Kwon et al.'s definition): T = |w| + η on weight matrices
  and convolution kernels (tensors of ≥ 2 dims), T = 1 on biases and normalization parameters (1-D tensors;
  the optimizer sees tensors, not names — the reference code's ``"weight" in name`` also scales BatchNorm's γ).
  ``asam_scope="all"``: T = |w| + η on every parameter (davda54/sam's ``adaptive`` option, which has η = 0).
  η = ``asam_eta`` (0.01 by default, Kwon et al.). Extra baseline only.

Weight decay, momentum and nesterov belong to the base optimizer, which steps at the *original* w with the
gradient taken at w + ε. ``first_step`` saves w into a persistent buffer and ``second_step`` copies it back,
so the restore is bitwise exact (w + ε − ε is not, in floating point). All per-parameter work uses fused
``torch._foreach_*`` kernels over the parameter list: no Python loop per tensor on the hot path.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

PERTURBATIONS = ("sam", "aace", "asam")
ASAM_SCOPES = ("weights", "all")
_NORM_EPS = 1e-12


class SAM(Optimizer):
    """Wrap ``base_optimizer`` (a ``torch.optim.Optimizer`` class) with a SAM-family perturbation.

    ``param_groups`` and ``state`` are shared with ``self.base_optimizer``, so LR schedulers can be built on
    the SAM object; each group may carry its own ``rho``. ``state_dict()``/``load_state_dict()`` are the base
    optimizer's (momentum buffers included) plus the group keys ``rho``/``perturbation``.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        base_optimizer: type[Optimizer],
        rho: float,
        perturbation: str = "sam",
        *,
        asam_eta: float = 0.01,
        asam_scope: str = "weights",
        **base_kwargs: Any,
    ) -> None:
        if perturbation not in PERTURBATIONS:
            raise ValueError(
                f"perturbation={perturbation!r} is unknown; use one of {', '.join(PERTURBATIONS)}."
            )
        _check_rho(rho)
        if not (isinstance(base_optimizer, type) and issubclass(base_optimizer, Optimizer)):
            raise ValueError(
                f"base_optimizer={base_optimizer!r} must be a torch.optim.Optimizer class (e.g. torch.optim.SGD), "
                "not an instance."
            )
        if asam_eta < 0:
            raise ValueError(f"asam_eta={asam_eta} must be ≥ 0.")
        if asam_scope not in ASAM_SCOPES:
            raise ValueError(f"asam_scope={asam_scope!r} is unknown; use one of {', '.join(ASAM_SCOPES)}.")
        defaults = dict(rho=float(rho), perturbation=perturbation, **base_kwargs)
        super().__init__(params, defaults)
        for group in self.param_groups:
            _check_rho(group["rho"])
            if group["perturbation"] != perturbation:
                raise ValueError(
                    "all parameter groups must use the same perturbation; set it on SAM, not per group."
                )
        self.perturbation = perturbation
        self.asam_eta = float(asam_eta)
        self.asam_scope = asam_scope
        self.base_optimizer = base_optimizer(self.param_groups, **base_kwargs)
        self._link_base()
        self._perturbed: list[Tensor] = []  # params moved by first_step, in order
        self._backup: dict[tuple[int, ...], list[Tensor]] = {}  # persistent copies of w, keyed by param ids

    # ------------------------------------------------------------------ plumbing
    def _link_base(self) -> None:
        """Share groups, state and defaults with the base optimizer (again after it reloads its state)."""
        self.param_groups = self.base_optimizer.param_groups
        self.state = self.base_optimizer.state
        self.defaults.update(self.base_optimizer.defaults)

    def _params_with_grad(self) -> list[tuple[dict[str, Any], list[Tensor], list[Tensor]]]:
        out = []
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                out.append((group, params, [p.grad for p in params]))
        return out

    def _save(self, params: list[Tensor]) -> None:
        key = tuple(id(p) for p in params)
        backup = self._backup.get(key)
        if backup is None:
            self._backup = {key: [torch.empty_like(p, memory_format=torch.preserve_format) for p in params]}
            backup = self._backup[key]
        torch._foreach_copy_(backup, params)
        self._perturbed = params

    # ------------------------------------------------------------------ the two steps
    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Move w to w + ε computed from the gradients now in ``.grad`` (params without grad stay put)."""
        if self._perturbed:
            raise RuntimeError("first_step called twice without second_step; call second_step to restore w.")
        groups = self._params_with_grad()
        if not groups:
            return
        all_params = [p for _, params, _ in groups for p in params]
        self._save(all_params)
        if self.perturbation == "aace":
            for group, params, grads in groups:
                torch._foreach_add_(params, grads, alpha=-group["rho"])
        elif self.perturbation == "asam":
            self._asam_step(groups)
        else:
            norm = _global_norm([g for _, _, grads in groups for g in grads])
            for group, params, grads in groups:
                scale = _scale_like(group["rho"] / (norm + _NORM_EPS), params[0])
                if zero_grad:  # the grads are discarded next: scale them in place, no new tensors
                    torch._foreach_mul_(grads, scale)
                    eps = grads
                else:
                    eps = torch._foreach_mul(grads, scale)
                torch._foreach_add_(params, eps)
        if zero_grad:
            self.zero_grad()

    def _asam_step(self, groups: list[tuple[dict[str, Any], list[Tensor], list[Tensor]]]) -> None:
        """w ← w + ρ T² g / ‖T g‖: scaled tensors get T = |w| + η, the others (1-D under scope "weights") T = 1."""
        split = [self._asam_split(params, grads) for _, params, grads in groups]
        ts = [
            torch._foreach_add(torch._foreach_abs(wp), self.asam_eta) if wp else [] for wp, _, _, _ in split
        ]
        tgs = [torch._foreach_mul(wg, t) if wg else [] for (_, wg, _, _), t in zip(split, ts, strict=True)]
        norm = _global_norm([v for tg, (_, _, _, ug) in zip(tgs, split, strict=True) for v in (*tg, *ug)])
        for (group, params, _), (wp, _, up, ug), t, tg in zip(groups, split, ts, tgs, strict=True):
            scale = _scale_like(group["rho"] / (norm + _NORM_EPS), params[0])
            if wp:
                eps = torch._foreach_mul(tg, t)
                torch._foreach_mul_(eps, scale)
                torch._foreach_add_(wp, eps)
            if up:
                torch._foreach_add_(up, torch._foreach_mul(ug, scale))

    def _asam_split(self, params: list[Tensor], grads: list[Tensor]) -> tuple[list[Tensor], ...]:
        """(scaled params, their grads, unit params, their grads): scope "all" scales every tensor, "weights"
        those of ≥ 2 dims (weight matrices, kernels)."""
        scaled = [self.asam_scope == "all" or p.dim() >= 2 for p in params]
        pick = [(p, g) for p, g, s in zip(params, grads, scaled, strict=True) if s]
        rest = [(p, g) for p, g, s in zip(params, grads, scaled, strict=True) if not s]
        return ([p for p, _ in pick], [g for _, g in pick], [p for p, _ in rest], [g for _, g in rest])

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Restore the saved w, then step the base optimizer with the gradients now present (taken at w + ε)."""
        if self._perturbed:
            key = tuple(id(p) for p in self._perturbed)
            torch._foreach_copy_(self._perturbed, self._backup[key])
            self._perturbed = []
        self.base_optimizer.step()
        self._opt_called = True  # LR schedulers built on this object check it (no spurious order warning)
        if zero_grad:
            self.zero_grad()

    def step(self, closure=None):  # type: ignore[override]
        """Closure form: ``closure`` re-evaluates the loss with grads enabled (it must call backward)."""
        if closure is None:
            raise ValueError(
                "SAM.step needs a closure that recomputes the loss; or call first_step/second_step."
            )
        closure = torch.enable_grad()(closure)
        self.first_step(zero_grad=True)
        loss = closure()
        self.second_step()
        return loss

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        if self._perturbed:
            raise RuntimeError(
                "state_dict() between first_step and second_step would save perturbed weights' step."
            )
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        self.base_optimizer.load_state_dict(state_dict)
        self._link_base()

    def __repr__(self) -> str:
        return f"SAM(perturbation={self.perturbation!r}, base={self.base_optimizer!r})"


def _check_rho(rho: Any) -> None:
    if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not rho > 0:
        raise ValueError(f"rho={rho!r} must be a number > 0 (the perturbation radius, e.g. 0.05).")


def _global_norm(tensors: list[Tensor]) -> Tensor:
    """‖·‖₂ over all tensors together (one fused per-tensor norm kernel, then the norm of the norms)."""
    norms = torch._foreach_norm(tensors)
    device = tensors[0].device
    return torch.linalg.vector_norm(torch.stack([n.to(device) for n in norms]))


def _scale_like(scale: Tensor, ref: Tensor) -> Tensor:
    return scale.to(device=ref.device, dtype=ref.dtype)
