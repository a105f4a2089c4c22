"""Figures shared by the chapters. Each function takes results and returns a matplotlib Figure."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from lib import cache
from lib.evaluate import MIN_EFFECTIVE_RANK

sns.set_theme(context="notebook", style="whitegrid")


def seed_lines(ax, histories: list[pd.DataFrame], column: str, label: str | None = None, **style):
    """One thin line per seed and their mean in bold, so the spread is visible."""
    curves = [h.set_index("epoch")[column] for h in histories if column in h]
    if not curves:
        ax.set_visible(False)
        return
    for c in curves:
        ax.plot(c.index, c.values, alpha=0.3, lw=1, **style)
    mean = pd.concat(curves, axis=1).mean(axis=1)
    ax.plot(mean.index, mean.values, lw=2, label=label, **style)


def diagnostics(histories: list[pd.DataFrame], title: str = "") -> plt.Figure:
    """The trainer's per-epoch diagnostics (see lib.train), over seeds."""
    panels = [
        ("loss_over_margin", "training loss / margin", None),
        ("nonzero_fraction", "fraction of non-zero-loss tuples", None),
        (("d_ap_mean", "d_an_mean"), "distance of mined pairs", ("d(a,p)", "d(a,n)")),
        ("grad_norm", "gradient norm", None),
        (("val_recall@1", "val_map@r"), "validation retrieval", ("Recall@1", "MAP@R")),
        (("val_effective_rank", "val_loss_space_effective_rank"), "held-out effective rank",
         ("evaluated", "loss space")),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5))
    for ax, (cols, name, labels) in zip(axes.flat, panels):
        cols = cols if isinstance(cols, tuple) else (cols,)
        for i, col in enumerate(cols):
            seed_lines(ax, histories, col, label=labels[i] if labels else None, color=f"C{i}")
        if labels:
            ax.legend(fontsize=8)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch")
    if "val_effective_rank" in histories[0]:
        axes.flat[5].axhline(MIN_EFFECTIVE_RANK, color="red", ls=":", lw=1, label="collapse threshold")
        axes.flat[5].set_yscale("log")
        axes.flat[5].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def negative_distance_histograms(history: pd.DataFrame, epochs: list[int] | None = None, ax=None) -> plt.Figure:
    """Histogram of d(a,n) over the pairs the miner selected, at several epochs."""
    fig = ax.figure if ax is not None else plt.figure(figsize=(6, 3.5))
    ax = ax or fig.add_subplot()
    epochs = epochs or sorted({int(history.epoch.min()), int(history.epoch.median()), int(history.epoch.max())})
    for i, epoch in enumerate(epochs):
        row = history[history.epoch == epoch].iloc[0]
        edges, counts = np.asarray(row.d_an_hist_edges), np.asarray(row.d_an_hist, dtype=float)
        density = counts / max(counts.sum(), 1) / np.diff(edges)
        ax.stairs(density, edges, label=f"epoch {epoch}", color=f"C{i}", lw=1.5)
    ax.set_xlabel("d(anchor, negative)")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    return fig


def tsne(embeddings: np.ndarray, labels: np.ndarray, ax, *, max_points: int = 800, top_classes: int = 12,
         seed: int = 0, title: str = "") -> None:
    """openTSNE map of held-out embeddings; the most frequent classes in colour, the rest grey."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(embeddings), size=min(max_points, len(embeddings)), replace=False)
    x, y = np.asarray(embeddings[idx], dtype=np.float64), labels[idx]
    # A collapsed embedding has (nearly) identical points; a whisker of noise keeps t-SNE defined.
    z = tsne_coordinates(x + rng.normal(scale=1e-6, size=x.shape), seed)
    classes, counts = np.unique(y, return_counts=True)
    shown = classes[np.argsort(-counts)[:top_classes]]
    rest = ~np.isin(y, shown)
    ax.scatter(z[rest, 0], z[rest, 1], s=4, c="lightgrey", lw=0)
    for i, c in enumerate(shown):
        m = y == c
        ax.scatter(z[m, 0], z[m, 1], s=9, color=sns.color_palette("tab20", top_classes)[i], lw=0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)


def tsne_coordinates(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """openTSNE's 2-d map of the rows of x (perplexity 30, or a third of the points when fewer),
    computed once per input and kept in the run cache (lib.cache.memoized)."""
    from importlib.metadata import version

    x = np.asarray(x, dtype=np.float64)

    def compute():
        from openTSNE import TSNE
        return {"z": np.asarray(TSNE(perplexity=min(30, (len(x) - 1) / 3), random_state=seed, n_jobs=1).fit(x))}

    return cache.memoized("tsne", compute, inputs={"seed": seed, "openTSNE": version("openTSNE")},
                          arrays=(x,))["z"]


def seed_dots(results: dict[str, list], metric: str, ax, scale: float = 100.0, order: list[str] | None = None) -> None:
    """One row per setting: every seed as a dot, the mean ± sd in red (a single seed is not a finding)."""
    names = order or list(results)
    for y, name in enumerate(names):
        values = np.array([r.metrics.get(metric, np.nan) for r in results[name]], dtype=float) * scale
        ax.scatter(values, [y] * len(values), color="C0", alpha=0.5, s=18)
        finite = values[np.isfinite(values)]
        if len(finite):
            ax.errorbar(finite.mean(), y, xerr=finite.std(ddof=1) if len(finite) > 1 else 0, fmt="o", color="C3")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel(f"{metric} (%; dots: seeds, red: mean ± sd)")


def selected_negative_distances(histories: dict[str, pd.DataFrame], epochs: list[int], axes) -> None:
    """d(a,n) of the negatives each strategy selected, one panel per strategy, a line per epoch."""
    for ax, (name, history) in zip(axes, histories.items()):
        present = [e for e in epochs if e in set(history.epoch)] if len(history) else []
        if not present:
            ax.set_visible(False)
            continue
        negative_distance_histograms(history, present, ax=ax)
        ax.set_title(name, fontsize=9)


def retrievals(query_images: list[np.ndarray], ranked_images: list[list[np.ndarray]],
               correct: list[list[bool]], titles: list[str] | None = None) -> plt.Figure:
    """One row per query: the query photo, then its top retrievals framed green (same
    individual) or red. Images are uint8 (C, H, W)."""
    rows, cols = len(query_images), 1 + max((len(r) for r in ranked_images), default=0)
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 2.3 * rows), squeeze=False)
    for i, (query, ranked, hits) in enumerate(zip(query_images, ranked_images, correct)):
        axes[i, 0].imshow(np.moveaxis(query[:3], 0, -1))
        axes[i, 0].set_title(titles[i] if titles else "query", fontsize=8)
        for j, (image, hit) in enumerate(zip(ranked, hits), start=1):
            axes[i, j].imshow(np.moveaxis(image[:3], 0, -1))
            for spine in axes[i, j].spines.values():
                spine.set_edgecolor("tab:green" if hit else "tab:red")
                spine.set_linewidth(3)
            axes[i, j].set_title(f"#{j}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([]); ax.set_yticks([])
        if not ax.images:
            ax.set_visible(False)
    return fig
