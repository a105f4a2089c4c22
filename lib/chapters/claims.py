"""Chapter 7: the claims ledger as a table, a figure of the measured effects, and a count."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lib import ledger
from lib.config import load_profile
from lib.stats import Verdict
from lib.study import Chapter

COLOUR = {Verdict.REPRODUCED: "tab:green", Verdict.CONTRADICTED: "tab:red",
          Verdict.NOT_SUPPORTED: "tab:orange", Verdict.INCONCLUSIVE: "tab:grey"}
SHOWN = ["claim", "source", "dataset", "claim's regime", "our regime", "metric", "diff", "low", "high", "mde",
         "seeds", "verdict", "reason"]


def build(ch: Chapter) -> tuple[pd.DataFrame, str]:
    """The ledger of the profile the chapter's settings name (`tables_from`), saved as a table."""
    source = load_profile(ch.settings["tables_from"])
    claims = ledger.build(source)
    ch.save_table(claims.set_index("claim"), "ledger")
    note = (f"Tables read from the **{source.name}** profile ({source.description}); this notebook runs in the "
            f"**{ch.profile.name}** profile.")
    return claims[SHOWN], note


def markdown(claims: pd.DataFrame) -> str:
    """The ledger as a Markdown table a reader can scan: claim, regimes, measurement, verdict."""
    def cell(text) -> str:
        return str(text).replace("|", "/").replace("\n", " ")

    lines = ["| claim | source | data | claim's regime | our regime | measurement | verdict |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for _, r in claims.iterrows():
        lines.append("| " + " | ".join(cell(r[k]) for k in ("claim", "source", "dataset", "claim's regime",
                                                            "our regime", "reason")) + f" | **{r['verdict']}** |")
    return "\n".join(lines)


def effects_figure(ch: Chapter, claims: pd.DataFrame) -> None:
    effects = claims[np.isfinite(claims["low"])].reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(effects) + 1.2))
    for y, e in effects.iterrows():
        ax.errorbar(e["diff"] * 100, y, xerr=[[max(e["diff"] - e["low"], 0) * 100], [max(e["high"] - e["diff"], 0) * 100]],
                    fmt="o", color=COLOUR[Verdict(e["verdict"])], capsize=3)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(effects)), [f"{e['source']}: {e['claim'][:46]}… ({e['dataset']}, {e['metric']})"
                                        for _, e in effects.iterrows()], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("measured effect, points (Holm-corrected 95 % interval)\n"
                  "green reproduced, red contradicted, orange not supported at this scale, grey inconclusive")
    ch.save(fig, "effects", "Each comparative claim's measured effect with its corrected interval, coloured by verdict")


def counts(ch: Chapter, claims: pd.DataFrame) -> str:
    n = claims.verdict.value_counts()
    text = (f"**{len(claims)} claim rows:** " + ", ".join(f"{n.get(v.value, 0)} {v.value}" for v in Verdict) + ".")
    if ch.settings["tables_from"] == "smoke":
        text += " *Smoke tables: the verdicts are meaningless; they only prove the chain runs.*"
    return text
