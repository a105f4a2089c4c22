"""The study's statistics in one package: paired seed differences, Holm families, detectable effects, verdicts.

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

The package: `paired` (differences, Holm, power, MDE), `verdicts` (`judge`, TOST, the measurement),
`shares` (Clopper-Pearson), `levels` (the hierarchical bootstrap), `sentences` (the one voice).
"""
from __future__ import annotations

from lib.stats.levels import LEVELS, LevelJudgement, hierarchical_bootstrap, judge_level, trials_from_accuracies
from lib.stats.paired import (
    Difference,
    holm,
    holm_adjust,
    mde_of,
    minimum_detectable_effect,
    paired_difference,
    paired_power,
)
from lib.stats.sentences import verdict, verdict_reason, verdict_sentence
from lib.stats.shares import ShareJudgement, clopper_pearson, judge_share
from lib.stats.verdicts import Judgement, Verdict, judge, level_text, measurement, tost

__all__ = [
    "Difference", "paired_difference", "holm_adjust", "holm", "paired_power", "minimum_detectable_effect", "mde_of",
    "Verdict", "tost", "level_text", "measurement", "Judgement", "judge",
    "clopper_pearson", "ShareJudgement", "judge_share",
    "LEVELS", "hierarchical_bootstrap", "trials_from_accuracies", "LevelJudgement", "judge_level",
    "verdict_sentence", "verdict", "verdict_reason",
]
