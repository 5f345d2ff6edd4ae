"""samrepro.report.stats against scipy and against values computed by hand (or by an independent route)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate
from scipy import stats as st

from samrepro.report import stats

A = [84.1, 84.6, 83.9, 84.4]
B = [83.2, 83.9, 83.1]


def test_welch_ci_and_one_sided_p_equal_scipy():
    w = stats.welch(A, B)
    ref = st.ttest_ind(A, B, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert w.delta == pytest.approx(np.mean(A) - np.mean(B))
    assert (w.ci_low, w.ci_high) == (pytest.approx(ci.low, rel=1e-12), pytest.approx(ci.high, rel=1e-12))
    assert w.df == pytest.approx(ref.df)
    greater = st.ttest_ind(A, B, equal_var=False, alternative="greater").pvalue
    less = st.ttest_ind(A, B, equal_var=False, alternative="less").pvalue
    assert stats.one_sided_p(w, "greater") == pytest.approx(greater, rel=1e-12)
    assert stats.one_sided_p(w, "less") == pytest.approx(less, rel=1e-12)
    reverse = stats.welch(B, A)
    rci = st.ttest_ind(B, A, equal_var=False).confidence_interval()
    assert (reverse.ci_low, reverse.ci_high) == (pytest.approx(rci.low), pytest.approx(rci.high))


def test_welch_ignores_non_finite_seeds_and_needs_two_per_side():
    w = stats.welch([*A, math.nan, math.inf], B)
    assert w.ci_low == pytest.approx(stats.welch(A, B).ci_low)
    one = stats.welch([84.0], B)
    assert one.delta == pytest.approx(84.0 - np.mean(B)) and math.isnan(one.ci_low)
    assert math.isnan(stats.one_sided_p(one, "greater"))
    assert math.isnan(stats.welch([math.nan] * 3, B).delta)
    flat = stats.welch([1.0, 1.0], [0.0, 0.0])  # no spread: no CI and no p (scipy's answer is NaN too)
    assert math.isnan(flat.ci_low) and math.isnan(stats.one_sided_p(flat, "greater"))
    rounded = stats.welch(
        [94.0 + 0.1 * 2] * 3, [94.1, 94.1 + 1e-14, 94.1]
    )  # identical but for float rounding
    assert math.isnan(stats.one_sided_p(rounded, "greater"))
    with pytest.raises(ValueError, match="direction='up'"):
        stats.one_sided_p(stats.welch(A, B), "up")


def test_holm_by_hand():
    # sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 -> running max 0.06
    out = stats.holm([0.01, 0.04, 0.03, 0.005, math.nan])
    assert out[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02]) and math.isnan(out[4])
    assert stats.holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert stats.holm([]) == []


def test_hedges_g_by_hand():
    # Δ = 1, pooled std = 1, ν = 4: J = Γ(2) / (√2 Γ(3/2)) = 1 / (√2 · √π / 2) = √2/√π = 0.797885
    assert stats.hedges_correction(4) == pytest.approx(math.sqrt(2 / math.pi))
    assert stats.hedges_g([1.0, 2.0, 3.0], [0.0, 1.0, 2.0]) == pytest.approx(math.sqrt(2 / math.pi))
    assert stats.hedges_correction(100) == pytest.approx(
        1 - 3 / (4 * 100 - 1), abs=1e-5
    )  # the usual approximation
    assert math.isnan(stats.hedges_g([1.0], [0.0, 1.0]))


def _power_by_integration(nc: float, df: float, alpha: float = 0.05) -> float:
    """P((Z + λ)/√(V/ν) > t_crit) = ∫ P(Z > t_crit √(v/ν) − λ) f_χ²ν(v) dv — no noncentral-t code involved."""
    crit = st.t.ppf(1 - alpha, df)
    return integrate.quad(
        lambda v: st.norm.sf(crit * math.sqrt(v / df) - nc) * st.chi2.pdf(v, df), 0, math.inf
    )[0]


@pytest.mark.parametrize(("nc", "df"), [(2.0, 4.0), (0.5, 10.0), (3.0, 2.5)])
def test_power_is_the_noncentral_t_tail(nc, df):
    assert stats.power(nc, 1.0, df) == pytest.approx(_power_by_integration(nc, df), abs=1e-7)
    assert stats.power(2 * nc, 2.0, df) == pytest.approx(stats.power(nc, 1.0, df))  # only δ/SE matters


def test_seeds_needed_matches_the_textbook_sample_sizes():
    # One-sided two-sample t-test, α = 0.05, power 0.8 (equal stds: Welch's ν = 2n − 2 as the pooled test):
    # Cohen's d = 0.5 -> 51 per group, d = 0.8 -> 21, d = 1 -> 14 (G*Power's tables).
    assert [stats.seeds_needed(d, 1.0, 1.0) for d in (0.5, 0.8, 1.0)] == [51, 21, 14]
    n = stats.seeds_needed(0.3, 0.2, 0.4)
    var, q = 0.2**2 + 0.4**2, 0.2**4 + 0.4**4
    pw = [_power_by_integration(0.3 / math.sqrt(var / k), (k - 1) * var**2 / q) for k in (n - 1, n)]
    assert pw[0] < 0.8 <= pw[1]  # the smallest n reaching 80 %
    assert stats.seeds_needed(-0.3, 0.2, 0.4) is None and stats.seeds_needed(0.0, 1, 1) is None
    assert stats.seeds_needed(1e-4, 1.0, 1.0) is None  # beyond the search cap
    assert stats.seeds_needed(0.1, 0.0, 0.0) == 2


def test_minimum_detectable_effect_has_80_percent_power():
    mde = stats.min_detectable_effect(0.3, 0.5, 3, 4)
    se = math.sqrt(0.3**2 / 3 + 0.5**2 / 4)
    df = stats.welch_df(0.3, 0.5, 3, 4)
    assert _power_by_integration(mde / se, df) == pytest.approx(0.8, abs=1e-6)
    assert math.isnan(stats.min_detectable_effect(0.3, 0.5, 1, 4))
