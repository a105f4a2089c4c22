"""The claims ledger's arithmetic: read the chapters' result tables, compare two settings from
their summaries, and turn the comparison into a verdict.

The chapters write figures/<profile>/<chapter>-<name>.csv (`Chapter.save_table`) with, per
setting, `seeds` and `<metric> mean` / `<metric> sd` over seeds; the ledger trains nothing.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from scipy import stats

from lib.config import REPO_ROOT

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"


class LedgerError(RuntimeError):
    pass


def check_chapter_ran(profile: str, chapter: str, root=None) -> None:
    """Refuse a chapter whose last run failed: run_all.sh leaves reports/<profile>/FAILED-<chapter>.ipynb
    (and removes it when the chapter next succeeds), and the tables in figures/<profile>/ are then
    an older run's, or a half-finished one's. A report of a success newer than the FAILED file
    (a notebook rerun outside run_all.sh) counts as the last run."""
    reports = Path(root or REPO_ROOT) / "reports" / profile
    failed, ok = reports / f"FAILED-{chapter}.ipynb", reports / f"{chapter}.ipynb"
    if failed.exists() and not (ok.exists() and ok.stat().st_mtime > failed.stat().st_mtime):
        raise LedgerError(f"chapter {chapter} failed in its last run in the {profile} profile (see {failed}); the "
                          f"ledger will not read its tables in figures/{profile}/, which are an older run's or the "
                          f"failed run's. Rerun it: `./run_all.sh --profile {profile} --only {chapter}`")


def read_table(profile: str, chapter: str, name: str = "results", root=None) -> pd.DataFrame:
    """A chapter's saved table as plain columns; a clear error naming the command that writes it,
    or the chapter's failed run (`check_chapter_ran`)."""
    check_chapter_ran(profile, chapter, root)
    path = Path(root or REPO_ROOT) / "figures" / profile / f"{chapter}-{name}.csv"
    if not path.exists():
        raise LedgerError(f"{path} is missing: run `./run_all.sh --profile {profile} --only {chapter}` first "
                          "(the ledger only reads what the chapters measured)")
    table = pd.read_csv(path)
    needed = {"setting", "seeds"}
    if not needed <= set(table.columns):
        raise LedgerError(f"{path} lacks columns {sorted(needed - set(table.columns))}: it was not written by "
                          f"Chapter.save_table; rerun the chapter")
    return table


def row(table: pd.DataFrame, setting: str, dataset: str | None = None) -> pd.Series:
    found = table[table["setting"] == setting]
    if dataset is not None:
        found = found[found["dataset"] == dataset]
    if len(found) != 1:
        where = f"{setting!r}" + (f" on {dataset}" if dataset else "")
        raise LedgerError(f"expected one row for {where}, found {len(found)}; the chapter's settings changed, rerun it")
    return found.iloc[0]


def welch(a: pd.Series, b: pd.Series, metric: str, level: float = 0.95) -> dict:
    """Mean difference a - b of `metric` with a Welch interval, from the two rows' mean, sd and
    number of seeds (the same interval `lib.study.difference` computes from the seeds).
    Diverged seeds have no value, so n counts the seeds minus the diverged ones."""
    ma, mb = float(a[f"{metric} mean"]), float(b[f"{metric} mean"])
    sa, sb = float(a[f"{metric} sd"]), float(b[f"{metric} sd"])
    na = int(a["seeds"]) - int(a.get("diverged", 0) or 0)
    nb = int(b["seeds"]) - int(b.get("diverged", 0) or 0)
    out = {"diff": ma - mb, "low": math.nan, "high": math.nan, "n": (na, nb)}
    if na > 1 and nb > 1 and math.isfinite(sa) and math.isfinite(sb):
        va, vb = sa**2 / na, sb**2 / nb
        se = math.sqrt(va + vb)
        half = 0.0
        if se > 0:
            dof = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
            half = stats.t.ppf(0.5 + level / 2, dof) * se
        out["low"], out["high"] = out["diff"] - half, out["diff"] + half
    return out


def verdict(comparison: dict, direction: int = 1) -> str:
    """`reproduced` when the whole interval lies on the claimed side of zero, `not reproduced`
    when it lies on the other side, `inconclusive` when it contains zero or has no spread."""
    low, high = comparison["low"] * direction, comparison["high"] * direction
    low, high = min(low, high), max(low, high)
    if not (math.isfinite(low) and math.isfinite(high)):
        return INCONCLUSIVE
    if low > 0:
        return REPRODUCED
    if high < 0:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def size_verdict(comparison: dict | None, claimed: float) -> str:
    """For a claimed gain of about `claimed`: `reproduced` when the interval lies above zero, `not
    reproduced` when it lies entirely below `claimed` (the claimed gain is ruled out), otherwise
    (or when the comparison was not measured) `inconclusive`."""
    if comparison is None:
        return INCONCLUSIVE
    if verdict(comparison) == REPRODUCED:
        return REPRODUCED
    return NOT_REPRODUCED if ruled_out(comparison, claimed) else INCONCLUSIVE


def ruled_out(comparison: dict, claimed: float) -> bool:
    """Whether the whole interval lies below the claimed gain."""
    return math.isfinite(comparison["high"]) and comparison["high"] < claimed


def describe(comparison: dict, metric: str, points: bool = True) -> str:
    """'Δ map@r +3.1 points (95 % CI +1.0 to +5.2; 3 vs 3 seeds)'."""
    scale = 100 if points else 1
    unit = " points" if points else ""
    ci = ("no interval (one seed)" if not math.isfinite(comparison["low"]) else
          f"95 % CI {comparison['low'] * scale:+.1f} to {comparison['high'] * scale:+.1f}")
    na, nb = comparison["n"]
    return f"Δ {metric} {comparison['diff'] * scale:+.1f}{unit} ({ci}; {na} vs {nb} seeds)"


def comparison(table: pd.DataFrame, setting: str, baseline: str, metric: str, dataset: str | None = None) -> dict | None:
    """welch(setting, baseline) from a chapter table, or None when the profile did not run one of them."""
    try:
        return welch(row(table, setting, dataset), row(table, baseline, dataset), metric)
    except LedgerError:
        return None


def entry(claim: str, source: str, dataset: str, profile: str, metric: str, compared: dict | None,
          direction: int = 1, verdict_override: str | None = None, note: str = "") -> dict:
    """One row of the ledger; a comparison the profile did not run is `inconclusive`, and says so."""
    if compared is None:
        measurement, decided = f"not measured in the {profile} profile", INCONCLUSIVE
        diff = low = high = math.nan
    else:
        measurement, decided = describe(compared, metric), verdict(compared, direction)
        diff, low, high = compared["diff"], compared["low"], compared["high"]
    return {"claim": claim, "source": source, "dataset": dataset, "profile": profile, "metric": metric,
            "measurement": measurement + (f"; {note}" if note else ""), "verdict": verdict_override or decided,
            "diff": diff, "low": low, "high": high}
