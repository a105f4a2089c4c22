"""Chapter 5's figures: the scenarios, the catalogue, the new-whale ROC and the retrievals, drawn from the
per-seed table and the runs that `lib.chapters.reidentification` measures."""
from __future__ import annotations

import math
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import roc_curve

from lib import derived, plots, reid
from lib.chapters.reidentification import (LATER, POST_HOC, SAME, SCENARIOS, Metrics, _first_trained, _fmt, _mean,
                                           _settings, _test_half, _values, best_recipe, scenario_queries)
from lib.evaluate import knn
from lib.study import Chapter


def _lift(table: pd.DataFrame, m: Metrics) -> str:
    """The scenario figure's title: how much same-encounter photos lift the score, mean over recipes."""
    later, same = (np.nanmean([_mean(table, n, m.scenario(x)) for n in _settings(table)]) * 100 for x in (LATER, SAME))
    if not (math.isfinite(later) and math.isfinite(same)):
        return f"Held-out mAP@{m.k20} per scenario"
    return (f"Allowing photos from the query's own encounter moves mAP@{m.k20} from {later:.1f} % (a later encounter) "
            f"to {same:.1f} %, mean over recipes")


def scenario_figure(ch: Chapter, table: pd.DataFrame, queries: dict[str, int] | None = None) -> plt.Figure:
    """mAP@20 per scenario and recipe, every seed a dot, mean ± sd; each panel names how many
    queries it scores (`queries`, else counted on the chapter's held-out whales)."""
    m = Metrics(ch)
    queries = scenario_queries(ch) if queries is None else queries
    by_recipe = {name: [SimpleNamespace(metrics=row) for row in rows.to_dict("records")]
                 for name, rows in table.groupby("setting", sort=False)}
    width = 13
    fig, axes = plt.subplots(1, len(SCENARIOS), figsize=(width, max(0.55 * len(by_recipe) + 2, width / 1.75)),
                             sharey=True, squeeze=False)
    for ax, scenario in zip(axes[0], SCENARIOS):
        plots.seed_dots(by_recipe, m.scenario(scenario), ax)
        n = queries.get(scenario)
        ax.set_title(f"{scenario}\n({'?' if n is None else n} queries)", fontsize=10)
        if n == 0:
            ax.text(0.5, 0.5, "no query with a match\nin this profile", transform=ax.transAxes, ha="center",
                    va="center", color=plots.GREY)
        ax.set_xlabel(f"mAP@{m.k20} (%)\nsmall dots: seeds; large: mean ± sd")
    axes[0, 0].set_ylabel("recipe")
    fig.suptitle(_lift(table, m), fontsize=11)
    fig.tight_layout()
    ch.save(fig, "scenarios", f"Held-out mAP@{m.k20} per scenario and recipe (seeds and mean ± sd); each panel "
                              "names the queries it scores")
    plt.close(fig)  # the notebook shows the returned figure, once
    return fig


def _averaging_takeaway(table: pd.DataFrame, m: Metrics) -> str:
    """The catalogue figure's title: in how many recipes averaging beats the closest photo with the
    whole catalogue (means over seeds, computed)."""
    names = _settings(table)
    gains = [_mean(table, n, m.individuals(None, "averaged")) - _mean(table, n, m.individuals(None, "per image"))
             for n in names]
    gains = [g for g in gains if math.isfinite(g)]
    if not gains:
        return f"mAP@{m.k5} over individuals by catalogue size"
    return (f"Averaging each whale's photos beats its closest photo in {sum(g > 0 for g in gains)} of {len(gains)} "
            f"recipes with the whole catalogue (mean over seeds)")


def catalogue_figure(ch: Chapter, table: pd.DataFrame) -> plt.Figure:
    """Small multiples, one panel per recipe: mAP@5 over individuals against catalogue photos per
    whale, ranking by the closest photo (solid) or by the mean of a whale's photos (dashed), mean
    ± sd over seeds."""
    m = Metrics(ch)
    names = _settings(table)
    nrows = -(-len(names) // 4)
    ncols = -(-len(names) // nrows)  # rows of at most four panels, as even as they go
    width = 3.3 * ncols + 0.6
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, max(3.3 * nrows + 1.4, width / 1.75)), squeeze=False,
                             sharey=True)
    xs = np.arange(len(m.photos))
    for j, (ax, name) in enumerate(zip(axes.flat, names)):
        for i, (how, style) in enumerate((("per image", "-"), ("averaged", "--"))):
            values = [_values(table, name, m.individuals(p, how)) * 100 for p in m.photos]
            ax.errorbar(xs + 0.06 * i, [v.mean() if len(v) else np.nan for v in values],
                        yerr=[v.std(ddof=1) if len(v) > 1 else 0 for v in values], ls=style, marker="o", capsize=3,
                        color=plots.PALETTE[i], label=how)
        ax.set_xticks(xs, [str(p or "all") for p in m.photos])
        ax.set_title(plots.wrap(name, 30), fontsize=9)
        ax.set_xlabel("catalogue photos per whale")
        if j % ncols == 0:  # the other panels share its y axis
            ax.set_ylabel(f"mAP@{m.k5} over individuals (%)")
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    labels = ["closest photo per whale (mean ± sd)", "mean of a whale's photos (mean ± sd)"]
    fig.suptitle(_averaging_takeaway(table, m), fontsize=11)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0), ncol=2, fontsize=9, frameon=False)
    ch.save(fig, "catalogue-and-averaging",
            f"mAP@{m.k5} over individuals against catalogue photos per whale, one panel per recipe: ranked by the "
            "closest photo (solid) or by the mean of each whale's photos (dashed)")
    plt.close(fig)
    return fig


def new_whale_roc(ch: Chapter, results: dict[str, list], split, table: pd.DataFrame) -> plt.Figure:
    """ROC of the "new individual" decision on the test half, first trained seed of each recipe, with
    the threshold that seed chose on the validation half (a dot; its false-positive rate in the
    legend and the title)."""
    test_half = _test_half(ch, split)
    fig, ax = plt.subplots(figsize=(6.5, 8))
    chosen_fpr = []
    for i, (name, runs) in enumerate(results.items()):
        run = _first_trained(runs)
        scored = None if run is None else derived.of_run(
            run, "new-individual-scores", lambda run=run: {k: v for k, v in reid.new_scores(
                run.arrays["test_embeddings"], split.labels, test_half, average=False).items()
                if k in ("score", "is_new")},
            params={"protocol_seed": ch.settings.protocol_seed, "new_fraction": ch.settings.new_fraction},
            modules=("reid",))
        if scored is None or scored["is_new"].all() or not scored["is_new"].any():
            continue
        fpr, tpr, thresholds = roc_curve(scored["is_new"], scored["score"])
        chosen = table.loc[(table["setting"] == name) & (table["seed"] == run.config.train.seed), "open-set threshold"]
        at = min(int(np.searchsorted(-thresholds, -chosen.iloc[0])), len(fpr) - 1) if len(chosen) else None
        colour = plots.PALETTE[i % len(plots.PALETTE)]
        said = "" if at is None else f"; threshold: {fpr[at] * 100:.0f} % of known whales called new"
        ax.plot(fpr * 100, tpr * 100, color=colour, label=f"{name} (AUC {_fmt(table, name, 'new AUC', pct=False)}{said})")
        if at is not None:
            ax.scatter(fpr[at] * 100, tpr[at] * 100, color=colour, edgecolor="black", s=50, zorder=3)
            chosen_fpr.append(fpr[at] * 100)
    ax.plot([0, 100], [0, 100], ":", color=plots.GREY, label="chance")
    ax.scatter([], [], color="white", edgecolor="black", s=50, label="threshold chosen on the validation half")
    ax.set_xlabel("known whales called new (false-positive rate, %)")
    ax.set_ylabel("new whales called new (recall, %)")
    ax.set_aspect("equal")
    if chosen_fpr:
        low, high = f"{min(chosen_fpr):.0f}", f"{max(chosen_fpr):.0f}"
        ax.set_title(f"The validation thresholds call {low if low == high else f'{low}–{high}'} % of the known "
                     "whales new", fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=1)
    fig.tight_layout()
    ch.save(fig, "new-individual-roc",
            "ROC of the 'new individual' decision on the test half; dots: threshold chosen on validation, its "
            "false-positive rate in the legend")
    plt.close(fig)
    return fig


def retrievals_figure(ch: Chapter, results: dict[str, list], split, table: pd.DataFrame) -> plt.Figure:
    """The top-5 catalogue photos of a few later-encounter queries, for the recipe with the highest
    later-encounter mAP@20 (chosen on the test split after the fact: an illustration, not a finding)."""
    best = best_recipe(table, Metrics(ch).scenario(LATER))
    run = _first_trained(results[best])
    later = reid.scenarios(split.meta, ch.settings.protocol_seed)[LATER]
    queries = later.query[np.isin(split.labels[later.query], split.labels[later.catalogue])]
    shown = np.random.default_rng(ch.settings.protocol_seed).choice(
        queries, size=min(ch.settings.examples, len(queries)), replace=False)

    def compute() -> dict:
        emb = run.arrays["test_embeddings"]
        return {"ranked": later.catalogue[knn(emb[shown], emb[later.catalogue], min(5, len(later.catalogue)))[1]]}

    ranked = derived.of_run(run, "top5", compute, params={"protocol_seed": ch.settings.protocol_seed,
                                                          "queries": shown.tolist()}, modules=("reid", "evaluate"))["ranked"]
    fig = plots.retrievals([split.read([q])[0].numpy() for q in shown],
                           [[split.read([j])[0].numpy() for j in row] for row in ranked],
                           [[split.labels[j] == split.labels[q] for j in row] for q, row in zip(shown, ranked)],
                           [f"query {split.meta.whale_id[q]}" for q in shown])
    fig.suptitle(f"{best} ({POST_HOC}): top-5 retrievals", fontsize=10)
    ch.save(fig, "top5-retrievals", f"Top-5 catalogue photos for a few later-encounter queries (green: same whale; "
                                    f"recipe {POST_HOC})")
    plt.close(fig)
    return fig
