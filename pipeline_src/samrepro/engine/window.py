"""Per-step training figures kept on the device between host synchronisations.

A GPU runs ahead of Python only while nothing asks it for a value: every `float(loss)`, `bool(isfinite(...))`
or `.item()` waits for all queued kernels and leaves the device idle until the next step's kernels arrive.
So each step t writes its update loss ℓ_t and its correct count c_t into a small device buffer
(`StepWindow.record`, no read), and every `sync_every` steps, at the epoch's end and before a checkpoint,
one read (`drain`) brings back [ℓ_t, c_t] of the whole window. The host then forms the epoch sums
Σ_t ℓ_t·n_t and Σ_t c_t in step order — the same float64 additions, in the same order, as a per-step read, so
history.csv and a resumed run are bitwise unchanged — and checks every ℓ_t for NaN/inf, naming the first bad
step. Under DDP the all-reduced stop flag comes back in the same read.

`HostReads` counts the Tensor → Python conversions (the host reads) made while it is active: the test of
"at most one read per `sync_every` steps" and bench/gpu_check.py use it.
"""

from __future__ import annotations

import functools

import torch

# every Tensor method that hands a value to Python, i.e. waits for the device when the tensor lives there
READ_METHODS = ("item", "tolist", "numpy", "__float__", "__int__", "__bool__", "__index__")


class StepWindow:
    """A [size, 2] float64 buffer on the device: (update loss, correct count) of the steps since the last read."""

    def __init__(self, size: int, device: torch.device, first_step: int = 0) -> None:
        self.size = int(size)
        self.buf = torch.zeros(self.size, 2, dtype=torch.float64, device=device)
        self.first_step = first_step  # the epoch's 0-based index of the window's first step
        self.counts: list[int] = []  # batch sizes are known on the host: no read needed

    def __len__(self) -> int:
        return len(self.counts)

    def full(self) -> bool:
        return len(self.counts) >= self.size

    def record(self, loss: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """Queue the step's loss and top-1 hits into the buffer (device ops only)."""
        row = self.buf[len(self.counts)]
        row[0].copy_(loss.detach())
        row[1].copy_((logits.argmax(dim=1) == targets).sum())
        self.counts.append(int(targets.shape[0]))

    def nonfinite(self) -> torch.Tensor:
        """How many recorded losses are NaN/inf, as a float64 device scalar (no read)."""
        return (~torch.isfinite(self.buf[: len(self.counts), 0])).sum().to(torch.float64)

    def drain(self, extra: torch.Tensor | None = None) -> tuple[list[tuple[float, float, int]], list[float]]:
        """One host read: (loss, correct, n) of every recorded step, and the values of `extra` (e.g. flags
        all-reduced over ranks) if given; the window then starts after its last step."""
        k = len(self.counts)
        parts = [self.buf[:k].reshape(-1)]
        if extra is not None:
            parts.append(extra.reshape(-1).to(self.buf.dtype))
        values = torch.cat(parts).tolist()
        rows = [(values[2 * i], values[2 * i + 1], self.counts[i]) for i in range(k)]
        self.first_step += k
        self.counts = []
        return rows, values[2 * k :]


class HostReads:
    """Counts Tensor → Python reads (`READ_METHODS`) while `active`; use as `with HostReads() as reads:`."""

    def __init__(self) -> None:
        self.count = 0
        self.active = True

    def __enter__(self) -> HostReads:
        self._saved = {name: getattr(torch.Tensor, name) for name in READ_METHODS}
        for name, real in self._saved.items():
            setattr(torch.Tensor, name, self._counting(real))
        return self

    def __exit__(self, *exc: object) -> None:
        for name, real in self._saved.items():
            setattr(torch.Tensor, name, real)

    def _counting(self, real):  # noqa: ANN001, ANN202 - wraps any Tensor method
        @functools.wraps(real)
        def wrapper(t, *a, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
            if self.active:
                self.count += 1
            return real(t, *a, **kw)

        return wrapper
