"""The verdict of one paired comparison (`judge`, its rules in order), TOST, and the measurement
at a row's exact level."""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from scipy import stats

from lib.stats.paired import Difference, _finite

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
        return awaiting_label(self.verdict, self.awaiting)


def awaiting_label(verdict: Verdict, awaiting: tuple[int, int] | None) -> str:
    """A verdict's label; a confirmatory row short of its declared seeds says how many it has."""
    if awaiting is not None:
        return f"{verdict.value} (awaiting seeds: {awaiting[0]} of {awaiting[1]} declared)"
    return verdict.value


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
