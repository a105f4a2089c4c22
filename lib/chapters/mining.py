"""Chapter 2 (which negatives?): the mining strategies' runs, their figures, and the verdict.

Every strategy is a setting of the chapter's per-seed table (`Chapter.results`), on each data
set; the margin sweep's arms are settings too, named "<strategy>, α=<margin>". The verdict compares
strategies paired by seed, one Holm family per data set (`lib.compare`), and reports contraction
(the spread-ratio flag) and collapse (the scale-free test) separately.

    results = mining.run_strategies(ch)
    display(Markdown(mining.verdict(ch, mining.comparisons(ch))))
"""
from __future__ import annotations

import copy

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lib import compare, plots, records
from lib.arms import BATCH_HARD, HARD, SEMI_HARD
from lib.config import RunConfig
from lib.evaluate import CHANCE_FACTOR, MIN_EFFECTIVE_RANK
from lib.study import Chapter, fmt

# Strategy names as params/quick.yaml spells them (lib.arms; the claims ledger reads the same names).
BASELINE = SEMI_HARD
METRICS = {"omniglot": ["recall@1", "map@r", "oneshot_accuracy"], "beluga": ["map@r", "precision@1"]}
GEOMETRY = ["effective_rank", "precision@1", "chance_precision@1", "spread_ratio"]
DIAGNOSTICS = ["train_loss_over_margin", "train_nonzero_fraction"]
VERDICT_METRIC = "map@r"


def strategy(ch: Chapter, dataset: str, name: str, margin: float | None = None) -> RunConfig:
    """The run of one mining strategy: the same loss and margin for all of them (a margin miner
    selects with the loss's margin, so the two move together)."""
    margin = ch.settings.margin if margin is None else margin
    layer = copy.deepcopy(ch.settings.strategies[name])
    if layer["miner"].get("name") == "TripletMarginMiner":
        layer["miner"]["kwargs"]["margin"] = margin
    return ch.config(dataset, {"loss": {"name": "TripletMarginLoss", "kwargs": {"margin": margin}}}, layer)


def plan(ch: Chapter):
    """The chapter's runs (lib.runs.plan): every strategy on every data set, and the margin sweep."""
    yield [run for ds in ch.settings.datasets for run in ch.planned(strategy_arms(ch, ds))] + \
        ch.planned(margin_sweep_arms(ch))


def strategy_arms(ch: Chapter, dataset: str) -> dict[str, RunConfig]:
    return {name: strategy(ch, dataset, name) for name in ch.settings.strategies}


def run_strategies(ch: Chapter) -> dict[str, dict[str, list]]:
    """{dataset: {strategy: runs over seeds}}, every run recorded in the chapter's table."""
    return {ds: ch.results(strategy_arms(ch, ds)) for ds in ch.settings.datasets}


def margin_setting(name: str, margin: float) -> str:
    return f"{name}, α={margin}"


def margin_sweep_arms(ch: Chapter) -> dict[str, RunConfig]:
    sweep = ch.settings.margin_sweep
    return {margin_setting(name, m): strategy(ch, sweep.dataset, name, m)
            for name in sweep.strategies for m in sweep.margins}


def run_margin_sweep(ch: Chapter) -> dict[str, list]:
    """{"<strategy>, α=<margin>": runs} on the sweep's data set, recorded like the strategies."""
    return ch.results(margin_sweep_arms(ch))


def strategy_summary(ch: Chapter) -> pd.DataFrame:
    """Mean and sd over seeds of every strategy on every data set, with flag counts."""
    frame = ch.table()
    metrics = list(dict.fromkeys([*sorted({m for ms in METRICS.values() for m in ms}), *GEOMETRY, *DIAGNOSTICS]))
    return records.summary(frame[frame.setting.isin(ch.settings.strategies)], metrics)


def margin_summary(ch: Chapter) -> pd.DataFrame:
    sweep = ch.settings.margin_sweep
    names = [margin_setting(n, m) for n in sweep.strategies for m in sweep.margins]
    frame = ch.table()
    return records.summary(frame[frame.setting.isin(names) & (frame.dataset == sweep.dataset)],
                           ["map@r", "train_loss_over_margin", "spread_ratio", "effective_rank"])


def selected_negatives_figure(ch: Chapter, results: dict[str, dict[str, list]]) -> plt.Figure:
    """d(a,n) of the negatives each strategy handed to the loss, first seed, at the first, middle
    and last epoch, as the share of them in each distance bin (so a miner that puts them all in one
    bin reads 100 %), with each epoch's mean d(a,p) and the semi-hard band d(a,p) to d(a,p) + α:
    one row per data set, one panel per strategy, one legend per row."""
    datasets, strategies = ch.settings.datasets, ch.settings.strategies
    fig, axes = plt.subplots(len(datasets), len(strategies), figsize=(2.5 * len(strategies), 4.2 * len(datasets)),
                             squeeze=False, sharex=True)
    for row, ds in zip(axes, datasets):
        histories = {name: runs[0].history for name, runs in results[ds].items()}
        last = max((int(h.epoch.max()) for h in histories.values() if len(h)), default=1)
        plots.selected_negative_distances(histories, sorted({1, (last + 1) // 2, last}), row, margin=ch.settings.margin)
        for ax in row:
            ax.set_ylabel("% per bin")
        row[0].set_ylabel(f"{ds}\n% of selected negatives per bin")
        shown = [ax for ax in row if ax.get_visible()]
        if shown:
            plots.legend_outside(shown[-1], fontsize=8, title=ds, title_fontsize=8)
    fig.suptitle(f"Where each miner's negatives lie (first seed); left of the grey band: hard, "
                 f"in it: semi-hard (α = {ch.settings.margin:g}), right of it: easy", fontsize=11)
    fig.tight_layout()
    return fig


def _validation_note(ch: Chapter) -> str:
    """What the per-epoch curves are scored on, per data set (`plots.validation_words`)."""
    words = {ds: plots.validation_words(ch.config(ds)) for ds in ch.settings.datasets}
    if len(set(words.values())) == 1:
        return next(iter(words.values()))
    return "; ".join(f"{ds}: {w}" for ds, w in words.items())


def curves_figure(ch: Chapter, results: dict[str, dict[str, list]]) -> plt.Figure:
    """Loss/margin, held-out MAP@R, spread ratio (with the contraction threshold) and effective
    rank (with the collapse threshold) per epoch: thin lines seeds, bold their mean; one legend,
    below the panels."""
    panels = [("loss_over_margin", "training loss / margin", "loss / margin", 1.0),
              ("val_map@r", "validation MAP@R", "MAP@R (%)", 100.0),
              ("val_spread_ratio", "held-out spread ratio", "spread ratio", 1.0),
              ("val_effective_rank", "held-out effective rank", "effective rank (log scale)", 1.0)]
    datasets = ch.settings.datasets
    fig, axes = plt.subplots(len(datasets), len(panels), figsize=(14, 3.6 * len(datasets) + 1.4), squeeze=False)
    for row, ds in zip(axes, datasets):
        for ax, (column, title, ylabel, scale) in zip(row, panels):
            for i, (name, runs) in enumerate(results[ds].items()):
                plots.seed_lines(ax, [r.history for r in runs if len(r.history)], column, label=name, scale=scale,
                                 color=plots.PALETTE[i])
            ax.set_title(f"{ds}: {title}", fontsize=10)
            ax.set_ylabel(ylabel)
            plots.epoch_axis(ax)
        # thresholds in black, told apart by their dashes: every palette colour is a strategy's
        row[2].axhline(ch.config(ds).eval.contraction_threshold, color="black", ls="--", lw=1,
                       label="contraction threshold")
        row[3].axhline(MIN_EFFECTIVE_RANK, color="black", ls=":", lw=1.2, label="collapse threshold")
        plots.log_axis(row[3])
    handles, labels = axes[0, 0].get_legend_handles_labels()
    for ax in (axes[0, 2], axes[0, 3]):
        h, l = ax.get_legend_handles_labels()
        handles, labels = handles + h[-1:], labels + l[-1:]
    fig.suptitle(plots.wrap(f"Validation MAP@R: {_validation_note(ch)}", 130), fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0), ncol=4, fontsize=8, frameon=False)
    return fig


def map_figure(ch: Chapter, results: dict[str, dict[str, list]]) -> plt.Figure:
    datasets = ch.settings.datasets
    width = 5.5 * len(datasets) + 2
    fig, axes = plt.subplots(1, len(datasets), figsize=(width, max(0.5 * len(ch.settings.strategies) + 1.5,
                                                                   width / 1.75)), squeeze=False, sharey=True)
    for ax, ds in zip(axes[0], datasets):
        plots.seed_dots(results[ds], "map@r", ax, order=list(ch.settings.strategies))
        ax.set_title(ds)
    axes[0, 0].set_ylabel("mining strategy")
    fig.tight_layout()
    return fig


def margin_figure(ch: Chapter) -> plt.Figure:
    """Held-out MAP@R against the margin, each sweep strategy: seeds as dots, mean ± sd as bars."""
    sweep = ch.settings.margin_sweep
    frame = ch.table()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, name in enumerate(sweep.strategies):
        values = [frame.loc[(frame.dataset == sweep.dataset) & (frame.setting == margin_setting(name, m)),
                            "map@r"].to_numpy(dtype=float) * 100 for m in sweep.margins]
        ax.errorbar(sweep.margins, [np.nanmean(v) for v in values],
                    yerr=[np.nanstd(v, ddof=1) if len(v) > 1 else 0 for v in values],
                    marker="o", capsize=3, label=f"{name} (mean ± sd)", color=plots.PALETTE[i])
        for m, v in zip(sweep.margins, values):
            ax.scatter([m] * len(v), v, color=plots.PALETTE[i], alpha=0.35, s=12)
    ax.set_xscale("log")
    ax.set_xticks(sweep.margins, [f"{m:g}" for m in sweep.margins])
    ax.xaxis.set_minor_formatter("")
    ax.set_xlabel("margin α (log scale)")
    ax.set_ylabel(f"MAP@R on {sweep.dataset} (%)")
    ax.legend(loc="best", fontsize=8)
    return fig


def comparison_pairs(strategies: list[str]) -> dict[str, tuple[str, str]]:
    """Every strategy against semi-hard. FaceNet's claim is that semi-hard beats hard, so that
    difference is written semi-hard first; the others are written strategy first."""
    pairs = {f"{BASELINE} − {HARD}": (BASELINE, HARD)} if HARD in strategies else {}
    pairs.update({f"{s} − {BASELINE}": (s, BASELINE) for s in strategies if s not in (BASELINE, HARD)})
    return pairs


def comparisons(ch: Chapter, metric: str = VERDICT_METRIC) -> pd.DataFrame:
    """One Holm family per data set: the strategies' paired-by-seed differences to semi-hard."""
    pairs = comparison_pairs(list(ch.settings.strategies))
    return pd.concat({ds: compare.compare(ch.table(), pairs, metric, dataset=ds) for ds in ch.settings.datasets},
                     names=["dataset"])


def judged(row: pd.Series, name: str, a: str, b: str) -> str:
    """'<a> − <b>: Δ +3.4 points (interval at its level; seeds) lies above zero' (`lib.compare.said`,
    the one voice); when the interval includes zero, the effect these seeds would detect at that level."""
    return f"{name}: {compare.said(row)}"


def ledger_line(ch: Chapter, dataset: str, a: str, b: str, metric: str = VERDICT_METRIC) -> str | None:
    """The claims ledger's verdict sentence on a - b, word for word (`lib.ledger.chapter_sentence`);
    None when the ledger does not judge that comparison."""
    from lib import ledger
    said = ledger.chapter_sentence(ch, dataset, a, b, metric)
    return None if said is None else f"**The ledger's verdict** on {a} − {b}: {said}"


def geometry(frame: pd.DataFrame, dataset: str, setting: str) -> str:
    """Contraction (spread-ratio flag) and collapse (scale-free test) of one strategy, stated
    separately: a contracted embedding can still retrieve well."""
    rows = frame[(frame.dataset == dataset) & (frame.setting == setting)]
    seeds = len(rows)
    diverged, contracted, collapsed = (int(rows[f].astype(float).sum()) for f in ("diverged", "contracted", "collapsed"))
    p1, chance = rows["precision@1"].mean(), rows["chance_precision@1"].mean()
    contraction = (f"contracts the embedding in {contracted} of {seeds} seeds" if contracted
                   else "does not contract the embedding") + f" (spread ratio {rows['spread_ratio'].mean():.3f})"
    collapse = (f"collapses it in {collapsed} of {seeds} seeds" if collapsed else "does not collapse it") + (
        f" (precision@1 {p1 * 100:.1f} % against {chance * 100:.1f} % for a random ranking, {p1 / chance:.3g}× chance; "
        f"effective rank {rows['effective_rank'].mean():.1f})")
    text = f"*{setting}* {contraction} {'but' if contracted and not collapsed else 'and'} {collapse}"
    return text + (f"; {diverged} of {seeds} seeds diverged" if diverged else "")


def _dataset_verdict(ch: Chapter, dataset: str, family: pd.DataFrame) -> str:
    table, metric = strategy_summary(ch).loc[dataset], VERDICT_METRIC
    best = table[f"{metric} mean"].idxmax()
    seeds = int(table.loc[best, "seeds"])
    lines = [f"**{dataset}.** Best {metric} on the test split, chosen after the fact: *{best}*, "
             f"{fmt(table.loc[best, f'{metric} mean'], table.loc[best, f'{metric} sd'])}"
             + (f" over {seeds} seeds" if seeds > 1 else "")]
    if "oneshot_accuracy mean" in table and np.isfinite(table.loc[best, "oneshot_accuracy mean"]):
        lines[0] += (f"; its Lake 20-way one-shot accuracy is "
                     f"{fmt(table.loc[best, 'oneshot_accuracy mean'], table.loc[best, 'oneshot_accuracy sd'])}")
    lines[0] += f". Paired by seed, one Holm family of {len(family)} comparisons on {metric}:\n"
    for name, (a, b) in comparison_pairs(list(ch.settings.strategies)).items():
        lines.append(f"- {judged(family.loc[name], name, a, b)} (this chapter's family, exploratory).")
        claim = ledger_line(ch, dataset, a, b)
        if claim:
            source = "Hermans et al." if a == BATCH_HARD else "FaceNet"
            lines.append(f"  - {source}'s claim. {claim}.")
    flagged = [s for s in table.index if s == HARD or table.loc[s, "contracted"] or table.loc[s, "collapsed"]]
    lines.append(f"- Geometry (contracted: spread ratio below {ch.config(dataset).eval.contraction_threshold:g}; "
                 f"collapsed: precision@1 at most {CHANCE_FACTOR:g}× chance or effective rank below "
                 f"{MIN_EFFECTIVE_RANK:g}): " + "; ".join(geometry(ch.table(), dataset, s) for s in flagged) + ".")
    return "\n".join(lines)


def _margin_verdict(ch: Chapter) -> str:
    sweep = ch.settings.margin_sweep
    means = margin_summary(ch)["map@r mean"].loc[sweep.dataset]
    ranges = {}
    for name in sweep.strategies:
        values = [means[margin_setting(name, m)] for m in sweep.margins]
        ranges[name] = (max(values) - min(values)) * 100
    finding = ("Hard mining is the less margin-sensitive, as its gradient predicts."
               if ranges.get(HARD, 0) < ranges.get(BASELINE, 0) else
               "Hard mining is **not** less margin-sensitive here, against the gradient argument.")
    return (f"**Margin.** Across margins {', '.join(str(m) for m in sweep.margins)} on {sweep.dataset}, the "
            "mean MAP@R over seeds moves by " + ", ".join(f"{r:.1f} points for {n}" for n, r in ranges.items())
            + f" (ranges of means, not a tested difference). {finding}")


def verdict(ch: Chapter, family: pd.DataFrame) -> str:
    """The chapter's conclusion as Markdown, every number read from the per-seed table."""
    lines = [_dataset_verdict(ch, ds, family.loc[ds]) for ds in ch.settings.datasets]
    return "\n\n".join(lines + [_margin_verdict(ch)])
