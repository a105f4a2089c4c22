"""An accuracy against a claimed level, judged on the hierarchical bootstrap interval over seeds x
test runs x trials."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lib.stats.verdicts import Verdict, awaiting_label

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
        return awaiting_label(self.verdict, self.awaiting)


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
