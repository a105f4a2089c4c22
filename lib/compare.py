"""Paired, Holm-corrected comparisons of arms in a per-seed table (`lib.records`).

A chapter compares several arms against one baseline, or the ledger tests several claims; each
such set is one family, corrected together (`lib.stats.holm`). Arms are paired by seed.

    family = compare(table, {"lr 1e-3": ("lr 1e-3", "blog"), ...}, "map@r")
    family.loc["lr 1e-3", ["diff", "low", "high", "mde", "verdict"]]
"""
from __future__ import annotations

import math

import pandas as pd

from lib import stats
from lib.records import per_seed

EFFECT = {"helps": "helps", "hurts": "hurts", "none": "no difference detected"}


def differences(table: pd.DataFrame, pairs: dict[str, tuple[str, str]], metric: str,
                dataset: str | None = None, alpha: float = 0.05) -> dict[str, stats.Difference]:
    """{name: Holm-corrected Difference of arm a - arm b} for the family `pairs` = {name: (a, b)}."""
    raw = {name: stats.paired_difference(per_seed(table, a, metric, dataset), per_seed(table, b, metric, dataset),
                                         confidence=1 - alpha)
           for name, (a, b) in pairs.items()}
    return stats.holm(raw, alpha=alpha) if len(raw) > 1 else raw


def effect(d: stats.Difference) -> str:
    """Which side of zero the (corrected) interval lies on: helps, hurts, or no difference detected."""
    if not (math.isfinite(d.low) and math.isfinite(d.high)):
        return EFFECT["none"]
    return EFFECT["helps"] if d.low > 0 else EFFECT["hurts"] if d.high < 0 else EFFECT["none"]


def compare(table: pd.DataFrame, pairs: dict[str, tuple[str, str]], metric: str, dataset: str | None = None,
            alpha: float = 0.05) -> pd.DataFrame:
    """One row per comparison: mean paired difference, its Holm-corrected interval at the row's own
    step level (`confidence`), raw and adjusted p, seeds paired, the minimum detectable effect at
    80 % power at that same level, and what the interval says. `difference_of(row)` gives the
    row back as a `lib.stats.Difference`."""
    rows = []
    for name, d in differences(table, pairs, metric, dataset, alpha).items():
        rows.append({"comparison": name, "metric": metric, "diff": d.diff, "low": d.low, "high": d.high,
                     "p": d.p_value, "p_holm": d.p, "seeds": d.n, "family": d.family_size,
                     "mde": stats.mde_of(d), "effect": effect(d), "sd": d.sd, "confidence": d.confidence,
                     "family_alpha": d.family_alpha, "step": d.step})
    return pd.DataFrame(rows).set_index("comparison")


def difference_of(row: pd.Series) -> stats.Difference:
    """A row of `compare` as the `lib.stats.Difference` it was made from (the seeds' names are not
    kept: only their number)."""
    def opt(key: str):
        value = row.get(key)
        return None if value is None or (isinstance(value, float) and math.isnan(value)) else value

    n = int(row["seeds"])
    p_adjusted = opt("p_holm") if int(row.get("family", 1)) > 1 else None
    step = opt("step")
    return stats.Difference(float(row["diff"]), float(row["low"]), float(row["high"]), n, tuple(range(n)),
                            float(row["p"]), float(row.get("sd", math.nan)), float(row.get("confidence", 0.95)),
                            p_adjusted, int(row.get("family", 1)), opt("family_alpha"),
                            None if step is None else int(step))


def said(row: pd.Series, claimed_effect: float | None = None, *, claimed: bool = False, **judge) -> str:
    """`lib.stats.verdict_sentence` of one row of `compare`: by default a comparison that tests no
    claim (where its interval lies, with the MDE at the same level only when it includes zero);
    with `claimed=True` (and the claim's effect, direction, regime) the claim's verdict sentence."""
    return stats.verdict_sentence(stats.judge(difference_of(row), claimed_effect, claimed=claimed, **judge))


def detectable(mde: float, level: float | None = None) -> str:
    """The minimum detectable effect (80 % power) of a comparison whose interval holds zero, at the
    level of its interval. Only for intervals that include zero: `said` uses it that way."""
    if not math.isfinite(mde):
        return "too few seeds to detect any effect"
    at = "" if level is None else f" at level {level:.4g}"
    return f"these seeds would detect{at} only effects of {mde * 100:.1f} points or more (80 % power)"


def sentence(row: pd.Series, scale: float = 100.0, unit: str = "points") -> str:
    """The measurement of one row of `compare` at its exact level (`lib.stats.measurement`), e.g.
    'Δ +3.4 points (98.75 % (Holm level 0.05/4, family of 4) interval +0.8 to +6.0; 3 seeds)'."""
    return stats.measurement(difference_of(row), scale, unit)
