"""Chapter 3's figures: the sphere's distance density, every seed's score, β and the uniform fallback,
and the pretrained regime, drawn from the runs `lib.chapters.distance_weighted` trains."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from lib import geometry, plots
from lib.arms import WU
from lib.chapters.distance_weighted import (CHECK_METRIC, CLAIM_METRIC, FALLBACK, PML, _paired_arms, pretrained_pairs,
                                            trained_distances)
from lib.study import Chapter, Diverged


def sphere_density_figure(ch: Chapter, results: dict) -> plt.Figure:
    """q(d) against sampled distances for each of the chapter's dimensions, and the held-out
    embeddings of the first seed's Wu model on Omniglot in the panel of their own dimension."""
    dims = ch.settings.sphere_dims
    ncols = 2 if len(dims) > 2 else len(dims)
    fig, axes = plots.panel_grid(len(dims), ncols=ncols, figsize=(5 * ncols, 3.4 * -(-len(dims) // ncols) + 0.4))
    grid = np.linspace(0.001, 1.999, 400)
    wu_runs = [r for r in results.get("omniglot", {}).get(WU, []) if not isinstance(r, Diverged)]
    trained = trained_distances(wu_runs[0]) if wu_runs else None
    for ax, n in zip(axes, dims):
        ax.hist(geometry.random_sphere_distances(n, points=1500), bins=60, density=True, color="lightgrey",
                label="random unit vectors")
        ax.plot(grid, geometry.sphere_distance_density(grid, n), color="C0", label="q(d), analytic")
        if trained is not None and int(trained["dimension"]) == n:
            ax.stairs(trained["density"], trained["edges"], color=plots.MEAN, lw=1.5, label="trained (Wu, Omniglot)")
        ax.set_title(f"n = {n}")
        ax.set_xlabel("distance d")
        ax.set_ylabel("density")
    axes[-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def seed_dots_figure(ch: Chapter, results: dict) -> plt.Figure:
    """Every seed of every method, Recall@1 (the claim's metric) and MAP@R, one row per data set."""
    datasets, methods = ch.settings.datasets, list(ch.settings.methods)
    fig, axes = plt.subplots(len(datasets), 2, figsize=(13, max(len(datasets) * (0.5 * len(methods) + 1.5), 13 / 1.75)),
                             squeeze=False, sharey="row")
    for row, ds in zip(axes, datasets):
        for ax, metric in zip(row, (CLAIM_METRIC, CHECK_METRIC)):
            plots.seed_dots(results[ds], metric, ax, order=methods)
            ax.set_title(f"{ds}: {plots.metric_name(metric)}")
    for ax in axes[:, 0]:  # the right panel shares its rows
        ax.set_ylabel("method")
    fig.tight_layout()
    return fig


def _fallback_fired(results: dict, ds: str, methods: list[str]) -> bool:
    """Whether any distance-weighted run on `ds` recorded an anchor with all-zero weights."""
    values = [r.history[FALLBACK].to_numpy(float) for m in methods for r in results[ds].get(m, [])
              if len(r.history) and FALLBACK in r.history]
    return any(np.nan_to_num(v).max(initial=0) > 0 for v in values)


def beta_and_fallback_figure(ch: Chapter, results: dict) -> plt.Figure:
    """Per data set, the learned boundary β of every margin-loss method over epochs; and, only
    where the distance-weighted miners found an anchor with all-zero weights, the share of such
    anchors (%). Where that share is zero at every step the panel would be a flat line at 0, so the
    title says so instead. A method keeps its colour in every panel."""
    datasets, methods = ch.settings.datasets, list(ch.settings.methods)
    margin_methods = [m for m in methods if "margin" in m]
    weighted = [m for m in methods if "distance-weighted" in m]
    fired = {ds: _fallback_fired(results, ds, weighted) for ds in datasets}
    panels = [(ds, "beta", "learned β", "β (distance)", margin_methods, 1.0) for ds in datasets]
    panels += [(ds, FALLBACK, "anchors with all-zero weights", "share of anchors (%)", weighted, 100.0)
               for ds in datasets if fired[ds]]
    ncols = 2 if len(panels) > 1 else 1
    rows = -(-len(panels) // ncols)
    width = 5.2 * ncols
    fig, axes = plots.panel_grid(len(panels), ncols=ncols, figsize=(width, max(3.6 * rows + 1.6, width / 1.7)))
    for ax, (ds, column, title, ylabel, shown, scale) in zip(axes, panels):
        for name in shown:
            histories = [r.history for r in results[ds].get(name, []) if len(r.history)]
            # pml dashed over Wu: where the fallback never fires the two lines coincide
            plots.seed_lines(ax, histories, column, label=name, scale=scale, color=plots.PALETTE[methods.index(name)],
                             ls="--" if name == PML else "-")
        ax.set_title(f"{ds}: {title}", fontsize=10)
        ax.set_ylabel(ylabel)
        plots.epoch_axis(ax)
    never = [ds for ds in datasets if not fired[ds]]
    title = "Learned margin-loss boundary β over training"
    if never:
        title += (f"\nNo anchor ever had all-zero weights on {' or '.join(never)}: Wu's fallback never fired, so "
                  "pml's runs (dashed) trace Wu's")
    fig.suptitle(title, fontsize=11)
    handles, labels = [], []
    for ax in axes:
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in labels:
                handles, labels = handles + [h], labels + [l]
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0), ncol=2, fontsize=8, frameon=False)
    return fig


def pretrained_figure(ch: Chapter, results: dict, pretrained: dict) -> plt.Figure:
    """Held-out MAP@R per epoch of every pretrained arm (`run_pretrained`) and its scratch
    counterpart (`run_methods`), seeds as thin lines."""
    P = ch.settings.pretrained
    arms = _paired_arms(pretrained_pairs(ch))
    every = {**results.get(P.dataset, {}), **pretrained}
    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    for i, arm in enumerate(arms):
        plots.seed_lines(ax, [r.history for r in every.get(arm, []) if len(r.history)], "val_map@r", label=arm,
                         scale=100, color=plots.PALETTE[i])
    plots.epoch_axis(ax)
    ax.set_ylabel("held-out MAP@R (%)")
    ax.set_title(P.dataset)
    ax.legend(fontsize=7, loc="best")
    return fig
