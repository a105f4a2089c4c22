"""lib.stats: paired seed differences, Holm families, detectable effects, the verdict rules (interval
first, then TOST, at each row's own Holm level), shares, levels and the one verdict sentence.

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
    clopper_pearson,
    hierarchical_bootstrap,
    holm,
    holm_adjust,
    judge,
    judge_level,
    judge_share,
    mde_of,
    minimum_detectable_effect,
    paired_difference,
    paired_power,
    tost,
    trials_from_accuracies,
    verdict,
    verdict_reason,
    verdict_sentence,
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


def test_mde_of_uses_the_observed_sd_and_the_rows_own_level():
    d = paired_difference(A, B)
    assert mde_of(d) == pytest.approx(minimum_detectable_effect(d.sd, 3))
    fam = holm({"x": d, "y": paired_difference(B, A), "z": d})
    for row in fam.values():  # each row's MDE is at the level its interval is printed at
        assert row.level == pytest.approx(1 - row.confidence)
        assert mde_of(row) == pytest.approx(minimum_detectable_effect(d.sd, 3, alpha=row.level))
    assert fam["x"].level == pytest.approx(0.05 / 3) and fam["x"].step == 0


# ---------------------------------------------------------------- verdicts: the rules, in order

def _interval(low: float, high: float, n: int = 10, confidence: float = 0.95) -> Difference:
    """A Difference whose t interval at `confidence` is exactly [low, high] (sd chosen to match)."""
    diff, half = (low + high) / 2, (high - low) / 2
    sd = half / stats.t.ppf(1 - (1 - confidence) / 2, n - 1) * math.sqrt(n)
    p = 2 * stats.t.sf(abs(diff) / (sd / math.sqrt(n)), n - 1)
    return Difference(diff, low, high, n, tuple(range(n)), float(p), sd, confidence)


@pytest.mark.parametrize("low, high, claim, sesoi, expected", [
    # the review's cases
    (-0.08, -0.02, 0.02, None, Verdict.CONTRADICTED),        # [-8, -2] against +2: no longer "inconclusive"
    (0.001, 0.005, 0.10, None, Verdict.REPRODUCED_SMALLER),  # [0.1, 0.5] against +10
    (-0.038, -0.004, 0.02, None, Verdict.CONTRADICTED),      # chapter 5's [-3.8, -0.4] against +2
    # each rule
    (0.03, 0.05, 0.02, None, Verdict.REPRODUCED),            # above zero and reaching the claim
    (0.01, 0.05, 0.02, None, Verdict.REPRODUCED),            # above zero, the claim inside
    (0.001, 0.019, 0.02, None, Verdict.REPRODUCED_SMALLER),  # above zero, wholly below the claim
    (-0.003, 0.004, 0.02, None, Verdict.NO_EFFECT),          # TOST rules out +-2
    (-0.01, 0.03, 0.02, None, Verdict.INCONCLUSIVE),         # zero and the claim both inside
    (-0.025, 0.015, 0.02, None, Verdict.INCONCLUSIVE),       # even the 90 % interval reaches below -2: TOST fails
    (-0.022, 0.018, 0.02, None, Verdict.NO_EFFECT),          # TOST at 5 % is the 90 % interval inside +-2
    # no claimed size: the smallest effect of interest stands in for it
    (0.001, 0.005, None, 0.02, Verdict.REPRODUCED_SMALLER),
    (-0.003, 0.004, None, 0.02, Verdict.NO_EFFECT),
    (-0.003, 0.004, None, None, Verdict.INCONCLUSIVE),       # nothing to test equivalence against
    (0.001, 0.005, None, None, Verdict.REPRODUCED),
    (-0.05, -0.01, None, None, Verdict.CONTRADICTED),
    # edges: an interval touching zero is not on either side; touching the claim is not "smaller"
    (0.0, 0.04, 0.02, None, Verdict.INCONCLUSIVE),
    (-0.04, 0.0, 0.02, None, Verdict.INCONCLUSIVE),
    (0.01, 0.02, 0.02, None, Verdict.REPRODUCED),
])
def test_each_verdict_and_edge(low, high, claim, sesoi, expected):
    d = _interval(low, high)
    assert (d.low, d.high) == (low, high)
    for regime in (True, False, None):  # the regime qualifies the sentence, never the verdict
        j = judge(d, claim, smallest_effect=sesoi, regime_matches=regime)
        assert j.verdict == expected
        assert verdict(d, claim, regime, smallest_effect=sesoi) == expected
        said = verdict_sentence(j)
        assert said.startswith(f"{expected.value}: ")
        assert ("in a regime other than the claim's" in said) == (regime is False)
        assert ("in the claim's regime" in said) == (regime is True)
    # the mirror image: a claim that a - b < 0
    mirrored = _interval(-high, -low)
    assert judge(mirrored, claim, smallest_effect=sesoi, direction=-1).verdict == expected


def test_no_interval_and_awaiting_seeds_are_inconclusive_whatever_the_interval():
    one = judge(paired_difference([0.7], [0.6]), 0.05)
    assert one.verdict == "inconclusive" and "from 1 seed: no interval" in verdict_sentence(one)
    tie = judge(paired_difference([0.61, 0.63, 0.60], [0.58, 0.60, 0.57]), 0.02)  # every seed +3: no interval
    assert tie.verdict == "inconclusive" and "no interval" in verdict_sentence(tie)
    clear = _interval(0.03, 0.05, n=3)
    waiting = judge(clear, 0.02, awaiting=(3, 10))
    assert waiting.verdict == Verdict.INCONCLUSIVE and waiting.label == "inconclusive (awaiting seeds: 3 of 10 declared)"
    said = verdict_sentence(waiting)
    assert said.startswith("inconclusive (awaiting seeds: 3 of 10 declared): ") and "interval" not in said
    assert judge(clear, 0.02, awaiting=(10, 10)).verdict == Verdict.REPRODUCED  # all seeds in: judged


def test_tost_is_two_one_sided_t_tests_and_matches_the_interval_at_twice_the_level():
    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(3, 12))
        x = rng.normal(rng.normal(0, 0.01), rng.uniform(0.002, 0.02), n)
        d = paired_difference(x, np.zeros(n))
        bound = float(rng.uniform(0.002, 0.03))
        lower = stats.ttest_1samp(x, -bound, alternative="greater").pvalue
        upper = stats.ttest_1samp(x, bound, alternative="less").pvalue
        assert tost(d, bound) == pytest.approx(max(lower, upper), rel=1e-9, abs=1e-15)
        alpha = float(rng.choice([0.05, 0.05 / 3, 0.05 / 12]))
        ci = stats.ttest_1samp(x, 0.0).confidence_interval(1 - 2 * alpha)
        inside = -bound < ci.low and ci.high < bound
        assert (tost(d, bound) <= alpha) == inside


def test_every_number_in_a_row_is_at_its_own_holm_level():
    """Interval, TOST and MDE at the row's Holm step level, printed exactly; a 95 % interval that
    excludes zero is not enough when the row's level is 0.05/3."""
    x = _summary_difference(0.03, 0.025, 6)  # 95 %: about +0.004 to +0.056; at 0.05/3 it includes zero
    assert x.low > 0
    fam = holm({"x": x, "y": _summary_difference(0.03, 0.025, 6), "z": _summary_difference(0.0, 0.02, 6)})
    row = fam["x"]
    assert row.level == pytest.approx(0.05 / 3) and row.low < 0 < row.high
    j = judge(row, 0.02)
    assert j.verdict == Verdict.INCONCLUSIVE
    said = verdict_sentence(j)
    assert "98.3333 % (Holm level 0.05/3, family of 3) interval" in said
    mde = minimum_detectable_effect(row.sd, row.n, alpha=0.05 / 3)
    assert f"would detect {mde * 100:.1f} points with 80 % power" in said
    assert "Holm" not in verdict_sentence(judge(x, 0.02)) and "95 % interval" in verdict_sentence(judge(x, 0.02))


def test_no_verdict_contradicts_its_own_interval():
    rng = np.random.default_rng(1)
    seen = set()
    for _ in range(600):
        n = int(rng.integers(2, 15))
        d = _summary_difference(float(rng.normal(0, 0.02)), float(rng.uniform(0.002, 0.03)), n)
        if rng.random() < 0.5:
            d = holm({"x": d, "y": _summary_difference(0.0, 0.01, 3)})["x"]
        claim = None if rng.random() < 0.3 else float(rng.uniform(0.005, 0.05))
        sesoi = float(rng.uniform(0.005, 0.05)) if claim is None and rng.random() < 0.5 else None
        direction = int(rng.choice([1, -1]))
        j = judge(d, claim, smallest_effect=sesoi, direction=direction, regime_matches=bool(rng.random() < 0.5))
        seen.add(j.verdict)
        low, high = (d.low, d.high) if direction == 1 else (-d.high, -d.low)
        ref = claim if claim is not None else sesoi
        assert (j.verdict in (Verdict.REPRODUCED, Verdict.REPRODUCED_SMALLER)) == (low > 0)
        assert (j.verdict == Verdict.REPRODUCED_SMALLER) == (low > 0 and ref is not None and high < ref)
        assert (j.verdict == Verdict.CONTRADICTED) == (high < 0)
        if j.verdict == Verdict.NO_EFFECT:
            assert low <= 0 <= high and tost(d, ref) <= d.level
        said = verdict_sentence(j)
        # never "would detect ..." beside an interval that excludes zero
        assert ("would detect" in said) == (low <= 0 <= high and j.verdict != Verdict.NO_EFFECT)
    assert seen == set(Verdict)  # the loop met every verdict, so the checks above ran


def test_the_sentence_quotes_the_interval_the_claim_and_the_regime():
    fam = holm({"x": _summary_difference(0.034, 0.004, 3), "y": _summary_difference(0.0, 0.01, 3)})
    reason = verdict_reason(fam["x"], 0.03, True)
    assert reason.startswith("reproduced: Δ +3.4 points (97.5 % (Holm level 0.05/2, family of 2) interval +")
    assert f"to +{fam['x'].high * 100:.1f}; 3 seeds) lies above zero, on the claimed side; in the claim's regime" in reason
    small = verdict_reason(_interval(0.001, 0.005), 0.10, False)
    assert small == ("reproduced (smaller than claimed): Δ +0.3 points (95 % interval +0.1 to +0.5; 10 seeds) lies "
                     "above zero, on the claimed side, but short of the claimed +10.0 points; in a regime other than "
                     "the claim's")
    against = verdict_reason(_interval(-0.038, -0.004), 0.02, False)
    assert against.startswith("contradicted: Δ -2.1 points (95 % interval -3.8 to -0.4; 10 seeds) lies below zero, "
                              "against the claimed direction (the claimed +2.0 points)")
    none = verdict_reason(_interval(-0.003, 0.004), 0.02)
    assert none.startswith("no effect as large as claimed: ") and "rule out effects of ±2.0 points or more (TOST p = " in none
    # a comparison that tests no claim: no verdict word, only where its interval lies
    assert verdict_sentence(judge(_interval(0.01, 0.03), claimed=False)).startswith("Δ +2.0 points (95 % interval")
    assert verdict_sentence(judge(_interval(0.01, 0.03), claimed=False)).endswith("lies above zero")


# ---------------------------------------------------------------- shares: Clopper-Pearson

def test_clopper_pearson_is_exact_and_states_its_sides():
    low, high = clopper_pearson(0, 3)  # two-sided 95 %
    assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / 3), abs=1e-9) and high == pytest.approx(0.7076, abs=1e-4)
    assert clopper_pearson(0, 3, sided="upper") == pytest.approx((0.0, 1 - 0.05 ** (1 / 3)))  # the review's 63 %
    assert clopper_pearson(0, 3, sided="upper")[1] == pytest.approx(0.6316, abs=1e-4)
    assert clopper_pearson(3, 3)[0] == pytest.approx(0.025 ** (1 / 3), abs=1e-9)
    for k, n in [(1, 3), (2, 3), (4, 10), (9, 10)]:  # the beta-quantile form of the exact interval
        low, high = clopper_pearson(k, n)
        assert low == pytest.approx(stats.beta.ppf(0.025, k, n - k + 1), abs=1e-9)
        assert high == pytest.approx(stats.beta.ppf(0.975, k + 1, n - k), abs=1e-9)


@pytest.mark.parametrize("flagged, seeds, expected", [
    (0, 3, Verdict.INCONCLUSIVE), (3, 3, Verdict.INCONCLUSIVE), (2, 3, Verdict.INCONCLUSIVE),
    (0, 10, Verdict.CONTRADICTED), (10, 10, Verdict.REPRODUCED), (9, 10, Verdict.REPRODUCED),
    (5, 10, Verdict.INCONCLUSIVE), (1, 1, Verdict.INCONCLUSIVE)])
def test_share_rows_are_judged_on_the_exact_interval(flagged, seeds, expected):
    j = judge_share(flagged, seeds, what="collapsed", regime_matches=False)
    assert j.verdict == expected
    said = verdict_sentence(j)
    assert said.startswith(f"{expected.value}: collapsed in {flagged} of {seeds} seed")
    assert "two-sided exact 95 % Clopper-Pearson interval" in said


# ---------------------------------------------------------------- levels: hierarchical bootstrap

def test_the_bootstrap_widens_when_runs_and_trials_are_resampled():
    rng = np.random.default_rng(0)
    correct = (rng.random((3, 20, 20)) < rng.uniform(0.85, 0.99, (1, 20, 1))).astype(float)  # runs differ in difficulty
    _, lo_s, hi_s = hierarchical_bootstrap(correct, levels=("seeds",), n_boot=4000)
    _, lo_r, hi_r = hierarchical_bootstrap(correct, levels=("seeds", "runs"), n_boot=4000)
    mean, lo, hi = hierarchical_bootstrap(correct, n_boot=4000)
    assert mean == pytest.approx(correct.mean())
    assert hi_s - lo_s < hi_r - lo_r < hi - lo
    assert hierarchical_bootstrap(correct, n_boot=500, seed=7) == hierarchical_bootstrap(correct, n_boot=500, seed=7)


def test_the_bootstrap_has_the_binomial_width_of_lakes_400_trials():
    """Seeds that agree item by item: the only noise is the test items', a binomial SE of
    sqrt(p(1-p)/400), about 1.2 points at 94 % (the review's figure), against 0 between seeds.
    Resampling the items once per replicate for every seed (crossed) keeps it; resampling them
    per seed (nested) divides it by sqrt(seeds)."""
    x = trials_from_accuracies([0.94] * 5)
    assert x.shape == (5, 1, 400) and x.mean() == pytest.approx(0.94)
    se = math.sqrt(0.94 * 0.06 / 400)
    _, low, high = hierarchical_bootstrap(x, n_boot=20_000)
    assert (high - low) / 2 == pytest.approx(1.96 * se, rel=0.1)
    _, low_n, high_n = hierarchical_bootstrap(x, n_boot=20_000, shared_items=False)
    assert (high_n - low_n) / 2 == pytest.approx(1.96 * se / math.sqrt(5), rel=0.15)
    per_run = trials_from_accuracies(np.full((2, 20), 0.9))
    assert per_run.shape == (2, 20, 20) and per_run.sum(axis=2).tolist() == [[18] * 20] * 2


@pytest.mark.parametrize("accuracies, expected", [
    ([0.90, 0.91, 0.92], Verdict.REPRODUCED), ([0.80, 0.81, 0.82], Verdict.CONTRADICTED),
    ([0.80, 0.86, 0.92], Verdict.INCONCLUSIVE), ([0.99], Verdict.INCONCLUSIVE)])
def test_level_rows_are_judged_on_the_hierarchical_bootstrap(accuracies, expected):
    j = judge_level(trials_from_accuracies(accuracies), 0.865, regime_matches=False)
    assert j.verdict == expected
    assert verdict_sentence(j).startswith(f"{expected.value}: ")


def test_a_level_the_seeds_alone_would_exclude_is_inconclusive_with_the_test_items_noise():
    """The full ledger's 95.5 % row: 94.0 % over 3 seeds. Over seeds alone (a t interval) it lies
    below 95.5 %; with the 400 trials' noise it straddles it."""
    acc = [0.94, 0.9425, 0.9375]
    seeds_only = stats.t.interval(0.95, 2, loc=np.mean(acc), scale=np.std(acc, ddof=1) / math.sqrt(3))
    assert seeds_only[1] < 0.955
    j = judge_level(trials_from_accuracies(acc), 0.955)
    assert j.verdict == Verdict.INCONCLUSIVE and j.low < 0.955 < j.high
    assert "hierarchical bootstrap interval" in verdict_sentence(j)
