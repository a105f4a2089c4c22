"""Figures shared by the chapters. Each function takes results and returns a matplotlib Figure.

House rules for every figure (tests/test_figures.py checks them): percentages rather than
fractions, the colour-blind-safe palette below, every axis labelled, legends placed by
loc="best" or outside the axes, and a width/height of at most 16:9 (`MAX_ASPECT`)."""
from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import LogFormatter, MaxNLocator

from lib.evaluate import MIN_EFFECTIVE_RANK

PALETTE = sns.color_palette("colorblind")  # Okabe-Ito-like: safe for the common colour-vision deficiencies
sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE)
MEAN = PALETTE[3]  # vermillion: means and their intervals, thresholds
GREY = PALETTE[7]
MAX_ASPECT = 16 / 9


def wrap(text: str, width: int = 28) -> str:
    """`text` broken into lines of at most `width` characters (labels are wrapped, never cut)."""
    return "\n".join(textwrap.wrap(str(text), width)) or str(text)


def legend_outside(ax, **kw):
    """The axes' legend to the right of it, clear of the data."""
    return ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", borderaxespad=0, **{"fontsize": 8, **kw})


NAMES = {"map@r": "MAP@R", "recall@1": "Recall@1", "precision@1": "Precision@1", "nmi": "NMI"}


def metric_name(metric: str) -> str:
    """How a figure writes a metric ("map@r" -> "MAP@R")."""
    return NAMES.get(metric, metric)


def log_axis(ax, axis: str = "y") -> None:
    """A log scale labelled in plain numbers (2, 3, 20, 30), not 2×10⁰."""
    getattr(ax, f"set_{axis}scale")("log")
    target = getattr(ax, f"{axis}axis")
    target.set_major_formatter(lambda v, _: f"{v:g}")
    target.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))


def epoch_axis(ax, label: str = "epoch") -> None:
    """Whole epochs on the x axis (never 1.5)."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(label)


def validation_words(cfg) -> str:
    """What a run's per-epoch validation scores (`lib.splits.Splits.val_each_epoch`), next to the
    final test: a smaller cut has fewer classes to confuse, so its scores run higher."""
    if cfg.data.val_fraction > 0:
        return f"per-epoch validation on {cfg.data.val_fraction:.0%} of the training classes, not the test split"
    if cfg.eval.max_val_images:
        return (f"per-epoch validation on a cut of at most {cfg.eval.max_val_images:,} held-out images; the tables "
                "score the whole test split, which, when larger, has more classes to confuse and scores lower")
    return "per-epoch validation on the whole test split"


def panel_grid(n: int, ncols: int = 3, figsize=(13, 7.2), **kw) -> tuple[plt.Figure, list]:
    """n axes in rows of `ncols`, the last row centred when it is short (no empty slot)."""
    nrows = -(-n // ncols)
    fig = plt.figure(figsize=figsize)
    grid = fig.add_gridspec(nrows, 2 * ncols, **kw)
    axes = []
    for i in range(n):
        row, col = divmod(i, ncols)
        in_row = min(ncols, n - row * ncols)
        start = 2 * col + (ncols - in_row)  # centre a short last row
        axes.append(fig.add_subplot(grid[row, start:start + 2]))
    return fig, axes


def seed_lines(ax, histories: list[pd.DataFrame], column: str, label: str | None = None, scale: float = 1.0,
               **style):
    """One thin line per seed and their mean in bold, so the spread is visible (values times
    `scale`: 100 for a fraction shown in %). An axes on which nothing is drawn is hidden."""
    curves = [h.set_index("epoch")[column].astype(float) * scale for h in histories if column in h]
    curves = [c for c in curves if c.notna().any()]
    if not curves:
        if not ax.lines:
            ax.set_visible(False)
        return
    ax.set_visible(True)
    for c in curves:
        ax.plot(c.index, c.values, alpha=0.3, lw=1, **style)
    mean = pd.concat(curves, axis=1).mean(axis=1)
    ax.plot(mean.index, mean.values, lw=2, label=label, **style)


def _constant(histories: list[pd.DataFrame], column: str) -> float | None:
    """The one value `column` takes in every epoch of every history, or None."""
    values = pd.concat([h[column] for h in histories if column in h], ignore_index=True) if histories else []
    values = pd.Series(values, dtype=float).dropna()
    return float(values.iloc[0]) if len(values) and np.allclose(values, values.iloc[0]) else None


def diagnostics(histories: list[pd.DataFrame], title: str = "", validation: str = "") -> plt.Figure:
    """The trainer's per-epoch diagnostics (see lib.train), over seeds: one panel per quantity that
    moves; one that never moves (every tuple with a non-zero loss, say) is stated in the title.
    `validation` says what the per-epoch validation scores (`validation_words`)."""
    panels = [
        (("loss_over_margin",), "training loss / margin", "loss / margin", None, 1.0),
        (("nonzero_fraction",), "tuples with a non-zero loss", "share of mined tuples (%)", None, 100.0),
        (("d_ap_mean", "d_an_mean"), "distance of the mined pairs", "mean distance", ("d(a,p)", "d(a,n)"), 1.0),
        (("grad_norm",), "gradient norm", "gradient norm", None, 1.0),
        (("val_recall@1", "val_map@r"), "validation retrieval", "score (%)", ("Recall@1", "MAP@R"), 100.0),
        (("val_effective_rank", "val_loss_space_effective_rank"), "held-out effective rank",
         "effective rank (log scale)", ("evaluated", "space the loss sees"), 1.0),
    ]
    notes = []
    shown = []
    for cols, name, ylabel, labels, scale in panels:
        present = [c for c in cols if any(c in h and h[c].notna().any() for h in histories)]
        if not present:
            continue
        if len(present) == 1 and (value := _constant(histories, present[0])) is not None:
            notes.append(f"{name}: {value * scale:.0f}{' %' if scale == 100 else ''} at every epoch")
            continue
        shown.append((cols, name, ylabel, labels, scale))
    width = 12.5 if len(shown) > 3 else 4.2 * max(len(shown), 1)
    fig, axes = panel_grid(len(shown), ncols=3 if len(shown) > 3 else max(len(shown), 1),
                           figsize=(width, 7.8 if len(shown) > 3 else max(4.0, width / 1.6)))
    for ax, (cols, name, ylabel, labels, scale) in zip(axes, shown):
        for i, col in enumerate(cols):
            seed_lines(ax, histories, col, label=labels[i] if labels else None, scale=scale, color=PALETTE[i])
        if name == "validation retrieval" and validation:
            name = f"{name}\n({wrap(validation, 46)})"
        if name == "held-out effective rank":
            ax.axhline(MIN_EFFECTIVE_RANK, color=MEAN, ls=":", lw=1, label="collapse threshold")
            log_axis(ax)
        if len([h for h in ax.get_legend_handles_labels()[1]]) > 1:
            ax.legend(fontsize=8, loc="best")
        ax.set_title(name, fontsize=10)
        ax.set_ylabel(ylabel)
        epoch_axis(ax)
    fig.suptitle(title + (f" — {'; '.join(notes)}" if notes else ""))
    fig.tight_layout()
    return fig


def _shares(row: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The recorded d(a,n) histogram of one epoch as (edges, % of the selected negatives per bin)."""
    edges, counts = np.asarray(row.d_an_hist_edges, dtype=float), np.asarray(row.d_an_hist, dtype=float)
    return edges, 100 * counts / max(counts.sum(), 1)


def negative_distance_histograms(history: pd.DataFrame, epochs: list[int] | None = None, ax=None,
                                 margin: float | None = None, legend: bool = True) -> plt.Figure:
    """The share of the miner's selected pairs in each d(a,n) bin, at several epochs, with each
    epoch's mean d(a,p) (dotted) and, at the last epoch, the band d(a,p) to d(a,p) + margin where
    semi-hard negatives lie (left of it: hard; right of it: easy)."""
    fig = ax.figure if ax is not None else plt.figure(figsize=(7, 4))
    ax = ax or fig.add_subplot()
    epochs = epochs or sorted({int(history.epoch.min()), int(history.epoch.median()), int(history.epoch.max())})
    for i, epoch in enumerate(epochs):
        row = history[history.epoch == epoch].iloc[0]
        edges, shares = _shares(row)
        ax.stairs(shares, edges, label=f"epoch {epoch}", color=PALETTE[i], lw=1.5)
        if "d_ap_mean" in row and np.isfinite(row.d_ap_mean):
            ax.axvline(row.d_ap_mean, color=PALETTE[i], ls=":", lw=1.2)
    last = history[history.epoch == epochs[-1]].iloc[0]
    if margin and "d_ap_mean" in last and np.isfinite(last.d_ap_mean):
        ax.axvspan(last.d_ap_mean, last.d_ap_mean + margin, color=GREY, alpha=0.2, lw=0,
                   label=f"d(a,p) to d(a,p)+α, epoch {epochs[-1]}")
    ax.plot([], [], color="black", ls=":", lw=1.2, label="mean d(a,p) (dotted)")
    ax.set_ylim(0, None)
    ax.set_xlabel("d(a,n)")
    width = float(np.diff(np.asarray(last.d_an_hist_edges, dtype=float)).mean())
    ax.set_ylabel(f"% of selected negatives per {width:.2g} bin")
    if legend:
        ax.legend(fontsize=8, loc="best")
    return fig


def tsne_map(embeddings: np.ndarray, labels: np.ndarray, *, max_points: int = 800, seed: int = 0) -> dict:
    """openTSNE map of (up to `max_points` of) held-out embeddings: {"z": (n, 2), "labels": (n,)}."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(embeddings), size=min(max_points, len(embeddings)), replace=False)
    x, y = np.asarray(embeddings[idx], dtype=np.float64), labels[idx]
    # A collapsed embedding has (nearly) identical points; a whisker of noise keeps t-SNE defined.
    return {"z": tsne_coordinates(x + rng.normal(scale=1e-6, size=x.shape), seed), "labels": y}


def draw_map(ax, z: np.ndarray, y: np.ndarray, *, top_classes: int = 12, title: str = "") -> None:
    """A 2-d map (`tsne_map`): the most frequent classes in colour, the rest grey."""
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
    """openTSNE's 2-d map of the rows of x (perplexity 30, or a third of the points when fewer).
    Callers keep it by run (lib.derived), so a re-render does not recompute it."""
    from openTSNE import TSNE

    x = np.asarray(x, dtype=np.float64)
    return np.asarray(TSNE(perplexity=min(30, (len(x) - 1) / 3), random_state=seed, n_jobs=1).fit(x))


def seed_dots(results: dict[str, list], metric: str, ax, scale: float = 100.0, order: list[str] | None = None) -> None:
    """One row per setting: every seed as a dot, the mean ± sd as a larger dot with a bar (a single
    seed is not a finding)."""
    names = order or list(results)
    for y, name in enumerate(names):
        values = np.array([r.metrics.get(metric, np.nan) for r in results[name]], dtype=float) * scale
        ax.scatter(values, [y] * len(values), color=PALETTE[0], alpha=0.5, s=18)
        finite = values[np.isfinite(values)]
        if len(finite):
            ax.errorbar(finite.mean(), y, xerr=finite.std(ddof=1) if len(finite) > 1 else 0, fmt="o", color=MEAN)
    ax.set_yticks(range(len(names)), [wrap(n, 34) for n in names])
    ax.set_xlabel(f"{metric_name(metric)} (%; small dots: seeds, large: mean ± sd)")


def selected_negative_distances(histories: dict[str, pd.DataFrame], epochs: list[int], axes,
                                margin: float | None = None) -> None:
    """d(a,n) of the negatives each strategy selected, one panel per strategy, a line per epoch,
    with the mean d(a,p) and the semi-hard band (`negative_distance_histograms`); no legends (the
    caller places one for the row)."""
    for ax, (name, history) in zip(axes, histories.items()):
        present = [e for e in epochs if e in set(history.epoch)] if len(history) else []
        if not present:
            ax.set_visible(False)
            continue
        negative_distance_histograms(history, present, ax=ax, margin=margin, legend=False)
        ax.set_title(wrap(name, 24), fontsize=9)


def paired_differences(ax, rows: pd.DataFrame, per_seed: dict[str, np.ndarray] | None = None, *,
                       scale: float = 100.0, colours: dict | None = None, marks: dict | None = None) -> None:
    """One row per comparison, top to bottom in the order of `rows` (index: labels; columns diff,
    low, high, as fractions): each seed's paired difference as a small dot, the mean difference
    with its interval as a large dot and bar, and a line at zero (no difference). `marks`:
    {label: value} drawn as a diamond beside the row (a smallest effect of interest, say)."""
    ys = np.arange(len(rows))
    for y, (name, r) in zip(ys, rows.iterrows()):
        colour = (colours or {}).get(name, MEAN)
        if per_seed and len(per_seed.get(name, [])):
            values = np.asarray(per_seed[name], dtype=float) * scale
            ax.scatter(values, np.full(len(values), y), color=PALETTE[0], alpha=0.5, s=16, zorder=2)
        diff, low, high = (float(r[c]) * scale for c in ("diff", "low", "high"))
        if np.isfinite(low) and np.isfinite(high):
            ax.errorbar(diff, y, xerr=[[max(diff - low, 0)], [max(high - diff, 0)]], fmt="o", color=colour,
                        capsize=3, zorder=3)
        elif np.isfinite(diff):
            ax.scatter(diff, y, marker="o", facecolor="white", edgecolor=colour, s=40, zorder=3)
        if marks and name in marks and np.isfinite(marks[name]):
            ax.scatter(marks[name] * scale, y, marker="D", color="black", s=22, zorder=4)
    ax.axvline(0, color="black", lw=1)
    ax.set_yticks(ys, list(rows.index))
    ax.set_ylim(len(rows) - 0.5, -0.5)


def retrievals(query_images: list[np.ndarray], ranked_images: list[list[np.ndarray]],
               correct: list[list[bool]], titles: list[str] | None = None) -> plt.Figure:
    """One row per query: the query photo, then its top retrievals framed green (same
    individual) or vermillion (another). Images are uint8 (C, H, W)."""
    rows, cols = len(query_images), 1 + max((len(r) for r in ranked_images), default=0)
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, max(2.3 * rows, 1.3 * cols / 1.6)), squeeze=False)
    for i, (query, ranked, hits) in enumerate(zip(query_images, ranked_images, correct)):
        axes[i, 0].imshow(np.moveaxis(query[:3], 0, -1))
        axes[i, 0].set_title(titles[i] if titles else "query", fontsize=8)
        for j, (image, hit) in enumerate(zip(ranked, hits), start=1):
            axes[i, j].imshow(np.moveaxis(image[:3], 0, -1))
            for spine in axes[i, j].spines.values():
                spine.set_edgecolor(PALETTE[2] if hit else PALETTE[3])
                spine.set_linewidth(3)
            axes[i, j].set_title(f"#{j}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([]); ax.set_yticks([])
        if not ax.images:
            ax.set_visible(False)
    return fig
