"""Paired seed differences (the paired t-test), Holm's correction over a family, power and the
minimum detectable effect.

Everything is built on scipy.stats / scipy.optimize; the only formulas written out by hand are
Holm's step-down adjustment (scipy has no Holm) and the power of the paired t-test, which is the
noncentral t tail probability `scipy.stats.nct` gives.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

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
