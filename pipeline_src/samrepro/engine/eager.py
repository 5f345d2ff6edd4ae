"""Eager-mode torch.optim without importing torch._dynamo (≈ 1 s of every short training job's start-up).

torch (2.x) routes `Optimizer.add_param_group`, `zero_grad`, `state_dict` and `load_state_dict` through
`torch._disable_dynamo`, a wrapper that imports torch._dynamo on its first call to build
`torch._dynamo.disable(fn)` — a version of fn that runs with TorchDynamo's frame hook switched off — and
caches it as `fn.__dynamo_disable`. `SGD.step` goes through `_use_grad_for_differentiable`, which imports
torch._dynamo on every call to mark graph breaks, and otherwise only sets grad mode to
`defaults["differentiable"]`. In a process that never calls torch.compile, the frame hook is never on, so

    torch._dynamo.disable(fn)(*a) ≡ fn(*a)    and    SGD.step(self) ≡ (grad mode := differentiable; step body)

`use_eager_optimizers()` makes those identities the code path: it fills each wrapper's cache with fn itself,
and replaces SGD.step by its body under the same grad mode — the same arithmetic, bitwise the same results
(tests/test_eager_optim.py trains with and without it). It is process-wide; call it only in processes that
never compile (the `train` command), before the first optimizer is built. On a torch whose internals differ
it changes nothing.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

_PATCHED = "_samrepro_eager"


def _lazy_disable_code() -> Any:
    """The code object of torch's lazy `_disable_dynamo` wrapper (None when this torch has none)."""
    try:
        from torch._compile import _disable_dynamo
    except ImportError:
        return None
    return getattr(_disable_dynamo(lambda: None), "__code__", None)


def _fill_disable_caches(cls: type, code: Any) -> int:
    """Cache fn itself as torch._dynamo.disable(fn) for every lazily wrapped method of cls; count them."""
    n = 0
    for klass in cls.__mro__:
        for attr in vars(klass).values():
            fn = getattr(attr, "__wrapped__", None)
            if fn is not None and getattr(attr, "__code__", None) is code:
                fn.__dynamo_disable = fn
                n += 1
    return n


def _eager_step(cls: type) -> None:
    """cls.step without the graph-break wrapper: grad mode = defaults["differentiable"], then the body."""
    wrapped = cls.__dict__.get("step")
    body = getattr(wrapped, "__wrapped__", None)
    if body is None or getattr(wrapped, _PATCHED, False):
        return

    @functools.wraps(body)
    def step(self: torch.optim.Optimizer, closure: Any = None) -> Any:
        with torch.set_grad_enabled(self.defaults["differentiable"]):
            return body(self, closure)

    setattr(step, _PATCHED, True)
    cls.step = step


def use_eager_optimizers() -> bool:
    """Apply both identities to torch.optim.Optimizer and SGD; False when this torch lacks the wrappers."""
    code = _lazy_disable_code()
    if code is None or _fill_disable_caches(torch.optim.Optimizer, code) == 0:
        return False
    _eager_step(torch.optim.SGD)
    return True
