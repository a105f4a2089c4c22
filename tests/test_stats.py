"""lib.stats: paired seed differences, Holm families, detectable effects and verdicts.

Each test is checked against something computed another way (scipy directly, a hand
computation, a textbook example, or a simulation where the true answer is known).
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import integrate, stats

from lib.stats import (
    Difference,
    Verdict,
    holm,
    holm_adjust,
    mde_of,
    minimum_detectable_effect,
    paired_difference,
    paired_power,
    verdict,
    verdict_reason,
)

A = [0.61, 0.63, 0.60]
B = [0.58, 0.59, 0.585]


def _summary_difference(diff: float, sd: float, n: int, confidence: float = 0.95) -> Difference:
    """A Difference from summary statistics, built with scipy alone (not with lib.stats)."""
    se = sd / math.sqrt(n)
    low, high = stats.t.interval(confidence, n - 1, loc=diff, scale=se)
    p = 2 * stats.t.sf(abs(diff) / se, n - 1)
    return Difference(diff, float(low), float(high), n, tuple(range(n)), float(p), sd, confidence)


# ---------------------------------------------------------------- paired_difference

def test_paired_difference_matches_ttest_rel_and_hand_computation():
    d = paired_difference(A, B)
    ref = stats.ttest_rel(A, B)
    ci = ref.confidence_interval(0.95)
    assert d.low == pytest.approx(ci.low, abs=1e-15) and d.high == pytest.approx(ci.high, abs=1e-15)
    assert d.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    # by hand: differences 0.03, 0.04, 0.015; mean ± t_{0.975, 2} * sd / sqrt(3)
    diffs = np.array([0.03, 0.04, 0.015])
    mean, sd = diffs.mean(), math.sqrt(((diffs - diffs.mean()) ** 2).sum() / 2)
    q = 0.975
    t_crit = (2 * q - 1) / math.sqrt(2 * q * (1 - q))  # t_{0.975, 2}, closed form for 2 df
    half = t_crit * sd / math.sqrt(3)
    assert d.diff == pytest.approx(mean, abs=1e-12) and d.sd == pytest.approx(sd, abs=1e-12)
    assert (d.low, d.high) == pytest.approx((mean - half, mean + half), abs=1e-12)
    assert d.diff == pytest.approx(0.028333333333, abs=1e-9)
    assert (d.low, d.high) == pytest.approx((-0.0029247, 0.0595914), abs=1e-6)
    assert d.p_value == pytest.approx(0.0599, abs=1e-4)
    assert d.n == 3 and d.seeds == (0, 1, 2) and d.confidence == 0.95
    assert d.p_adjusted is None and d.family_size == 1 and d.p == d.p_value
    # another confidence goes through to scipy
    d90 = paired_difference(A, B, confidence=0.90)
    ci90 = ref.confidence_interval(0.90)
    assert (d90.low, d90.high) == pytest.approx((ci90.low, ci90.high), abs=1e-15)
    assert d90.high - d90.low < d.high - d.low


def test_pairing_is_by_seed_not_by_order_and_missing_seeds_are_dropped():
    a = {0: 0.61, 1: 0.63, 2: 0.60}
    b = {2: 0.585, 0: 0.58, 1: 0.59}  # same values, keys in another order
    assert paired_difference(a, b) == paired_difference(A, B)
    # a - b, not b - a
    assert paired_difference(b, a).diff == pytest.approx(-paired_difference(a, b).diff)
    # seed 3 only in a, seed 1 NaN in b, seed 5 only in b: only seeds 0 and 2 pair up
    a2 = {0: 0.61, 1: 0.63, 2: 0.60, 3: 0.9}
    b2 = {2: 0.585, 0: 0.58, 1: float("nan"), 5: 0.1}
    d = paired_difference(a2, b2)
    assert d.seeds == (0, 2) and d.n == 2
    ref = stats.ttest_rel([0.61, 0.60], [0.58, 0.585])
    assert d.p_value == pytest.approx(ref.pvalue) and d.low == pytest.approx(ref.confidence_interval().low)


def test_too_few_seeds_and_zero_variance_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        one = paired_difference({0: 0.6, 1: 0.7}, {0: 0.5})
        assert one.n == 1 and one.diff == pytest.approx(0.1)
        assert math.isnan(one.low) and math.isnan(one.high) and math.isnan(one.p_value)
        none = paired_difference({0: 0.6}, {1: 0.5})
        assert none.n == 0 and math.isnan(none.diff)
        # every seed moves by the same 0.03 (up to binary rounding): a chance tie, no interval
        same = paired_difference([0.61, 0.63, 0.60], [0.58, 0.60, 0.57])
        assert same.sd == 0.0 and same.diff == pytest.approx(0.03)
        assert math.isnan(same.low) and math.isnan(same.high) and math.isnan(same.p_value)
        equal = paired_difference([0.61, 0.63, 0.60], [0.61, 0.63, 0.60])
        assert equal.diff == 0.0 and equal.low == equal.high == 0.0 and equal.p_value == 1.0
        # ... and such a difference survives holm and the MDE without warnings either
        fam = holm({"same": same, "equal": equal, "real": paired_difference(A, B)})
        assert math.isnan(fam["same"].low) and math.isnan(fam["same"].p_adjusted)
        assert fam["equal"].p_adjusted == 1.0
        assert minimum_detectable_effect(0.0, 3) == 0.0
        assert minimum_detectable_effect(0.01, 1) == math.inf and mde_of(one) == math.inf


def test_interval_covers_the_true_difference_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    draws, n, true_diff, sd = 20_000, 3, 0.02, 0.015
    base = rng.normal(0.6, 0.05, size=(draws, n))  # seed effects, shared by both arms
    a = base + true_diff + rng.normal(0, sd / math.sqrt(2), size=(draws, n))
    b = base + rng.normal(0, sd / math.sqrt(2), size=(draws, n))
    ci = stats.ttest_rel(a, b, axis=1).confidence_interval(0.95)
    # paired_difference gives exactly the vectorised scipy answer (checked on a subsample),
    # so the coverage of the 20,000 vectorised intervals is paired_difference's coverage
    for i in range(0, draws, 40):
        d = paired_difference(dict(enumerate(a[i])), dict(enumerate(b[i])))
        assert (d.low, d.high) == pytest.approx((ci.low[i], ci.high[i]), rel=1e-9, abs=1e-12)
    covered = np.mean((ci.low <= true_diff) & (true_diff <= ci.high))
    assert abs(covered - 0.95) <= 0.01, covered
    # and the check has teeth: the naive normal interval (z instead of t, n = 3) under-covers
    diffs = a - b
    half = 1.96 * diffs.std(axis=1, ddof=1) / math.sqrt(n)
    naive = np.mean(np.abs(diffs.mean(axis=1) - true_diff) <= half)
    assert naive < 0.90


# ---------------------------------------------------------------- holm

def test_holm_adjusted_p_values_match_the_textbook_example():
    raw = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, max(0.06, 0.04*1) = 0.06
    assert holm_adjust(raw) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjust([0.5, 0.6, 0.01]) == pytest.approx([1.0, 1.0, 0.03])  # capped at 1
    assert holm_adjust([0.02, 0.02]) == pytest.approx([0.04, 0.04])  # ties
    fam = {name: Difference(0.01, -0.01, 0.03, 3, (0, 1, 2), p, 0.01)
           for name, p in zip("abcd", raw)}
    out = holm(fam, alpha=0.05)
    assert list(out) == list("abcd")
    assert [out[k].p_adjusted for k in "abcd"] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert all(out[k].family_size == 4 and out[k].family_alpha == 0.05 for k in "abcd")
    assert all(out[k].p_value == fam[k].p_value for k in "abcd")  # raw p kept
    # step-down levels: d (rank 0) at 0.05/4 and a (rank 1) at 0.05/3 are rejected; c (rank 2)
    # is not, so the step-down stops at 0.05/2, which b (rank 3) keeps
    assert out["d"].confidence == pytest.approx(1 - 0.05 / 4)
    assert out["a"].confidence == pytest.approx(1 - 0.05 / 3)
    assert out["c"].confidence == pytest.approx(1 - 0.05 / 2)
    assert out["b"].confidence == pytest.approx(1 - 0.05 / 2)
    for k in "abcd":
        low, high = stats.t.interval(out[k].confidence, 2, loc=0.01, scale=0.01 / math.sqrt(3))
        assert (out[k].low, out[k].high) == pytest.approx((low, high))


def test_holm_of_one_comparison_is_the_plain_interval():
    d = paired_difference(A, B)
    one = holm({"x": d})["x"]
    assert (one.low, one.high) == pytest.approx((d.low, d.high), abs=1e-14)
    assert one.p_adjusted == pytest.approx(d.p_value) and one.confidence == pytest.approx(0.95)


def test_holm_keeps_family_wise_error_at_5_percent_and_intervals_agree_with_p():
    rng = np.random.default_rng(0)
    families, m, n = 20_000, 5, 3
    x = rng.normal(0.0, 0.01, size=(families, m, n))  # five true-null comparisons per family
    y = rng.normal(0.0, 0.01, size=(families, m, n))
    res = stats.ttest_rel(x, y, axis=2)
    p = np.asarray(res.pvalue)
    adjusted = np.array([holm_adjust(row) for row in p])
    fwer = np.mean((adjusted <= 0.05).any(axis=1))
    assert fwer <= 0.05 + 0.005, fwer  # Holm: <= 5 % (≈ 1 - 0.99**5 = 4.9 % here)
    assert np.mean((p <= 0.05).any(axis=1)) > 0.2  # uncorrected would fail the check
    # holm() on whole families: an interval excludes zero exactly when p_adjusted <= alpha,
    # so the corrected intervals have the same family-wise error
    diffs, sds = (x - y).mean(axis=2), (x - y).std(axis=2, ddof=1)
    for f in range(0, families, 40):
        fam = {str(j): Difference(float(diffs[f, j]), 0.0, 0.0, n, (0, 1, 2), float(p[f, j]),
                                  float(sds[f, j])) for j in range(m)}
        out = holm(fam)
        for j in range(m):
            o = out[str(j)]
            assert o.p_adjusted == pytest.approx(adjusted[f, j])
            assert (o.low > 0 or o.high < 0) == (o.p_adjusted <= 0.05)
    # ... also in families with real effects, where the step-down stops part-way
    for f in range(0, families, 200):
        shift = np.array([0.03, 0.02, 0.01, 0.0, 0.0])[:, None]
        fam = {str(j): paired_difference(x[f, j] + shift[j], y[f, j]) for j in range(m)}
        for o in holm(fam).values():
            assert (o.low > 0 or o.high < 0) == (o.p_adjusted <= 0.05)


# ---------------------------------------------------------------- minimum detectable effect

def test_minimum_detectable_effect_has_the_requested_power():
    for n, sd, alpha, power, family in [(3, 1.0, 0.05, 0.8, 1), (2, 0.01, 0.05, 0.8, 1),
                                        (5, 0.02, 0.05, 0.9, 4), (4, 0.5, 0.1, 0.5, 2)]:
        mde = minimum_detectable_effect(sd, n, alpha=alpha, power=power, family_size=family)
        # recompute the power with nct directly
        df, level = n - 1, alpha / family
        tc = stats.t.ppf(1 - level / 2, df)
        ncp = mde * math.sqrt(n) / sd
        lower = stats.nct.cdf(-tc, df, ncp)  # NaN far in the tail (df = 1, ncp = 16): ~0 there
        achieved = stats.nct.sf(tc, df, ncp) + (0.0 if math.isnan(lower) else lower)
        assert achieved == pytest.approx(power, abs=1e-8)
        # and without nct: T = (Z + ncp) / sqrt(V / df), V ~ chi2(df), integrated over V
        reject = lambda v: (stats.norm.cdf(ncp - tc * math.sqrt(v / df))
                            + stats.norm.cdf(-ncp - tc * math.sqrt(v / df))) * stats.chi2.pdf(v, df)
        assert integrate.quad(reject, 0, np.inf, limit=200)[0] == pytest.approx(power, abs=1e-6)
        assert paired_power(mde, sd, n, alpha, family) == pytest.approx(power, abs=1e-8)
    # n = 3, sd = 1: about 3.26 standard deviations of the differences
    assert minimum_detectable_effect(1.0, 3) == pytest.approx(3.2640, abs=1e-3)
    assert minimum_detectable_effect(0.01, 3) == pytest.approx(0.032640, abs=1e-5)  # scales with sd
    values = [minimum_detectable_effect(1.0, n) for n in range(2, 8)]
    assert all(a > b for a, b in zip(values, values[1:]))  # decreases with n
    assert minimum_detectable_effect(1.0, 3, family_size=5) > minimum_detectable_effect(1.0, 3)
    assert minimum_detectable_effect(1.0, 3, power=0.9) > minimum_detectable_effect(1.0, 3)


def test_mde_of_uses_the_observed_sd_and_the_family_level():
    d = paired_difference(A, B)
    assert mde_of(d) == pytest.approx(minimum_detectable_effect(d.sd, 3))
    fam = holm({"x": d, "y": paired_difference(B, A), "z": d})
    assert mde_of(fam["x"]) == pytest.approx(minimum_detectable_effect(d.sd, 3, family_size=3))


# ---------------------------------------------------------------- verdicts

def test_each_verdict_is_produced_by_its_rule():
    reproduced = _summary_difference(0.03, 0.005, 3)  # interval ≈ +0.018 to +0.042
    assert reproduced.low > 0
    assert verdict(reproduced, 0.05, True) == Verdict.REPRODUCED == "reproduced"
    assert verdict(reproduced, None, False) == "reproduced"

    null = _summary_difference(0.0, 0.005, 3)  # ≈ -0.012 to +0.012, MDE ≈ 0.016
    assert mde_of(null) < 0.05 and null.high < 0.05
    assert verdict(null, 0.05, regime_matches=True) == "contradicted"
    assert verdict(null, 0.05, regime_matches=False) == "not supported at this scale"

    noisy = _summary_difference(0.0, 0.02, 3)  # MDE ≈ 0.065 > the claimed 0.02
    assert mde_of(noisy) > 0.02
    assert verdict(noisy, 0.02, regime_matches=True) == "inconclusive"

    between = _summary_difference(0.02, 0.02, 5)  # ≈ -0.005 to +0.045 holds 0 and 0.04; MDE ≈ 0.034
    assert between.low < 0 < 0.04 < between.high and mde_of(between) < 0.04
    assert verdict(between, 0.04, True) == "inconclusive"

    # no claimed size: only an interval on the wrong side of zero contradicts
    below = _summary_difference(-0.03, 0.005, 3)
    assert verdict(below, None, True) == "contradicted"
    assert verdict(below, None, False) == "not supported at this scale"
    assert verdict(null, None, True) == "inconclusive"
    # direction -1: a claim that a - b < 0
    assert verdict(below, 0.03, True, direction=-1) == "reproduced"
    assert verdict(reproduced, -0.03, True, direction=-1) == "contradicted"
    # one seed: no interval, nothing to conclude
    assert verdict(paired_difference([0.7], [0.6]), 0.05, True) == "inconclusive"


def test_no_verdict_contradicts_its_own_interval():
    rng = np.random.default_rng(1)
    seen = set()
    for _ in range(300):
        n = int(rng.integers(2, 6))
        d = _summary_difference(float(rng.normal(0, 0.02)), float(rng.uniform(0.002, 0.03)), n)
        if rng.random() < 0.5:
            d = holm({"x": d, "y": _summary_difference(0.0, 0.01, 3)})["x"]
        claim = None if rng.random() < 0.3 else float(rng.uniform(0.005, 0.05))
        regime = bool(rng.random() < 0.5)
        direction = int(rng.choice([1, -1]))
        v = verdict(d, claim, regime, direction)
        seen.add(v)
        low, high = (d.low, d.high) if direction == 1 else (-d.high, -d.low)
        assert (v == "reproduced") == (low > 0)
        if v in ("contradicted", "not supported at this scale"):
            assert high < (0.0 if claim is None else claim)
            assert (v == "contradicted") == regime
            if claim is not None:
                assert mde_of(d) <= claim  # never blames the claim for what the seeds could not see
    assert seen == set(Verdict)  # the loop met every verdict, so the checks above ran


def test_verdict_reason_quotes_the_interval_and_the_mde():
    fam = holm({"x": _summary_difference(0.034, 0.004, 3), "y": _summary_difference(0.0, 0.01, 3)})
    reason = verdict_reason(fam["x"], 0.03, True)
    assert reason.startswith("Δ +3.4 points (Holm-corrected 95 % interval +")
    assert f"to +{fam['x'].high * 100:.1f}; 3 seeds) lies above zero" in reason
    plain = verdict_reason(_summary_difference(0.0, 0.02, 3), 0.02, True)
    assert plain.startswith("Δ +0.0 points (95 % interval -")
    assert "6.5 points" in plain and "the claimed +2.0 points" in plain  # MDE ≈ 6.5 > claim
    contra = verdict_reason(_summary_difference(0.0, 0.005, 3), 0.05, False)
    assert "excludes the claimed +5.0 points" in contra and "regime" in contra
    assert verdict_reason(paired_difference([0.7], [0.6]), 0.05, True).startswith("Δ +10.0 points from 1 seed")
