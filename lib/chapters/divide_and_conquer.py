"""Chapter 4: divide and conquer the embedding space (Sanakoyeu et al. 2019) against one learner.

The grid varies the number of learners K with M fixed and the re-clustering interval M with K
fixed, around the profile's `grid_at` (the pre-registered setting); K = 1 is the same recipe
trained as a single learner. Every setting is compared with K = 1 paired by seed, one
Holm-corrected family per data set and metric.
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lib import compare, derived, divide, plots, records, stats
from lib.config import RunConfig, load_profile
from lib.study import Chapter, Diverged, divide_setting

SINGLE = "K=1 (single learner)"
PRIMARY = "recall@1"  # the metric the claims ledger scores this claim on
SECONDARY = "map@r"
LABELS = {"recall@1": "Recall@1", "map@r": "MAP@R"}
METRICS = ["recall@1", "map@r", "oneshot_accuracy", "precision@1", "nmi", "effective_rank", "collapsed"]
CURVE = "val_recall@1"
# The paper's own configuration (its released code); CUB is one of its data sets, the regime is the same for all.
PAPER_PROFILE, PAPER_DATASET = "paper_dnc", "cub200"


def grid(ch: Chapter) -> dict[str, tuple[int, int]]:
    """{setting name: (K, M)}: K varies at the centre's M, M varies at the centre's K."""
    at = ch.settings["grid_at"]
    points = {f"K={k}, M={at['recluster_every']}": (k, at["recluster_every"]) for k in ch.settings["clusters"]}
    points.update({f"K={at['clusters']}, M={m}": (at["clusters"], m) for m in ch.settings["recluster_every"]})
    return {(SINGLE if k == 1 else name): (k, m) for name, (k, m) in points.items()}


def centre(ch: Chapter) -> str:
    """The pre-registered setting: the grid's centre, named before any run."""
    at = ch.settings["grid_at"]
    return f"K={at['clusters']}, M={at['recluster_every']}"


def plan(ch: Chapter):
    """The chapter's runs (lib.runs.plan): the grid on every data set, and the budget arms."""
    yield [run for ds in ch.settings["datasets"] for run in ch.planned(grid_arms(ch, ds))] + \
        [run for multiple in ch.settings["budgets"] for run in ch.planned(budget_settings(ch, multiple))]


def grid_arms(ch: Chapter, dataset: str) -> dict[str, RunConfig]:
    return {name: divide_setting(ch, dataset, k, m) for name, (k, m) in grid(ch).items()}


def run(ch: Chapter) -> tuple[dict[str, dict[str, list]], pd.DataFrame]:
    """Every grid setting on every data set over the profile's seeds ({dataset: {setting: runs}}),
    recorded in the chapter's per-seed table, and the mean ± sd summary saved as its results table."""
    results = {ds: ch.results(grid_arms(ch, ds)) for ds in ch.settings["datasets"]}
    table = records.summary(ch.table(), METRICS)
    ch.save_table(table, "results")
    return results, table


def _saved(ch: Chapter, fig: plt.Figure, name: str, caption: str, rect=(0, 0, 1, 1)) -> plt.Figure:
    """Save the figure and close it, so the notebook shows it once, as the cell's value. `rect`:
    the part of the figure the axes fill (room left for a figure legend)."""
    fig.tight_layout(rect=rect)
    ch.save(fig, name, caption)
    plt.close(fig)
    return fig


def _histories(runs: list) -> list[pd.DataFrame]:
    """The per-epoch histories of the runs that trained (a diverged run has none)."""
    return [r.history for r in runs if not isinstance(r, Diverged) and len(r.history)]


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
    at, points, table = ch.settings["grid_at"], grid(ch), ch.table()
    datasets, name = ch.settings["datasets"], LABELS.get(metric, metric)
    family, middle = comparisons(ch), centre(ch)
    fig, axes = plt.subplots(len(datasets), 2, figsize=(11, 3.6 * len(datasets) + 1), squeeze=False)
    said = []
    for row, ds in zip(axes, datasets):
        found = _family(family, ds, metric)
        base = records.per_seed(table, SINGLE, metric, ds)
        for ax, vary in zip(row, ["K", "M"]):
            if vary == "K":
                chosen = sorted((k, n) for n, (k, m) in points.items() if m == at["recluster_every"] or k == 1)
                label = f"K (learners; M = {at['recluster_every']})"
            else:
                chosen = sorted((m, n) for n, (k, m) in points.items() if k == at["clusters"])
                label = f"M (epochs between re-clusterings; K = {at['clusters']})"
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
    middle, datasets = centre(ch), ch.settings["datasets"]
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


def still_improving(ch: Chapter, results: dict[str, dict[str, list]]) -> pd.DataFrame:
    """Per data set and arm (K = 1 and the grid's centre): the mean held-out Recall@1 after each
    epoch, and what the last epoch added over the one before (mean over seeds; "still improving"
    when that mean gain is positive)."""
    rows = []
    for ds in ch.settings["datasets"]:
        for name in [SINGLE, centre(ch)]:
            seeds = [h.set_index("epoch")[CURVE] for h in _histories(results[ds][name]) if CURVE in h]
            if not seeds:
                rows.append({"dataset": ds, "setting": name, "still improving": False})
                continue
            curves = pd.concat(seeds, axis=1, ignore_index=True).dropna(how="all")
            gains = curves.iloc[-1] - curves.iloc[-2] if len(curves) > 1 else pd.Series(dtype=float)
            gain = gains.mean() if len(gains) else math.nan
            rows.append({"dataset": ds, "setting": name, "epochs": int(curves.index[-1]),
                         "mean recall@1 per epoch (%)": " ".join(f"{v * 100:.1f}" for v in curves.mean(axis=1)),
                         "last-epoch gain (points)": gain * 100,
                         "seeds still improving": f"{int((gains > 0).sum())}/{curves.shape[1]}",
                         "still improving": bool(gain > 0)})
    return pd.DataFrame(rows).set_index(["dataset", "setting"])


def learners_map(ch: Chapter, results: dict[str, dict[str, list]]) -> plt.Figure:
    """t-SNE of a sample of training images in the centre's final embedding (first seed),
    coloured by the learner that had them at the last re-clustering."""
    middle, datasets, keep = centre(ch), ch.settings["datasets"], ch.settings["tsne_points"]
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
        for k in range(ch.settings["grid_at"]["clusters"]):
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
    datasets = ch.settings["datasets"]
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


def comparisons(ch: Chapter) -> pd.DataFrame:
    """Every divided setting minus K = 1, paired by seed; one Holm family per (data set, metric)."""
    divided = {name: (name, SINGLE) for name in grid(ch) if name != SINGLE}
    table = ch.table()
    families = [compare.compare(table, divided, metric, dataset=ds).assign(dataset=ds)
                for ds in ch.settings["datasets"] for metric in (PRIMARY, SECONDARY)]
    return pd.concat(families).reset_index().set_index(["dataset", "metric", "comparison"])


def _family(family: pd.DataFrame, dataset: str, metric: str) -> pd.DataFrame:
    """One data set's comparisons on one metric, indexed by setting."""
    rows = family.reset_index()
    return rows[(rows["dataset"] == dataset) & (rows["metric"] == metric)].set_index("comparison")


def _finding(row: pd.Series) -> str:
    """What one comparison says (`lib.compare.said`, the one voice): the difference at its level and
    where its interval lies, with the effect these seeds would detect when it includes zero."""
    return compare.said(row)


def _size(cfg: RunConfig) -> str:
    size = cfg.data.image_size
    return "×".join(map(str, size)) if isinstance(size, (list, tuple)) else str(size)


def _regime(cfg: RunConfig) -> dict:
    return {"backbone": cfg.model.backbone, "pretrained": bool(cfg.model.pretrained), "size": _size(cfg),
            "epochs": int(cfg.train.epochs), "whole": int(cfg.divide.finetune_epochs),
            "divided": divide.divided_epochs(cfg), "features": cfg.divide.features}


def _epochs(n: int) -> str:
    return f"{n} epoch" + ("" if n == 1 else "s")


def _regime_text(tested: dict, paper: dict) -> str:
    start = "an ImageNet-pretrained" if tested["pretrained"] else "an untrained"
    backbone = "ImageNet-pretrained" if tested["pretrained"] else "trained from scratch"
    return (f"Regime tested: {_epochs(tested['epochs'])}, the first {tested['divided']} divided among the learners "
            f"and only the last {tested['whole']} (`divide.finetune_epochs`) training the whole embedding; the first "
            f"clustering runs on {start} network, before any training step; the {tested['backbone']} backbone is "
            f"{backbone}, at {tested['size']} px. The paper's regime: an ImageNet-pretrained {paper['backbone']} at "
            f"{paper['size']} px, {_epochs(paper['epochs'])}, the first {paper['divided']} divided, clustered from "
            f"the start on the pretrained network's {paper['features']} features, and the last {paper['whole']} "
            f"training the whole embedding.")


def _trajectory(improving: pd.DataFrame, ds: str, middle: str) -> str:
    arms = improving.loc[ds]
    curves = "; ".join(f"{name}: {arms.loc[name, 'mean recall@1 per epoch (%)']}" for name in [SINGLE, middle])
    gains = " and ".join(f"{arms.loc[name, 'last-epoch gain (points)']:+.1f} points for {name} "
                         f"({arms.loc[name, 'seeds still improving']} seeds improving)" for name in [SINGLE, middle])
    still = arms["still improving"]
    state = ("both arms were still improving when training stopped" if still.all() else
             "neither arm improved in its last epoch" if not still.any() else
             f"{', '.join(still[still].index)} was still improving when training stopped")
    return (f"Held-out Recall@1 (%) after each epoch, mean over seeds — {curves}. The last epoch changed it by "
            f"{gains}: {state}.")


def _why(same_regime: bool, still_improving: pd.Series) -> str:
    """The budget's qualifier of the ledger's verdict (never a verdict of its own)."""
    if still_improving.any() and not same_regime:
        who = "both arms were" if still_improving.all() else "an arm was"
        return f" Training stopped while {who} still learning: a small-budget outcome, not a test of the paper."
    return ""


def _ledger_verdicts(ch: Chapter, ds: str) -> str:
    """The claims ledger's verdict sentences on this chapter's arms on `ds`, word for word."""
    from lib import ledger
    return " ".join(f"**The ledger's verdict on {ds}** (*{c.a}* against *{c.b}*, {c.metric}): {said}."
                    for c, _, said in ledger.chapter_verdicts(ch, ds))


def verdict(ch: Chapter, family: pd.DataFrame, improving: pd.DataFrame) -> str:
    """Per data set: the grid's centre vs K = 1, the rest of its family (exploratory), the post hoc
    best, whether the arms had finished learning, the regime against the paper's, and the ledger's
    verdict sentence on the comparison it judges, word for word."""
    middle = centre(ch)
    paper = _regime(load_profile(PAPER_PROFILE).run_config(PAPER_DATASET))
    paragraphs = []
    for ds in ch.settings["datasets"]:
        primary, secondary = _family(family, ds, PRIMARY), _family(family, ds, SECONDARY)
        row = primary.loc[middle]
        tested = _regime(divide_setting(ch, ds, *grid(ch)[middle]))
        same = all(tested[key] == paper[key] for key in ("backbone", "pretrained", "epochs", "whole"))
        text = (f"**{ds}** — held-out Recall@1, {int(row['seeds'])} seed(s) paired by seed, "
                f"{_epochs(tested['epochs'])} for every setting. The grid's centre *{middle}* "
                f"against one learner: {_finding(row)}. "
                f"(MAP@R: {_finding(secondary.loc[middle])}.) ")
        others = primary.drop(index=middle)
        if len(others):
            listed = "; ".join(f"*{n}*: {_finding(others.loc[n])}" for n in others.index)
            text += (f"The other grid settings, in the same Holm family of {int(row['family'])} comparisons with "
                     f"K = 1 — {listed}. ")
            measured = primary["diff"].dropna()
            if len(measured):
                best = measured.idxmax()
                text += (f"Best divided setting on the test split, chosen after the fact (post hoc, not a test): "
                         f"*{best}*, {compare.sentence(primary.loc[best])}. ")
        text += f"\n\n{_trajectory(improving, ds, middle)} {_regime_text(tested, paper)}"
        text += f"\n\n{_ledger_verdicts(ch, ds)}{_why(same, improving.loc[ds, 'still improving'])}"
        paragraphs.append(text)
    if ch.profile.name == "smoke":
        paragraphs.append("These are smoke-profile numbers and mean nothing.")
    return "\n\n".join(paragraphs)


# ----------------------------------------------------------------------------- longer budgets
def warm_arm(ch: Chapter) -> str | None:
    """The name of the centre trained with a warm start (its first epochs on the whole embedding,
    so the first clustering sees a trained embedding), or None when the profile runs none."""
    return records.warm_start_setting(centre(ch)) if ch.settings.get("warm_start_epochs", 0) else None


def budget_arms(ch: Chapter) -> dict[str, RunConfig]:
    """{arm: its 1x configuration on `budget_dataset`}: one learner, the grid's centre and, where
    the profile asks, the centre with a warm start."""
    ds, middle = ch.settings["budget_dataset"], centre(ch)
    k, m = grid(ch)[middle]
    arms = {SINGLE: divide_setting(ch, ds, 1, m), middle: divide_setting(ch, ds, k, m)}
    if warm_arm(ch):
        arms[warm_arm(ch)] = arms[middle].with_overrides({"divide.warmup_epochs": ch.settings["warm_start_epochs"]})
    return arms


def budget_settings(ch: Chapter, multiple: int) -> dict[str, RunConfig]:
    """Every budget arm at `multiple` times the chapter's budget: every epoch count multiplied (the
    whole-embedding epochs too, so their share stays)."""
    return {records.budget_setting(arm, multiple): cfg.with_overrides({
        "train.epochs": cfg.train.epochs * multiple,
        "divide.finetune_epochs": cfg.divide.finetune_epochs * multiple,
        "divide.warmup_epochs": cfg.divide.warmup_epochs * multiple}) for arm, cfg in budget_arms(ch).items()}


def budgets(ch: Chapter) -> tuple[dict[int, dict[str, list]], pd.DataFrame]:
    """One learner against the grid's centre (and its warm start) at 1x, 2x, 4x ... the chapter's
    budget (`budgets`) on `budget_dataset`: every epoch count multiplied (the whole-embedding epochs
    too, so their share stays), the same steps for every arm, paired by seed. 1x is the grid's own
    pair of runs. Returns the runs ({multiple: {arm: runs}}) and the gap of each arm to one learner
    at each budget, one Holm family over all of them."""
    arms, middle = budget_arms(ch), centre(ch)
    results = {}
    for multiple in ch.settings["budgets"]:
        runs = ch.results(budget_settings(ch, multiple))
        results[multiple] = {arm: runs[records.budget_setting(arm, multiple)] for arm in arms}
    pairs = {f"{m}x" + ("" if arm == middle else ", warm start"): (records.budget_setting(arm, m),
                                                                   records.budget_setting(SINGLE, m))
             for arm in arms if arm != SINGLE for m in ch.settings["budgets"]}
    gap = compare.compare(ch.table(), pairs, PRIMARY, dataset=ch.settings["budget_dataset"])
    gap.insert(0, "epochs", [results[m][SINGLE][0].config.train.epochs
                             for arm in arms if arm != SINGLE for m in ch.settings["budgets"]])
    gap.insert(0, "arm", [arm for arm in arms if arm != SINGLE for _ in ch.settings["budgets"]])
    ch.save_table(gap, "budgets")
    return results, gap


def budget_figure(ch: Chapter, results: dict[int, dict[str, list]], gap: pd.DataFrame) -> plt.Figure:
    """Left: held-out Recall@1 of every arm at each budget, seeds as dots. Right: each divided
    arm's gap to one learner with its Holm interval."""
    multiples = ch.settings["budgets"]
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
    ax.set_ylabel(f"{ch.settings['budget_dataset']} held-out Recall@1 (%)")
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
    multiples, arms = ch.settings["budgets"], list(budget_arms(ch))
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
    return _saved(ch, fig, "budget-curves", f"{ch.settings['budget_dataset']}: held-out Recall@1 and MAP@R per epoch "
                                            "of one learner and the divided arms at each budget (thin: seeds, bold: mean)")


def _trend(rows: pd.DataFrame) -> str:
    """Whether a gap shrinks, closes, flips or holds from the shortest budget to the longest."""
    first, last = rows.iloc[0], rows.iloc[-1]
    excludes_zero = [math.isfinite(r["low"]) and (r["low"] > 0 or r["high"] < 0) for _, r in rows.iterrows()]
    if not all(math.isfinite(r["low"]) for _, r in rows.iterrows()):
        return "with a single seed there are no intervals, and no trend can be read"
    if np.sign(first["diff"]) != np.sign(last["diff"]) and excludes_zero[-1]:
        return "the gap flips sign as training lengthens, and the longest budget's interval excludes zero"
    if excludes_zero[0] and not excludes_zero[-1]:
        return "the gap closes: at the longest budget its interval contains zero"
    if abs(last["diff"]) < abs(first["diff"]):
        return "the gap shrinks as training lengthens" + ("" if not excludes_zero[-1] else ", but stays clear of zero")
    return "the gap does not shrink as training lengthens"


def budget_verdict(ch: Chapter, gap: pd.DataFrame) -> str:
    """Each divided arm's gap at each budget, and whether it shrinks, closes, flips or holds as
    training lengthens."""
    text = (f"**Longer budgets** ({ch.settings['budget_dataset']}, each divided arm minus one learner, held-out "
            f"Recall@1, one Holm family over the budgets and arms): ")
    for arm, rows in gap.groupby("arm", sort=False):
        parts = [f"{name} ({int(row['epochs'])} epochs): {compare.sentence(row)}" for name, row in rows.iterrows()]
        text += f"*{arm}*: " + "; ".join(parts) + f". So {_trend(rows)}. "
    if warm_arm(ch):
        text += (f"The warm start trains the whole embedding first ({_epochs(ch.settings['warm_start_epochs'])} at 1x, "
                 "scaled with the budget), so its first clustering sees a trained embedding, as the paper's sees "
                 "pretrained features; the ledger judges this arm. ")
    return text + ("The regime is still far from the paper's (from scratch, small images), so this shows how the "
                   "verdict moves with the budget, not what the paper's budget would give.")
