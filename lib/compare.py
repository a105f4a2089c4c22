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
    """One row per comparison: mean paired difference, its Holm-corrected interval, raw and adjusted
    p, seeds paired, the minimum detectable effect at 80 % power and what the interval says."""
    rows = []
    for name, d in differences(table, pairs, metric, dataset, alpha).items():
        rows.append({"comparison": name, "metric": metric, "diff": d.diff, "low": d.low, "high": d.high,
                     "p": d.p_value, "p_holm": d.p, "seeds": d.n, "family": d.family_size,
                     "mde": stats.mde_of(d), "effect": effect(d)})
    return pd.DataFrame(rows).set_index("comparison")


def detectable(mde: float) -> str:
    """What a comparison whose interval holds zero could have seen: its minimum detectable effect."""
    if not math.isfinite(mde):
        return "too few seeds to detect any effect"
    return f"the seeds could not detect effects smaller than {mde * 100:.1f} points"


def sentence(row: pd.Series, scale: float = 100.0, unit: str = "points") -> str:
    """'+3.4 points (Holm 95 % interval +0.8 to +6.0, 3 seeds)' for one row of `compare`."""
    if not (math.isfinite(row["low"]) and math.isfinite(row["high"])):
        return f"{row['diff'] * scale:+.1f} {unit} ({int(row['seeds'])} seed(s): no interval)"
    label = "Holm 95 % interval" if row["family"] > 1 else "95 % interval"
    return (f"{row['diff'] * scale:+.1f} {unit} ({label} {row['low'] * scale:+.1f} to {row['high'] * scale:+.1f}, "
            f"{int(row['seeds'])} seeds)")
