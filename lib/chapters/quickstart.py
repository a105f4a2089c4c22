"""Chapter 0: one semi-hard triplet run on Omniglot, its diagnostics and what they say."""
from __future__ import annotations

import pandas as pd

from lib import plots, records
from lib.arms import SEMI_HARD_TRIPLET
from lib.study import Chapter, fmt

SETTING = SEMI_HARD_TRIPLET
METRICS = ["recall@1", "map@r", "nmi", "oneshot_accuracy", "effective_rank", "collapsed"]
CHANCE_ONE_SHOT = 1 / 20


def plan(ch: Chapter):
    """The chapter's runs (lib.runs.plan): the profile's Omniglot run over its seeds."""
    yield ch.planned({SETTING: ch.config()})


def run(ch: Chapter) -> tuple[list, pd.DataFrame]:
    """The profile's Omniglot run over its seeds, and the mean ± sd table."""
    results = ch.results({SETTING: ch.config()})[SETTING]
    return results, records.summary(ch.table(), METRICS).droplevel("dataset")


def diagnostics(ch: Chapter, results: list) -> None:
    cfg = results[0].config
    ch.save(plots.diagnostics([r.history for r in results], title="Omniglot, semi-hard triplet",
                              validation=plots.validation_words(cfg)), "diagnostics",
            "The trainer's per-epoch diagnostics over seeds; " + plots.validation_words(cfg))
    margin = (cfg.loss.kwargs or {}).get("margin")
    fig = plots.negative_distance_histograms(results[0].history, margin=margin)
    fig.axes[0].set_title("d(a,n) of the semi-hard negatives, seed 0")
    ch.save(fig, "negative-distances", "Distances of the mined negatives, per epoch, beside d(a,p) and the margin")


def conclusion(ch: Chapter, results: list, table: pd.DataFrame) -> str:
    row = table.loc[SETTING]
    collapsed = sum(bool(r.metrics.get("collapsed")) for r in results)
    learned = row["oneshot_accuracy mean"] > 2 * CHANCE_ONE_SHOT and not collapsed
    text = (f"Over {len(results)} seed(s), Recall@1 on the unseen alphabets is "
            f"**{fmt(row['recall@1 mean'], row['recall@1 sd'])}**, MAP@R {fmt(row['map@r mean'], row['map@r sd'])}, "
            f"and 20-way one-shot accuracy {fmt(row['oneshot_accuracy mean'], row['oneshot_accuracy sd'])} "
            f"(chance {CHANCE_ONE_SHOT:.0%}); the held-out embedding spans {row['effective_rank mean']:.1f} "
            "effective dimensions. ")
    text += ("The embedding learned something that transfers to unseen alphabets, and no run collapsed: "
             "the chain works end to end." if learned else
             "The embedding did **not** clearly beat chance or a run collapsed: at this budget the chain runs "
             "but does not yet learn — look at the diagnostics above before trusting later chapters.")
    return text + (" These are smoke-profile numbers and mean nothing." if ch.profile.name == "smoke" else "")
