"""A share of seeds that show a flag, judged on its exact Clopper-Pearson interval."""
from __future__ import annotations

from dataclasses import dataclass

from scipy import stats

from lib.stats.verdicts import Verdict, awaiting_label

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
        return awaiting_label(self.verdict, self.awaiting)


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
