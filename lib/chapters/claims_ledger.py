"""Chapter 7: the claims ledger as a table, a figure of the measured effects, and a count."""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.lines import Line2D
import numpy as np
import pandas as pd

from lib import ledger, plots
from lib.config import load_profile
from lib.stats import Verdict
from lib.study import Chapter

# Colour-blind-safe (lib.plots.PALETTE), with a marker each so no verdict rests on colour alone.
COLOUR = {Verdict.REPRODUCED: plots.PALETTE[2], Verdict.REPRODUCED_SMALLER: plots.PALETTE[9],
          Verdict.CONTRADICTED: plots.PALETTE[3], Verdict.NO_EFFECT: plots.PALETTE[0], Verdict.INCONCLUSIVE: plots.GREY}
MARKER = {Verdict.REPRODUCED: "o", Verdict.REPRODUCED_SMALLER: "o", Verdict.CONTRADICTED: "X",
          Verdict.NO_EFFECT: "D", Verdict.INCONCLUSIVE: "s"}
SHOWN = ["section", "id", "claim", "source", "dataset", "claim's regime", "our regime", "metric", "diff", "low", "high",
         "level", "mde", "seeds", "declared seeds", "verdict", "reason"]


def build(ch: Chapter) -> tuple[pd.DataFrame, str]:
    """The ledger of the profile the chapter's settings name (`tables_from`), saved as a table."""
    source = load_profile(ch.settings.tables_from)
    claims = ledger.build(source)
    ch.save_table(claims.set_index("claim"), "ledger")
    note = (f"Tables read from the **{source.name}** profile ({source.description}); this notebook runs in the "
            f"**{ch.profile.name}** profile.")
    if claims.attrs.get("declared"):
        note += (f" The confirmatory family was declared in `{claims.attrs['declared']}`; every other row is "
                 "exploratory.")
    return claims[SHOWN], note


def markdown(claims: pd.DataFrame) -> str:
    """The ledger as a Markdown table a reader can scan: claim, regimes, measurement, verdict."""
    def cell(text) -> str:
        return str(text).replace("|", "/").replace("\n", " ")

    lines = ["| section | claim | source | data | claim's regime | our regime | verdict sentence |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for _, r in claims.iterrows():
        lines.append("| " + " | ".join(cell(r[k]) for k in ("section", "claim", "source", "dataset", "claim's regime",
                                                            "our regime", "reason")) + " |")
    return "\n".join(lines)


def _comparisons(ch: Chapter, claims: pd.DataFrame) -> list:
    """The ledger's comparison (declared or listed) behind each row, None for a share or level row."""
    source = load_profile(ch.settings.tables_from)
    listed = {(c.claim, c.dataset, c.metric): c for c in ledger.claims(source) if isinstance(c, ledger.Comparison)}
    declaration = ledger.declaration_for(source)
    declared = {c.id: c for c in declaration.claims} if declaration is not None else {}
    return [declared.get(r.get("id")) or listed.get((r["claim"], r["dataset"], r["metric"]))
            for _, r in claims.iterrows()]


def smallest_effects(ch: Chapter, claims: pd.DataFrame) -> pd.Series:
    """Each row's smallest effect of interest on the claimed side (a - b, a fraction; NaN where the
    claim names none): the declared one for a confirmatory row, else the ledger's claimed effect
    (`lib.ledger.Comparison`), as `lib.stats.judge` uses it."""
    out = []
    for c in _comparisons(ch, claims):
        size = None if c is None else (c.smallest_effect if c.smallest_effect is not None else c.claimed_effect)
        out.append(np.nan if size is None else c.direction * abs(float(size)))
    return pd.Series(out, index=claims.index, dtype=float)


def _verdict(value: str) -> Verdict | None:
    try:
        return Verdict(value)
    except ValueError:
        return None


def effects_figure(ch: Chapter, claims: pd.DataFrame) -> None:
    """Each comparative claim's measured difference (arm named first minus second, in points) with
    its interval at the row's own Holm level, coloured and shaped by verdict (only the verdicts
    present in the key); a black diamond marks the claim's smallest effect of interest on its
    claimed side, and a grey band ±that size (the region the no-effect test must confine the
    interval to). Labels are wrapped, never cut."""
    comparative = np.array([c is not None for c in _comparisons(ch, claims)], dtype=bool)
    effects = claims[comparative & np.isfinite(claims["diff"].to_numpy(float))].reset_index(drop=True)
    sesoi = smallest_effects(ch, effects)
    labels = [plots.wrap(f"{e['source']}: {e['claim']} ({e['dataset']}, {e['metric']})", 58) for _, e in effects.iterrows()]
    lines = [label.count("\n") + 1 for label in labels]
    heights = [0.28 * n + 0.25 for n in lines]
    ys = np.cumsum([0] + heights[:-1]) + np.array(heights) / 2
    width = 12
    fig, ax = plt.subplots(figsize=(width, max(sum(heights) + 2.2, width / 1.75)))
    present = {}
    for y, (_, e), s in zip(ys, effects.iterrows(), sesoi):
        v = _verdict(e["verdict"])
        colour, marker = COLOUR.get(v, plots.GREY), MARKER.get(v, "s")
        if np.isfinite(s):
            ax.plot([-abs(s) * 100, abs(s) * 100], [y, y], color=plots.GREY, alpha=0.3, lw=7, solid_capstyle="butt",
                    zorder=1)
            ax.scatter(s * 100, y, marker="D", facecolor="white", edgecolor="black", s=36, zorder=4)
        diff, low, high = (float(e[c]) * 100 for c in ("diff", "low", "high"))
        if np.isfinite(low) and np.isfinite(high):
            ax.errorbar(diff, y, xerr=[[max(diff - low, 0)], [max(high - diff, 0)]], fmt=marker, color=colour,
                        capsize=3, ms=7, zorder=3)
        else:  # no interval (one seed, or seeds still awaited): the difference alone, hollow
            ax.scatter(diff, y, marker=marker, facecolor="white", edgecolor=colour, s=49, zorder=3)
            present.setdefault("no interval (hollow)", (plots.GREY, "o"))
        present.setdefault(e["verdict"], (colour, marker))
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(ys, labels, fontsize=8)
    ax.set_ylim(sum(heights), 0)
    handles = [Line2D([], [], color=c, marker=m, ls="", ms=7, label=v,
                      **({"markerfacecolor": "white"} if v.startswith("no interval") else {}))
               for v, (c, m) in present.items()]
    if sesoi.notna().any():
        handles += [Line2D([], [], marker="D", ls="", markerfacecolor="white", markeredgecolor="black",
                           label="smallest effect of interest (claimed side)"),
                    Line2D([], [], color=plots.GREY, alpha=0.3, lw=7, label="± smallest effect of interest")]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, fontsize=8, frameon=False)
    ax.set_xlabel("measured effect: arm named first minus second (percentage points), interval at each row's own "
                  "Holm level")
    ax.set_ylabel("source: claim (data set, metric)")
    counted = effects["verdict"].value_counts()
    missing = int((~np.isfinite(effects[["low", "high"]].to_numpy(float)).all(axis=1)).sum())
    ax.set_title(f"{len(effects)} comparative claims: " + ", ".join(f"{n} {v}" for v, n in counted.items())
                 + (f"; {missing} without an interval yet (too few seeds run)" if missing else ""), fontsize=11)
    fig.tight_layout()
    ch.save(fig, "effects", "Each comparative claim's measured effect with its corrected interval, coloured by verdict, "
                            "beside its smallest effect of interest")


def counts(ch: Chapter, claims: pd.DataFrame) -> str:
    text = f"**{len(claims)} claim rows.** " + " ".join(
        f"*{section.capitalize()}* ({len(rows)}): " + ", ".join(
            f"{rows.verdict.value_counts().get(v.value, 0)} {v.value}" for v in Verdict) + "."
        for section, rows in claims.groupby("section", sort=False))
    if ch.settings.tables_from == "smoke":
        text += " *Smoke tables: the verdicts are meaningless; they only prove the chain runs.*"
    return text
