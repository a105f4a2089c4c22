"""Chapter 4's figures: accuracy against the grid, learning curves, the learners' map, the clusters and
their cost, and the budget arms, drawn from the runs and the per-seed table `lib.chapters.divide_and_conquer` keeps."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lib import derived, divide, plots, records
from lib.arms import SINGLE
from lib.chapters.divide_and_conquer import (CURVE, LABELS, PRIMARY, SECONDARY, _family, _histories, budget_arms,
                                             centre, comparisons, grid)
from lib.study import Chapter, Diverged


def _saved(ch: Chapter, fig: plt.Figure, name: str, caption: str, rect=(0, 0, 1, 1)) -> plt.Figure:
    """Save the figure and close it, so the notebook shows it once, as the cell's value. `rect`:
    the part of the figure the axes fill (room left for a figure legend)."""
    fig.tight_layout(rect=rect)
    ch.save(fig, name, caption)
    plt.close(fig)
    return fig


MIN_SPAN = 2.0  # points: the y range of a difference plot never magnifies less than ±2 points (the study's smallest effect of interest)


def _where(low: float, high: float) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return "no interval"
    return "interval above zero" if low > 0 else "interval below zero" if high < 0 else "interval includes zero"


def accuracy_against_grid(ch: Chapter, metric: str = SECONDARY) -> plt.Figure:
    """Per data set: each divided setting minus K = 1, paired by seed, against K at the centre's M
    (left) and against M at the centre's K (right): every seed's difference a small dot, the mean
    difference with its Holm-corrected interval from the chapter's comparison table (`comparisons`)
    a large dot and bar, K = 1 the line at zero. No lines join the settings: they are separate arms."""
    at, points, table = ch.settings.grid_at, grid(ch), ch.table()
    datasets, name = ch.settings.datasets, LABELS.get(metric, metric)
    family, middle = comparisons(ch), centre(ch)
    fig, axes = plt.subplots(len(datasets), 2, figsize=(11, 3.6 * len(datasets) + 1), squeeze=False)
    said = []
    for row, ds in zip(axes, datasets):
        found = _family(family, ds, metric)
        base = records.per_seed(table, SINGLE, metric, ds)
        for ax, vary in zip(row, ["K", "M"]):
            if vary == "K":
                chosen = sorted((k, n) for n, (k, m) in points.items() if m == at.recluster_every or k == 1)
                label = f"K (learners; M = {at.recluster_every})"
            else:
                chosen = sorted((m, n) for n, (k, m) in points.items() if k == at.clusters)
                label = f"M (epochs between re-clusterings; K = {at.clusters})"
            span = MIN_SPAN
            for x, setting in chosen:
                if setting == SINGLE:
                    ax.scatter([x], [0], marker="s", color=plots.GREY, s=30, zorder=3, label="K = 1 (the reference)")
                    continue
                arm = records.per_seed(table, setting, metric, ds)
                seeds = np.array([arm[s] - base[s] for s in sorted(arm.keys() & base.keys())]) * 100
                ax.scatter(np.full(len(seeds), x), seeds, color=plots.PALETTE[0], alpha=0.5, s=14, zorder=2,
                           label="one seed")
                r = found.loc[setting] if setting in found.index else None
                diff, low, high = ((float(r[c]) * 100 for c in ("diff", "low", "high")) if r is not None
                                   else (np.nanmean(seeds) if len(seeds) else np.nan, np.nan, np.nan))
                if math.isfinite(low) and math.isfinite(high):
                    ax.errorbar([x], [diff], yerr=[[diff - low], [high - diff]], fmt="o", color=plots.MEAN, capsize=4,
                                zorder=3, label="mean, Holm-corrected interval")
                else:
                    ax.scatter([x], [diff], marker="o", facecolor="white", edgecolor=plots.MEAN, s=40, zorder=3,
                               label="mean (no interval)")
                span = max(span, *(abs(v) for v in (diff, low, high, *seeds) if math.isfinite(v)))
            ax.axhline(0, color="black", lw=1)
            ax.set_ylim(-1.15 * span, 1.15 * span)
            xs = [x for x, _ in chosen]
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs, [str(x) for x in xs])
            ax.xaxis.set_minor_formatter("")
            ax.set_xlim(min(xs) / 1.5, max(xs) * 1.5)
            ax.set_xlabel(label)
            ax.set_ylabel(f"{ds}: {name} minus K = 1\n(percentage points)")
        if middle in found.index:
            r = found.loc[middle]
            said.append(f"{ds} {r['diff'] * 100:+.1f} points ({_where(r['low'], r['high'])})")
    handles = {}
    for ax in axes.flat:
        for h, l in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(l, h)
    fig.suptitle(f"The grid's centre {middle} minus one learner on {name}: " + "; ".join(said), fontsize=11)
    fig.legend(handles.values(), handles.keys(), loc="lower center", bbox_to_anchor=(0.5, 0), ncol=4, fontsize=8,
               frameon=False)
    return _saved(ch, fig, "map-vs-k",
                  f"Each grid setting minus one learner (K = 1) on held-out {name}, paired by seed, with its "
                  "Holm-corrected interval, against K and against M", rect=(0, 0.06, 1, 1))


def learning_curves(ch: Chapter, results: dict[str, dict[str, list]]) -> plt.Figure:
    """Held-out Recall@1 after each epoch, one learner against the grid's centre, per data set;
    the shaded epochs are the ones the centre trains as K separate learners."""
    middle, datasets = centre(ch), ch.settings.datasets
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), max(4, 5.5 * len(datasets) / 1.75)),
                             squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        divided = divide.divided_epochs(results[ds][middle][0].config)
        ax.axvspan(0, divided, color=plots.GREY, alpha=0.2, lw=0, label=f"{middle}: divided epochs")
        for i, name in enumerate([SINGLE, middle]):
            plots.seed_lines(ax, _histories(results[ds][name]), CURVE, label=name, scale=100, color=plots.PALETTE[i])
        last = max((max(line.get_xdata()) for line in ax.get_lines()), default=1)
        ax.set_xticks(range(int(last) + 1))
        ax.set_xlim(0, last + 0.2)
        ax.set_xlabel("epoch (first clustering at 0, on the untrained network)")
        ax.set_ylabel(f"{ds}: held-out Recall@1 (%)")
        ax.legend(fontsize=8, loc="best")
    return _saved(ch, fig, "learning-curves",
                  "Held-out Recall@1 per epoch, one learner vs the grid's centre (thin: seeds, bold: mean)")


def learners_map(ch: Chapter, results: dict[str, dict[str, list]]) -> plt.Figure:
    """t-SNE of a sample of training images in the centre's final embedding (first seed),
    coloured by the learner that had them at the last re-clustering."""
    middle, datasets, keep = centre(ch), ch.settings.datasets, ch.settings.tsne_points
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), max(5, 5.5 * len(datasets) / 1.75)),
                             squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        run = results[ds][middle][0]
        if isinstance(run, Diverged):
            ax.set_visible(False)
            continue

        def compute(run=run) -> dict:
            arrays = run.arrays
            if "train_sample_embeddings" not in arrays:
                return {}
            return {"z": plots.tsne_coordinates(arrays["train_sample_embeddings"][:keep]),
                    "learner": arrays["train_sample_learner"][:keep]}

        kept = derived.of_run(run, "learner-map", compute, params={"points": keep, "seed": 0}, modules=("plots",))
        if not kept:
            ax.set_visible(False)
            continue
        z, learner = kept["z"], kept["learner"]
        ax.scatter(*z[learner == divide.DROPPED].T, s=4, c="lightgrey", lw=0)
        for k in range(ch.settings.grid_at.clusters):
            ax.scatter(*z[learner == k].T, s=6, lw=0, color=plots.PALETTE[k % len(plots.PALETTE)], label=f"learner {k}")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{ds}, {middle}")
        ax.legend(fontsize=7, markerscale=2, loc="best")
    return _saved(ch, fig, "tsne-by-learner",
                  "t-SNE of training images in the final embedding, coloured by the learner that trained on them")


def clusters_and_cost(ch: Chapter, results: dict[str, dict[str, list]]) -> plt.Figure:
    """Left: the share of images each re-clustering leaves with their learner. Right: seconds of
    k-means (embedding the training set included) and of training per run, mean over seeds."""
    datasets = ch.settings.datasets
    fig, axes = plt.subplots(len(datasets), 2, figsize=(12, max(3.6 * len(datasets), 12 / 1.7)), squeeze=False)
    for (kept_ax, cost_ax), ds in zip(axes, datasets):
        costs = {}
        for i, (name, runs) in enumerate(results[ds].items()):
            histories = _histories(runs)
            if histories and "cluster_kept_fraction" in histories[0]:
                plots.seed_lines(kept_ax, [h.dropna(subset=["cluster_kept_fraction"]) for h in histories],
                                  "cluster_kept_fraction", label=name, scale=100, color=plots.PALETTE[i])
            costs[name] = {"clustering": np.mean([h.get("cluster_seconds", pd.Series([0.0])).sum() for h in histories]),
                           "training": np.mean([h["train_seconds"].sum() for h in histories])}
        kept_ax.set_ylim(0, 102)
        plots.epoch_axis(kept_ax, "epoch of re-clustering")
        kept_ax.set_ylabel(f"{ds}: images kept\nby their learner (%)")
        if kept_ax.get_legend_handles_labels()[0]:
            kept_ax.legend(fontsize=7, loc="best")
        pd.DataFrame(costs).T.plot.barh(stacked=True, ax=cost_ax, color=[plots.MEAN, plots.PALETTE[0]])
        cost_ax.legend(fontsize=8, loc="best")
        cost_ax.set_xlabel("seconds per run (mean over seeds)")
        cost_ax.set_ylabel("setting")
    return _saved(ch, fig, "clusters-and-cost",
                  "Share of images kept by their learner at each re-clustering; time in clustering vs training")


def budget_figure(ch: Chapter, results: dict[int, dict[str, list]], gap: pd.DataFrame) -> plt.Figure:
    """Left: held-out Recall@1 of every arm at each budget, seeds as dots. Right: each divided
    arm's gap to one learner with its Holm interval."""
    multiples = ch.settings.budgets
    arms = list(budget_arms(ch))
    fig, (ax, ax_gap) = plt.subplots(1, 2, figsize=(11, 6.3))
    for i, arm in enumerate(arms):
        values = [np.array([r.metrics[PRIMARY] for r in results[m][arm] if not isinstance(r, Diverged)]) * 100
                  for m in multiples]
        ax.plot(multiples, [v.mean() for v in values], marker="o", color=plots.PALETTE[i], label=arm)
        for m, v in zip(multiples, values):
            ax.scatter([m] * len(v), v, color=plots.PALETTE[i], alpha=0.35, s=12)
    epochs = gap["epochs"].to_numpy()[:len(multiples)]
    for a in (ax, ax_gap):
        a.set_xscale("log", base=2)
        a.set_xticks(multiples, [f"{m}x\n({e} epochs)" for m, e in zip(multiples, epochs)])
        a.set_xlabel("budget (the same for every arm)")
    ax.set_ylabel(f"{ch.settings.budget_dataset} held-out Recall@1 (%)")
    ax.legend(fontsize=8, loc="best")
    for i, arm in enumerate(arms[1:], start=1):
        rows = gap[gap["arm"] == arm]
        diff, low, high = (rows[c].to_numpy() * 100 for c in ("diff", "low", "high"))
        shifted = np.array(multiples) * 2 ** (0.06 * (i - 1))  # side by side, not on top of each other
        ax_gap.errorbar(shifted, diff, yerr=[diff - low, high - diff], fmt="o", capsize=4, color=plots.PALETTE[i],
                        label=arm)
    ax_gap.axhline(0, color="black", lw=1)
    span = np.nanmax(np.abs(gap[["diff", "low", "high"]].to_numpy(float)) * 100, initial=0)
    span = max(MIN_SPAN, span if math.isfinite(span) else 0)
    ax_gap.set_ylim(-1.15 * span, 1.15 * span)
    ax_gap.set_ylabel("Recall@1 minus K=1, paired by seed\n(percentage points, Holm-corrected interval)")
    ax_gap.legend(fontsize=8, loc="best")
    return _saved(ch, fig, "budgets", "Divide and conquer against one learner at 1x, 2x and 4x the budget: "
                                      "Recall@1 per arm and each gap with its Holm interval")


def budget_curves(ch: Chapter, results: dict[int, dict[str, list]]) -> plt.Figure:
    """Held-out Recall@1 and MAP@R after every epoch of every budget arm, one column per budget
    (thin: seeds, bold: mean): does the gap between the arms move while they train?"""
    multiples, arms = ch.settings.budgets, list(budget_arms(ch))
    metrics = {"val_recall@1": "Recall@1", "val_map@r": "MAP@R"}
    width = 4.2 * len(multiples)
    fig, axes = plt.subplots(len(metrics), len(multiples), figsize=(width, max(3.0 * len(metrics), width / 1.7)),
                             squeeze=False, sharey="row")
    for col, m in enumerate(multiples):
        for row, (column, label) in enumerate(metrics.items()):
            ax = axes[row, col]
            for i, arm in enumerate(arms):
                plots.seed_lines(ax, _histories(results[m][arm]), column, label=arm, scale=100,
                                 color=plots.PALETTE[i])
            if row == 0:
                ax.set_title(f"{m}x the budget", fontsize=10)
            plots.epoch_axis(ax)
            ax.set_ylabel(f"validation {label} (%)")
    axes[0, 0].legend(fontsize=7, loc="best")
    return _saved(ch, fig, "budget-curves", f"{ch.settings.budget_dataset}: held-out Recall@1 and MAP@R per epoch "
                                            "of one learner and the divided arms at each budget (thin: seeds, bold: mean)")
