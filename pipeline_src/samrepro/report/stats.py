"""Statistics of a claim "setup beats baseline" from per-seed results (scipy; tests compare with scipy.stats).

With a = the setup's seeds (n_a, mean ā, variance s_a²) and b = the baseline's:

- Δ = ā − b̄, SE = √(s_a²/n_a + s_b²/n_b), Welch–Satterthwaite
  ν = SE⁴ / ((s_a²/n_a)²/(n_a − 1) + (s_b²/n_b)²/(n_b − 1)); 95 % CI = Δ ± t_{0.975, ν} SE.
- One-sided p in the claimed direction: P(T_ν ≥ Δ/SE) for "greater", P(T_ν ≤ Δ/SE) for "less".
- Holm: the k-th smallest of m p-values becomes max_{j ≤ k} min(1, (m − j + 1) p_(j)).
- Hedges' g = J(n_a + n_b − 2) · Δ / s_pooled, J(ν) = Γ(ν/2) / (√(ν/2) Γ((ν − 1)/2)) (exact correction).
- Power of the one-sided level-α test for a true difference δ: P(T'_{ν, λ} > t_{1−α, ν}) with the noncentral t
  of noncentrality λ = δ / SE. The minimum detectable effect is the δ of power 0.8 at the seeds run; the seeds
  needed per arm is the smallest n (both arms n) whose power for δ reaches 0.8, with SE² = (σ_a² + σ_b²)/n
  and ν = (n − 1)(σ_a² + σ_b²)² / (σ_a⁴ + σ_b⁴).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special
from scipy import stats as st

ALPHA = 0.05
POWER = 0.8
MAX_SEEDS = 10_000  # the sample-size search stops here: "more than MAX_SEEDS" is the answer beyond
DIRECTIONS = ("greater", "less")
SE_FLOOR = 1e-9  # a standard error below this share of the means is float rounding of identical seeds


@dataclass(frozen=True)
class Welch:
    """Difference of means with its Welch standard error, degrees of freedom and two-sided CI."""

    delta: float
    se: float
    df: float
    ci_low: float
    ci_high: float


def finite(values: Sequence[float]) -> np.ndarray:
    """The finite values (NaN/inf seeds are counted elsewhere, never silently averaged)."""
    arr = np.asarray(values, dtype=float)
    return arr[np.isfinite(arr)]


def welch(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Welch:
    """Δ = mean(a) − mean(b) with its Welch–Satterthwaite CI; NaN CI when a side has < 2 seeds or SE = 0."""
    a, b = finite(a), finite(b)
    delta = float(a.mean() - b.mean()) if a.size and b.size else math.nan
    if a.size < 2 or b.size < 2:
        return Welch(delta, math.nan, math.nan, math.nan, math.nan)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    if se <= SE_FLOOR * max(abs(a.mean()), abs(b.mean()), 1.0):  # identical seeds, up to rounding: no test
        return Welch(delta, 0.0, math.nan, math.nan, math.nan)
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    half = st.t.ppf(0.5 + level / 2, df) * se
    return Welch(delta, se, float(df), delta - half, delta + half)


def one_sided_p(w: Welch, direction: str) -> float:
    """p of the one-sided Welch test of "a − b is {direction} than 0"; NaN without a standard error."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction={direction!r}: use one of {DIRECTIONS}")
    if not w.se > 0 or math.isnan(w.df):
        return math.nan
    t = w.delta / w.se
    return float(st.t.sf(t, w.df) if direction == "greater" else st.t.cdf(t, w.df))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the input order; NaN entries stay NaN and do not count in m."""
    p = np.asarray(pvalues, dtype=float)
    idx = np.flatnonzero(~np.isnan(p))
    out = np.full(p.shape, math.nan)
    order = idx[np.argsort(p[idx], kind="stable")]
    m = order.size
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * p[i]))
        out[i] = running
    return out.tolist()


def hedges_correction(df: float) -> float:
    """J(ν) = Γ(ν/2) / (√(ν/2) Γ((ν−1)/2)), the exact small-sample bias correction of Cohen's d."""
    return math.exp(special.gammaln(df / 2) - 0.5 * math.log(df / 2) - special.gammaln((df - 1) / 2))


def hedges_g(a: Sequence[float], b: Sequence[float]) -> float:
    """Hedges' g = J · Δ / s_pooled; NaN when a side has < 2 seeds or the pooled std is 0."""
    a, b = finite(a), finite(b)
    if a.size < 2 or b.size < 2:
        return math.nan
    df = a.size + b.size - 2
    pooled = math.sqrt(((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / df)
    if pooled == 0:
        return math.nan
    return hedges_correction(df) * float(a.mean() - b.mean()) / pooled


def power(effect: float, se: float, df: float, alpha: float = ALPHA) -> float:
    """Power of the one-sided level-α t-test for a true difference `effect` > 0 in the tested direction."""
    return float(st.nct.sf(st.t.ppf(1 - alpha, df), df, effect / se))


def welch_df(sd_a: float, sd_b: float, n_a: float, n_b: float) -> float:
    """Welch–Satterthwaite degrees of freedom for the given stds and seeds per arm."""
    va, vb = sd_a**2 / n_a, sd_b**2 / n_b
    return (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))


def min_detectable_effect(
    sd_a: float, sd_b: float, n_a: int, n_b: int, target: float = POWER, alpha: float = ALPHA
) -> float:
    """The smallest true |Δ| that the one-sided test detects with power `target` at these seeds and stds."""
    if n_a < 2 or n_b < 2 or not sd_a**2 + sd_b**2 > 0:
        return math.nan
    se = math.sqrt(sd_a**2 / n_a + sd_b**2 / n_b)
    df = welch_df(sd_a, sd_b, n_a, n_b)
    hi = se * (st.t.ppf(1 - alpha, df) + st.t.ppf(target, df) + 10)
    return float(optimize.brentq(lambda d: power(d, se, df, alpha) - target, 0.0, hi, xtol=1e-10))


def seeds_needed(
    effect: float, sd_a: float, sd_b: float, target: float = POWER, alpha: float = ALPHA, cap: int = MAX_SEEDS
) -> int | None:
    """Smallest n ≥ 2 seeds per arm whose one-sided test detects `effect` (> 0) with power `target`.

    None when the effect is not positive or finite, the stds are unknown, or more than `cap` seeds are needed.
    """
    var = sd_a**2 + sd_b**2
    if not (math.isfinite(effect) and effect > 0 and math.isfinite(var)):
        return None
    if var == 0:
        return 2  # no spread at all: any difference shows with the minimum of two seeds per arm

    def pw(n: int) -> float:
        df = (n - 1) * var**2 / (sd_a**4 + sd_b**4)
        return power(effect, math.sqrt(var / n), df, alpha)

    if pw(cap) < target:
        return None
    lo, hi = 1, cap  # pw(lo) < target (n = 1 has no test), pw(hi) ≥ target; power rises with n
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if pw(mid) < target else (lo, mid)
    return hi
