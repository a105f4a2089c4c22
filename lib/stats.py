"""The study's statistics in one place: paired seed differences, Holm families, detectable effects, verdicts.

The study trains each arm (a setting) once per seed, with the same seeds for every arm, so two
arms are compared seed by seed: d_s = a_s - b_s, and the mean of the d_s is tested with a paired
t-test (`scipy.stats.ttest_rel`). With n = 2-5 seeds the t distribution has 1-4 degrees of
freedom, so intervals are wide; that is the point of reporting them.

Everything here is built on scipy.stats / scipy.optimize; the only formulas written out by hand
are Holm's step-down adjustment (scipy has no Holm) and the power of the paired t-test, which is
the noncentral t tail probability `scipy.stats.nct` gives.

Public API
----------
paired_difference(a, b, confidence=0.95) -> Difference
holm(differences, alpha=0.05) -> dict[str, Difference]     (each row at its Holm step level)
minimum_detectable_effect(sd_of_differences, n, alpha=0.05, power=0.8, family_size=1) -> float
paired_power(effect, sd_of_differences, n, alpha=0.05, family_size=1) -> float
mde_of(difference, power=0.8) -> float                      (at the row's own level)
tost(difference, bound) -> float                            (two one-sided tests, p)
judge(difference, claimed_effect=None, *, smallest_effect, direction, regime_matches, ...) -> Judgement
clopper_pearson(k, n, confidence=0.95, sided="two-sided") -> (low, high)
judge_share(flagged, seeds, ...) -> ShareJudgement
hierarchical_bootstrap(correct[seeds, runs, trials], confidence=0.95, ...) -> (mean, low, high)
judge_level(correct, level, ...) -> LevelJudgement
verdict_sentence(judgement) -> str      THE one source of every verdict sentence (chapters, ledger)
verdict(...) -> Verdict, verdict_reason(...) -> str         shorthands for judge / verdict_sentence

Verdicts (`judge`), checked in this order at the row's own level: reproduced (interval on the
claimed side of zero; "smaller than claimed" when also below the claimed effect), contradicted
(interval on the other side), no effect as large as claimed (TOST against the smallest effect of
interest), inconclusive. The regime qualifies every sentence and is never a verdict.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

import numpy as np
from scipy import optimize, stats

# The spread of the per-seed differences counts as zero (no variance) when it is below this
# fraction of the largest value involved: that is floating-point noise from the subtraction
# (0.63 - 0.60 != 0.61 - 0.58 in binary), not seed-to-seed variation. It also covers the region
# where scipy warns about "catastrophic cancellation" (relative spread < 1e-14).
_ZERO_SPREAD = 1e-12


@dataclass(frozen=True)
class Difference:
    """Mean paired difference a - b over the seeds both arms have, with its interval and p-value.

    diff        mean of the per-seed differences a_s - b_s
    low, high   two-sided interval for the true mean difference at `confidence`
                (for a Holm-corrected Difference: the step-down interval, see `holm`)
    n           number of seeds that paired up (finite on both sides)
    seeds       those seeds (dict keys, or positions for sequences), in sorted order
    p_value     raw two-sided paired t-test p-value (NaN when n < 2)
    sd          sample standard deviation (ddof=1) of the per-seed differences
    confidence  the per-comparison confidence of [low, high]
    p_adjusted  Holm-adjusted p-value, None when the difference was not corrected for a family
    family_size number of comparisons in the family the correction was made over (1: none)
    family_alpha the family-wise error rate the correction controls (None: 1 - confidence)
    step        Holm's step whose level this row's interval uses (0-based: the level is
                family_alpha / (family_size - step)); None when not corrected
    """

    diff: float
    low: float
    high: float
    n: int
    seeds: tuple
    p_value: float
    sd: float
    confidence: float = 0.95
    p_adjusted: float | None = None
    family_size: int = 1
    family_alpha: float | None = None
    step: int | None = None

    @property
    def alpha(self) -> float:
        """The family-wise error rate: the family's when corrected, else 1 - confidence."""
        return self.family_alpha if self.family_alpha is not None else 1.0 - self.confidence

    @property
    def level(self) -> float:
        """This row's own level, the one its interval, its TOST and its MDE all use: 1 - confidence
        (Holm's step level family_alpha / (family_size - step) for a corrected row)."""
        return 1.0 - self.confidence

    @property
    def p(self) -> float:
        """The p-value to judge by: Holm-adjusted when corrected, else raw."""
        return self.p_adjusted if self.p_adjusted is not None else self.p_value

    @property
    def corrected(self) -> bool:
        return self.p_adjusted is not None


def _as_mapping(values: Mapping[int, float] | Sequence[float]) -> dict:
    if isinstance(values, Mapping):
        return dict(values)
    return dict(enumerate(values))


def _finite(x) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def paired_difference(
    a: Mapping[int, float] | Sequence[float],
    b: Mapping[int, float] | Sequence[float],
    confidence: float = 0.95,
) -> Difference:
    """Paired t comparison of arm a against arm b (difference a - b), seed by seed.

    `a` and `b` are per-seed values: dicts seed -> value (paired by key, in any order) or
    sequences (paired by position, the position standing in for the seed). Seeds missing on
    either side, or with a non-finite value (NaN: a diverged or unfinished run) on either side,
    are dropped; `Difference.seeds` records the seeds actually used.

    Interval and p-value are `scipy.stats.ttest_rel(a, b).confidence_interval(confidence)` and
    its `pvalue`. Edge cases, chosen so that nothing warns and nothing is silently invented:
      * n < 2: no variance can be estimated -> interval and p-value are NaN (diff is the single
        difference, or NaN with no seeds; sd is NaN).
      * zero variance of the differences (every seed moved by exactly the same amount, up to
        floating-point noise): the t statistic is ±inf or 0/0. Identical arms (every difference
        zero) give the point [0, 0] with p = 1. A common nonzero shift gives no interval (NaN,
        like n < 2): with a discrete metric and 2-3 seeds an exact tie of the differences happens
        by chance (chapter 4's quick run: 135 more correct queries out of 3,000 in both seeds),
        and reading it as an infinitely precise effect would be wrong.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    ma, mb = _as_mapping(a), _as_mapping(b)
    seeds = tuple(sorted(s for s in ma.keys() & mb.keys() if _finite(ma[s]) and _finite(mb[s])))
    xa = np.array([float(ma[s]) for s in seeds], dtype=float)
    xb = np.array([float(mb[s]) for s in seeds], dtype=float)
    n = len(seeds)
    nan = float("nan")
    if n == 0:
        return Difference(nan, nan, nan, 0, seeds, nan, nan, confidence)
    d = xa - xb
    diff = float(np.mean(d))
    if n == 1:
        return Difference(diff, nan, nan, 1, seeds, nan, nan, confidence)
    scale = float(max(np.max(np.abs(xa)), np.max(np.abs(xb)), np.max(np.abs(d))))
    if float(np.max(np.abs(d - diff))) <= _ZERO_SPREAD * scale:
        if abs(diff) <= _ZERO_SPREAD * scale:  # identical runs: no difference at all
            return Difference(0.0, 0.0, 0.0, n, seeds, 1.0, 0.0, confidence)
        # Every seed moved by the same nonzero amount. With a discrete metric (a count of correct
        # queries) and 2-3 seeds that happens by chance; it is not evidence of zero variance, and a
        # t interval needs spread: no interval.
        return Difference(diff, nan, nan, n, seeds, nan, 0.0, confidence)
    result = stats.ttest_rel(xa, xb)
    ci = result.confidence_interval(confidence)
    sd = float(np.std(d, ddof=1))
    return Difference(diff, float(ci.low), float(ci.high), n, seeds, float(result.pvalue), sd, confidence)


def _t_interval(diff: float, sd: float, n: int, confidence: float) -> tuple[float, float]:
    """The paired-t interval from summary statistics (`scipy.stats.t.interval`); it equals
    `ttest_rel(...).confidence_interval(confidence)` for the data the summaries came from."""
    if n < 2 or not (_finite(diff) and _finite(sd)):
        return float("nan"), float("nan")
    if sd == 0.0:
        return diff, diff
    low, high = stats.t.interval(confidence, n - 1, loc=diff, scale=sd / math.sqrt(n))
    return float(low), float(high)


def holm_adjust(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the input order.

    Sort the m p-values ascending, p_(0) <= ... <= p_(m-1); then
    adjusted_(i) = min(1, max_{j <= i} (m - j) * p_(j)) (monotone in rank, capped at 1).
    NaN p-values (comparisons with < 2 seeds) stay NaN but still count in m, which can only
    make the others more conservative.
    """
    p = np.asarray(p_values, dtype=float)
    m = p.size
    adjusted = np.full(m, np.nan)
    order = np.argsort(np.where(np.isnan(p), np.inf, p), kind="stable")
    running = 0.0
    for rank, idx in enumerate(order):
        if np.isnan(p[idx]):
            continue
        running = max(running, (m - rank) * p[idx])
        adjusted[idx] = min(1.0, running)
    return adjusted


def holm(differences: Mapping[str, Difference], alpha: float = 0.05) -> dict[str, Difference]:
    """Holm-Bonferroni correction over one family of comparisons (family-wise error <= alpha).

    Returns new Differences (same keys and order) with `p_adjusted` (Holm's step-down adjusted
    p-value, see `holm_adjust`), `family_size` = m, `family_alpha` = alpha, and `low`/`high`/
    `confidence` replaced by the step-down interval:

      rank the comparisons by ascending raw p (i = 0, 1, ..., m-1). While the step-down keeps
      rejecting (p_(j) <= alpha / (m - j) for every j <= i), comparison i gets the interval at
      confidence 1 - alpha / (m - i). From the first comparison k it fails to reject onwards,
      every remaining comparison gets the interval at 1 - alpha / (m - k), the level at which
      the procedure stopped. (Tied raw p-values share the level of the first of the tie.)

    These are the conservative, Bonferroni-style step-down intervals. The rule "after the
    step-down stops, keep its level" is what makes them agree with the adjusted p-values: an
    interval excludes zero exactly when p_adjusted <= alpha, so an interval-based verdict and a
    p-value-based one never disagree. The first-ranked interval is the plain Bonferroni
    interval (1 - alpha/m); the later rejected ones are narrower than Bonferroni. Caveat for a
    hostile reviewer: only the *decisions* (zero excluded or not) carry Holm's family-wise
    guarantee; simultaneous coverage of the true differences by all of these intervals at once is
    guaranteed only for the Bonferroni level 1 - alpha/m (the informative simultaneous Holm
    intervals of Strassburger & Bretz 2008 are one-sided and collapse to "> 0" for rejections).
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    names = list(differences)
    m = len(names)
    raw = np.array([differences[k].p_value for k in names], dtype=float)
    adjusted = holm_adjust(raw)
    order = np.argsort(np.where(np.isnan(raw), np.inf, raw), kind="stable")
    level_rank = {}
    stopped_at = None
    first_of_tie = 0
    for rank, idx in enumerate(order):
        if rank > 0 and raw[idx] != raw[order[rank - 1]]:
            first_of_tie = rank
        if stopped_at is None and not (raw[idx] <= alpha / (m - first_of_tie)):
            stopped_at = first_of_tie
        level_rank[idx] = first_of_tie if stopped_at is None else stopped_at
    out = {}
    for idx, name in enumerate(names):
        d = differences[name]
        confidence = 1.0 - alpha / (m - level_rank[idx])
        low, high = _t_interval(d.diff, d.sd, d.n, confidence) if _finite(d.low) else (d.low, d.high)
        p_adj = float(adjusted[idx])
        out[name] = replace(
            d, low=low, high=high, confidence=confidence, p_adjusted=p_adj,
            family_size=m, family_alpha=alpha, step=int(level_rank[idx]),
        )
    return out


def paired_power(effect: float, sd_of_differences: float, n: int, alpha: float = 0.05,
                 family_size: int = 1) -> float:
    """Power of the two-sided paired t-test with n seeds at level alpha / family_size when the
    true mean difference is `effect` and the differences have standard deviation `sd`.

    T = mean / (sd / sqrt(n)) follows a noncentral t with n - 1 degrees of freedom and
    noncentrality effect * sqrt(n) / sd; power = P(T > t_crit) + P(T < -t_crit).
    """
    if n < 2:
        return float("nan")
    level = alpha / family_size
    df = n - 1
    t_crit = stats.t.ppf(1.0 - level / 2.0, df)
    if sd_of_differences == 0.0:
        return 1.0 if effect != 0.0 else level
    ncp = abs(effect) * math.sqrt(n) / sd_of_differences
    return _power_at_ncp(ncp, df, t_crit)


def _power_at_ncp(ncp: float, df: int, t_crit: float) -> float:
    # scipy's nct returns NaN in some far tails (e.g. cdf(-t, 4, 80)); each tail probability is
    # then 0 or 1 to double precision, so fall back on the complementary function, then 0.
    upper = stats.nct.sf(t_crit, df, ncp)
    if not math.isfinite(upper):
        upper = 1.0 - stats.nct.cdf(t_crit, df, ncp)
    if not math.isfinite(upper):
        upper = 1.0 if ncp > t_crit else 0.0
    lower = stats.nct.cdf(-t_crit, df, ncp)
    if not math.isfinite(lower):
        lower = 0.0  # ncp >= 0: the lower tail is below the central one, level / 2
    return float(min(1.0, upper + lower))


def minimum_detectable_effect(sd_of_differences: float, n: int, alpha: float = 0.05,
                              power: float = 0.8, family_size: int = 1) -> float:
    """Smallest true mean paired difference that a two-sided paired t-test with n seeds detects
    with probability `power` at level alpha / family_size (Bonferroni over the family).

    Solved for the noncentrality with `scipy.optimize.brentq` on the `scipy.stats.nct` power
    (`paired_power`), then scaled: effect = ncp * sd / sqrt(n). n < 2 -> inf (nothing can be
    detected); sd = 0 -> 0 (any shift is detected); sd NaN -> NaN.
    """
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must be in (0, 1), got {power}")
    if family_size < 1:
        raise ValueError(f"family_size must be >= 1, got {family_size}")
    if n < 2:
        return float("inf")
    if not _finite(sd_of_differences) or sd_of_differences < 0:
        return float("nan")
    if sd_of_differences == 0.0:
        return 0.0
    level = alpha / family_size
    if power <= level:
        return 0.0  # the test "detects" a zero effect that often already
    df = n - 1
    t_crit = float(stats.t.ppf(1.0 - level / 2.0, df))

    def gap(ncp: float) -> float:
        return _power_at_ncp(ncp, df, t_crit) - power

    high = max(1.0, t_crit)
    while gap(high) < 0.0:
        high *= 2.0
        if high > 1e8:
            return float("inf")
    ncp = optimize.brentq(gap, 0.0, high, xtol=1e-12, rtol=1e-12)
    return float(ncp * sd_of_differences / math.sqrt(n))


def mde_of(difference: Difference, power: float = 0.8) -> float:
    """`minimum_detectable_effect` for a comparison, with its observed sd of differences, its n and
    its own level (`Difference.level`: Holm's step level for a corrected row), the level its
    interval is printed at. The observed sd from a few seeds is itself noisy: a plug-in estimate."""
    return minimum_detectable_effect(difference.sd, difference.n, alpha=difference.level, power=power)


# ----------------------------------------------------------------------------- verdicts

class Verdict(StrEnum):
    """The verdicts a claim can get (they are plain strings too). The regime is no verdict: it is a
    qualifier every verdict sentence carries."""

    REPRODUCED = "reproduced"
    REPRODUCED_SMALLER = "reproduced (smaller than claimed)"
    CONTRADICTED = "contradicted"
    NO_EFFECT = "no effect as large as claimed"
    INCONCLUSIVE = "inconclusive"


def tost(difference: Difference, bound: float) -> float:
    """Two one-sided paired t-tests of |true difference| >= bound (Schuirmann's TOST): the larger of
    the two one-sided p-values for H0: diff <= -bound and H0: diff >= +bound. p <= alpha rejects both,
    i.e. the effect lies within (-bound, +bound); this is the same as the (1 - 2 alpha) interval
    lying inside (-bound, +bound). NaN without an interval (n < 2, or a common nonzero shift)."""
    d = difference
    bound = abs(float(bound))
    if d.n < 2 or not (_finite(d.diff) and _finite(d.sd)):
        return float("nan")
    if d.sd == 0.0:
        if not (_finite(d.low) and _finite(d.high)):
            return float("nan")  # a chance tie of the differences: no spread, no test
        return 0.0 if abs(d.diff) < bound else 1.0
    se, df = d.sd / math.sqrt(d.n), d.n - 1
    p_lower = stats.t.sf((d.diff + bound) / se, df)  # H0: diff <= -bound
    p_upper = stats.t.cdf((d.diff - bound) / se, df)  # H0: diff >= +bound
    return float(max(p_lower, p_upper))


def _pct(confidence: float) -> str:
    return f"{confidence * 100:.4f}".rstrip("0").rstrip(".") + " %"


def level_text(difference: Difference) -> str:
    """The row's level, exactly: '95 %' for an uncorrected row; for a Holm row its step level as a
    fraction of the family's alpha, e.g. '99.5833 % (Holm level 0.05/12, family of 12)'."""
    d = difference
    if d.corrected and d.family_size > 1 and d.step is not None and d.family_alpha is not None:
        k = d.family_size - d.step
        frac = f"{d.family_alpha:g}" if k == 1 else f"{d.family_alpha:g}/{k}"
        return f"{_pct(d.confidence)} (Holm level {frac}, family of {d.family_size})"
    return _pct(d.confidence)


def _seeds(n: int) -> str:
    return f"{n} seed" + ("" if n == 1 else "s")


def measurement(difference: Difference, scale: float = 100.0, unit: str = "points") -> str:
    """'Δ +3.4 points (98.75 % (Holm level 0.05/4, family of 4) interval +0.8 to +6.0; 3 seeds)':
    the measured difference with its interval at the row's exact level (no verdict)."""
    d = difference

    def num(x: float) -> str:
        return f"{x * scale:+.1f}"

    head = f"Δ {num(d.diff)} {unit}".rstrip() if _finite(d.diff) else "Δ not measured"
    if d.n < 2:
        return f"{head} from {_seeds(d.n)}: no interval"
    if not (_finite(d.low) and _finite(d.high)):
        return f"{head} from {_seeds(d.n)}: every seed gave the same difference, so no interval"
    return f"{head} ({level_text(d)} interval {num(d.low)} to {num(d.high)}; {_seeds(d.n)})"


@dataclass(frozen=True)
class Judgement:
    """One paired comparison judged: the Difference (with its level), what was claimed, the verdict.

    claimed_effect  the claimed size of a - b, as a magnitude (None: the claim names no size)
    smallest_effect the smallest effect of interest, a magnitude (defaults to claimed_effect)
    direction       +1: the claim is a - b > 0; -1: a - b < 0
    regime_matches  True / False: the claim's regime is / is not ours (a qualifier, never a verdict);
                    None: no outside claim (a chapter's own comparison)
    claimed         False for a comparison that tests no claim: the sentence then only says which
                    side of zero the interval lies on
    awaiting        (seeds run, seeds declared) for a confirmatory row still short of its seeds
    """

    verdict: Verdict
    difference: Difference
    claimed_effect: float | None = None
    smallest_effect: float | None = None
    direction: int = 1
    regime_matches: bool | None = None
    claimed: bool = True
    awaiting: tuple[int, int] | None = None
    tost_p: float = float("nan")
    power: float = 0.8
    scale: float = 100.0
    unit: str = "points"

    @property
    def label(self) -> str:
        if self.awaiting is not None:
            return f"{self.verdict.value} (awaiting seeds: {self.awaiting[0]} of {self.awaiting[1]} declared)"
        return self.verdict.value


def judge(difference: Difference, claimed_effect: float | None = None, *, smallest_effect: float | None = None,
          direction: int = 1, regime_matches: bool | None = None, claimed: bool = True,
          awaiting: tuple[int, int] | None = None, power: float = 0.8, scale: float = 100.0,
          unit: str = "points") -> Judgement:
    """Judge a claim that arm a beats arm b (direction +1: a - b > 0; -1: a - b < 0).

    Everything is at the row's own level, `difference.level` (1 - confidence: Holm's step level
    for a row of a corrected family, from `holm`): its interval, its TOST and any MDE printed.
    The interval is oriented so that the claimed side is positive ([low, high] -> [-high, -low]
    for direction -1); "ref" is the claimed effect, or the smallest effect of interest when the
    claim names no size.

    ====  ==============================================================  ===================================
    rule  condition (checked in this order)                               verdict
    ====  ==============================================================  ===================================
    (0)   a confirmatory row short of its declared seeds (`awaiting`)     inconclusive (awaiting seeds k of M)
    (0')  no interval (fewer than 2 seeds, or every seed the same shift)  inconclusive
    (a)   low > 0: the interval lies on the claimed side of zero          reproduced, or "reproduced (smaller
                                                                          than claimed)" when also high < ref
    (b)   high < 0: the interval lies on the opposite side                contradicted
    (c)   a smallest effect of interest s > 0 and TOST p <= level:        no effect as large as claimed
          both one-sided tests reject |effect| >= s
    (d)   otherwise                                                       inconclusive
    ====  ==============================================================  ===================================

    The regime never changes the verdict; `regime_matches` only qualifies the sentence.
    """
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1, got {direction}")
    claim = None if claimed_effect is None else abs(float(claimed_effect))
    sesoi = claim if smallest_effect is None else abs(float(smallest_effect))
    d = difference
    make = dict(difference=d, claimed_effect=claim, smallest_effect=sesoi, direction=direction,
                regime_matches=regime_matches, claimed=claimed, power=power, scale=scale, unit=unit)
    if awaiting is not None and awaiting[0] < awaiting[1]:
        return Judgement(Verdict.INCONCLUSIVE, awaiting=(int(awaiting[0]), int(awaiting[1])), **make)
    if d.n < 2 or not (_finite(d.low) and _finite(d.high)):
        return Judgement(Verdict.INCONCLUSIVE, **make)
    low, high = (d.low, d.high) if direction == 1 else (-d.high, -d.low)
    ref = claim if claim is not None else sesoi
    if low > 0:
        smaller = ref is not None and high < ref
        return Judgement(Verdict.REPRODUCED_SMALLER if smaller else Verdict.REPRODUCED, **make)
    if high < 0:
        return Judgement(Verdict.CONTRADICTED, **make)
    p = tost(d, sesoi) if sesoi else float("nan")
    if sesoi and p <= d.level:
        return Judgement(Verdict.NO_EFFECT, tost_p=p, **make)
    return Judgement(Verdict.INCONCLUSIVE, tost_p=p, **make)


# ---------------------------------------------------------------- shares: Clopper-Pearson

def clopper_pearson(k: int, n: int, confidence: float = 0.95, sided: str = "two-sided") -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval for a rate from k of n, by
    `scipy.stats.binomtest(k, n, alternative).proportion_ci(confidence, method="exact")`.

    sided "two-sided": the equal-tailed interval; "upper": a one-sided upper bound (low = 0);
    "lower": a one-sided lower bound (high = 1). For 0 of 3 seeds at 95 %: two-sided [0, 0.708],
    one-sided upper bound 0.632 (= 1 - 0.05 ** (1/3))."""
    alternative = {"two-sided": "two-sided", "upper": "less", "lower": "greater"}[sided]
    if n < 1:
        return float("nan"), float("nan")
    ci = stats.binomtest(int(k), int(n), alternative=alternative).proportion_ci(confidence_level=confidence,
                                                                               method="exact")
    return float(ci.low), float(ci.high)


@dataclass(frozen=True)
class ShareJudgement:
    """A claim that a flag (say, collapse) shows in more than `claimed_rate` of seeds, judged on
    the exact two-sided interval of the rate: reproduced when its lower bound exceeds the claimed
    rate, contradicted when its upper bound is below it, inconclusive otherwise."""

    verdict: Verdict
    flagged: int
    seeds: int
    low: float
    high: float
    claimed_rate: float = 0.5
    confidence: float = 0.95
    what: str = "flagged"
    regime_matches: bool | None = None
    awaiting: tuple[int, int] | None = None

    @property
    def label(self) -> str:
        if self.awaiting is not None:
            return f"{self.verdict.value} (awaiting seeds: {self.awaiting[0]} of {self.awaiting[1]} declared)"
        return self.verdict.value


def judge_share(flagged: int, seeds: int, *, claimed_rate: float = 0.5, confidence: float = 0.95,
                what: str = "flagged", regime_matches: bool | None = None,
                awaiting: tuple[int, int] | None = None) -> ShareJudgement:
    low, high = clopper_pearson(flagged, seeds, confidence)
    make = dict(flagged=int(flagged), seeds=int(seeds), low=low, high=high, claimed_rate=claimed_rate,
                confidence=confidence, what=what, regime_matches=regime_matches)
    if awaiting is not None and awaiting[0] < awaiting[1]:
        return ShareJudgement(Verdict.INCONCLUSIVE, awaiting=(int(awaiting[0]), int(awaiting[1])), **make)
    if seeds >= 1 and low > claimed_rate:
        return ShareJudgement(Verdict.REPRODUCED, **make)
    if seeds >= 1 and high < claimed_rate:
        return ShareJudgement(Verdict.CONTRADICTED, **make)
    return ShareJudgement(Verdict.INCONCLUSIVE, **make)


# ---------------------------------------------------------------- levels: hierarchical bootstrap

LEVELS = ("seeds", "runs", "trials")


def hierarchical_bootstrap(correct, confidence: float = 0.95, *, n_boot: int = 10_000, seed: int = 0,
                           levels: Sequence[str] = LEVELS, shared_items: bool = True,
                           chunk: int = 500) -> tuple[float, float, float]:
    """Percentile bootstrap interval of an accuracy over seeds x test runs x trials.

    `correct` is a (seeds, runs, trials) array of 0/1 (Lake's one-shot set: 20 runs of 20 trials).
    Each replicate resamples the seeds with replacement, then the runs, then the trials within each
    run, and takes the mean. `levels` names the levels resampled (leave one out to see what it adds).

    shared_items True (the default): the runs and trials are the same test items for every seed,
    so one replicate draws one set of runs and trials and applies it to every resampled seed (a
    crossed design: the test items' noise does not average out over seeds). False: each resampled
    seed draws its own runs, and trials within them (the fully nested scheme, which treats the items
    as independent between seeds and so gives narrower intervals when seeds agree on hard items).

    Returns (observed mean, low, high); deterministic for a given `seed`.
    """
    x = np.asarray(correct, dtype=float)
    if x.ndim != 3 or x.size == 0:
        raise ValueError(f"correct must be a non-empty (seeds, runs, trials) array, got shape {x.shape}")
    unknown = set(levels) - set(LEVELS)
    if unknown:
        raise ValueError(f"unknown levels {sorted(unknown)}; choose from {LEVELS}")
    S, R, T = x.shape
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        si = rng.integers(0, S, (b, S)) if "seeds" in levels else np.broadcast_to(np.arange(S), (b, S))
        y = x[si]  # (b, S, R, T)
        run_shape, trial_shape = ((b, 1, R), (b, 1, R, T)) if shared_items else ((b, S, R), (b, S, R, T))
        if "runs" in levels:
            ri = rng.integers(0, R, run_shape)
            y = np.take_along_axis(y, np.broadcast_to(ri[..., None], (b, S, R, T)), axis=2)
        if "trials" in levels:
            ti = rng.integers(0, T, trial_shape)
            y = np.take_along_axis(y, np.broadcast_to(ti, (b, S, R, T)), axis=3)
        out[start:start + b] = y.mean(axis=(1, 2, 3))
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(out, [tail, 1.0 - tail])
    return float(x.mean()), float(low), float(high)


def trials_from_accuracies(accuracies: Sequence[float] | np.ndarray, trials_per_run: int = 20) -> np.ndarray:
    """A (seeds, runs, trials) 0/1 array from accuracies: a (seeds,) vector of overall accuracies
    (one block of runs x trials = 400 trials for Lake's set; `trials_per_run` * 20 trials) or a
    (seeds, runs) array of per-run accuracies (`trials_per_run` trials each). Which trials a seed
    got right is unknown, so they are aligned across seeds as if every seed found the same items
    hard (correct ones first): with `shared_items` that is the most conservative alignment."""
    a = np.asarray(accuracies, dtype=float)
    if a.ndim == 1:
        a, trials = a[:, None], trials_per_run * 20
    elif a.ndim == 2:
        trials = trials_per_run
    else:
        raise ValueError(f"accuracies must be (seeds,) or (seeds, runs), got shape {a.shape}")
    k = np.rint(a * trials).astype(int)
    return (np.arange(trials)[None, None, :] < k[:, :, None]).astype(float)


@dataclass(frozen=True)
class LevelJudgement:
    """A claim that a recipe reaches `level`, judged on a hierarchical bootstrap interval of its
    accuracy: reproduced when the interval lies at or above the level, contradicted when it lies
    below it, inconclusive when it straddles it."""

    verdict: Verdict
    mean: float
    low: float
    high: float
    level: float
    seeds: int
    runs: int
    trials: int
    confidence: float = 0.95
    note: str = ""
    regime_matches: bool | None = None
    awaiting: tuple[int, int] | None = None

    @property
    def label(self) -> str:
        if self.awaiting is not None:
            return f"{self.verdict.value} (awaiting seeds: {self.awaiting[0]} of {self.awaiting[1]} declared)"
        return self.verdict.value


def judge_level(correct, level: float, *, confidence: float = 0.95, regime_matches: bool | None = None,
                note: str = "", n_boot: int = 10_000, seed: int = 0, shared_items: bool = True,
                awaiting: tuple[int, int] | None = None) -> LevelJudgement:
    x = np.asarray(correct, dtype=float)
    S, R, T = x.shape
    make = dict(level=float(level), seeds=S, runs=R, trials=T, confidence=confidence, note=note,
                regime_matches=regime_matches)
    if S < 2:
        return LevelJudgement(Verdict.INCONCLUSIVE, float(x.mean()) if x.size else float("nan"),
                              float("nan"), float("nan"), **make)
    mean, low, high = hierarchical_bootstrap(x, confidence, n_boot=n_boot, seed=seed, shared_items=shared_items)
    if awaiting is not None and awaiting[0] < awaiting[1]:
        return LevelJudgement(Verdict.INCONCLUSIVE, mean, low, high, awaiting=(int(awaiting[0]), int(awaiting[1])),
                              **make)
    if low >= level:
        return LevelJudgement(Verdict.REPRODUCED, mean, low, high, **make)
    if high < level:
        return LevelJudgement(Verdict.CONTRADICTED, mean, low, high, **make)
    return LevelJudgement(Verdict.INCONCLUSIVE, mean, low, high, **make)


# ---------------------------------------------------------------- the one voice

def _regime(matches: bool | None) -> str:
    if matches is None:
        return ""
    return "; in the claim's regime" if matches else "; in a regime other than the claim's"


def _paired_sentence(j: Judgement) -> str:
    d, scale, unit = j.difference, j.scale, j.unit

    def num(x: float) -> str:
        return f"{x * scale:+.1f}"

    def size(x: float) -> str:
        return f"{x * scale:.1f} {unit}".rstrip()

    meas = measurement(d, scale, unit)
    side, other = ("above", "below") if j.direction == 1 else ("below", "above")
    claim_txt = None if j.claimed_effect is None else f"the claimed {num(j.direction * j.claimed_effect)} {unit}".rstrip()
    sesoi_txt = None if j.smallest_effect is None else (
        claim_txt if j.claimed_effect is not None and j.smallest_effect == j.claimed_effect
        else f"the smallest effect of interest, {num(j.direction * j.smallest_effect)} {unit}".rstrip())
    ref_txt = claim_txt or sesoi_txt
    mde = mde_of(d, power=j.power)
    mde_txt = (f"at this level {_seeds(d.n)} would detect " + ("no effect" if math.isinf(mde) else f"{size(mde)}")
               + f" with {j.power * 100:g} % power") if (_finite(mde) and mde > 0) or math.isinf(mde) else ""
    if j.awaiting is not None:
        got = f"{num(d.diff)} {unit} over the {_seeds(d.n)} run so far" if _finite(d.diff) else "nothing run yet"
        return (f"Δ {got}; a confirmatory row is judged only on all {j.awaiting[1]} of its declared seeds"
                f"{_regime(j.regime_matches)}")
    if d.n < 2 or not (_finite(d.low) and _finite(d.high)):
        return f"{meas}: nothing can be concluded{_regime(j.regime_matches)}"
    if not j.claimed:  # a comparison that tests no claim: only where the interval lies
        if d.low > 0:
            return f"{meas} lies above zero"
        if d.high < 0:
            return f"{meas} lies below zero"
        return f"{meas} includes zero" + (f"; {mde_txt}" if mde_txt else "")
    v = j.verdict
    if v == Verdict.REPRODUCED:
        text = f"{meas} lies {side} zero, on the claimed side"
    elif v == Verdict.REPRODUCED_SMALLER:
        text = f"{meas} lies {side} zero, on the claimed side, but short of {ref_txt}"
    elif v == Verdict.CONTRADICTED:
        text = f"{meas} lies {other} zero, against the claimed direction" + (f" ({claim_txt})" if claim_txt else "")
    elif v == Verdict.NO_EFFECT:
        text = (f"{meas} includes zero, and two one-sided tests at the same level rule out effects of "
                f"±{size(j.smallest_effect)} or more (TOST p = {j.tost_p:.2g})")
    else:
        text = f"{meas} includes zero"
        if ref_txt:
            text += f" and does not rule out {ref_txt}"
        if mde_txt:
            text += f"; {mde_txt}"
    return text + _regime(j.regime_matches)


def _share_sentence(j: ShareJudgement) -> str:
    said = f"{j.what} in {j.flagged} of {_seeds(j.seeds)}"
    if j.awaiting is not None:
        return (f"{said} so far; a confirmatory row is judged only on all {j.awaiting[1]} of its declared seeds"
                f"{_regime(j.regime_matches)}")
    if j.seeds < 1:
        return f"{said}: nothing can be concluded{_regime(j.regime_matches)}"
    rate = (f"{said}: the rate lies between {j.low * 100:.0f} % and {j.high * 100:.0f} % (two-sided exact "
            f"{_pct(j.confidence)} Clopper-Pearson interval)")
    claimed = f"the claimed majority (more than {j.claimed_rate * 100:.0f} % of seeds)"
    where = {Verdict.REPRODUCED: f"above {claimed}", Verdict.CONTRADICTED: f"below {claimed}"}.get(
        j.verdict, f"which straddles {j.claimed_rate * 100:.0f} %: it neither shows nor rules out {claimed}")
    return f"{rate}, {where}{_regime(j.regime_matches)}"


def _level_sentence(j: LevelJudgement) -> str:
    if not _finite(j.low):
        return (f"{j.mean * 100:.1f} % from {_seeds(j.seeds)} against the claimed {j.level * 100:.1f} %: "
                f"no interval{_regime(j.regime_matches)}")
    interval = (f"{j.mean * 100:.1f} % ({_pct(j.confidence)} hierarchical bootstrap interval {j.low * 100:.1f} to "
                f"{j.high * 100:.1f} over {_seeds(j.seeds)} x {j.runs} run(s) x {j.trials} trials{j.note})")
    if j.awaiting is not None:
        return (f"{interval} so far; a confirmatory row is judged only on all {j.awaiting[1]} of its declared "
                f"seeds{_regime(j.regime_matches)}")
    where = {Verdict.REPRODUCED: "lies at or above", Verdict.CONTRADICTED: "lies below"}.get(j.verdict, "straddles")
    return f"{interval} {where} the claimed {j.level * 100:.1f} %{_regime(j.regime_matches)}"


def verdict_sentence(judgement: Judgement | ShareJudgement | LevelJudgement) -> str:
    """THE verdict sentence of one comparison: chapters, ledger and README all print this string.

    '<verdict>: <measurement at the row's exact level> <where it lies against zero / the claim>
    <; regime qualifier>', e.g. 'contradicted: Δ -2.1 points (97.5 % (Holm level 0.05/2, family of
    2) interval -3.8 to -0.4; 10 seeds) lies below zero, against the claimed direction (the claimed
    +2.0 points); in a regime other than the claim's'. A comparison that tests no claim
    (`judge(..., claimed=False)`) gets no verdict word, only where its interval lies."""
    if isinstance(judgement, ShareJudgement):
        return f"{judgement.label}: {_share_sentence(judgement)}"
    if isinstance(judgement, LevelJudgement):
        return f"{judgement.label}: {_level_sentence(judgement)}"
    if not judgement.claimed:
        return _paired_sentence(judgement)
    return f"{judgement.label}: {_paired_sentence(judgement)}"


def verdict(difference: Difference, claimed_effect: float | None, regime_matches: bool | None = None,
            direction: int = +1, *, smallest_effect: float | None = None, power: float = 0.8) -> Verdict:
    """The verdict word of `judge` (see its table of rules); `regime_matches` never changes it."""
    return judge(difference, claimed_effect, smallest_effect=smallest_effect, direction=direction,
                 regime_matches=regime_matches, power=power).verdict


def verdict_reason(difference: Difference, claimed_effect: float | None, regime_matches: bool | None = None,
                   direction: int = +1, *, smallest_effect: float | None = None, power: float = 0.8,
                   scale: float = 100.0, unit: str = "points") -> str:
    """`verdict_sentence` of `judge(...)`: the verdict and why, quoting the interval at its exact level."""
    return verdict_sentence(judge(difference, claimed_effect, smallest_effect=smallest_effect, direction=direction,
                                  regime_matches=regime_matches, power=power, scale=scale, unit=unit))
