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
import seaborn as sns

from lib import compare, divide, plots, records, stats
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


def run(ch: Chapter) -> tuple[dict[str, dict[str, list]], pd.DataFrame]:
    """Every grid setting on every data set over the profile's seeds ({dataset: {setting: runs}}),
    recorded in the chapter's per-seed table, and the mean ± sd summary saved as its results table."""
    results = {ds: ch.run_settings({name: divide_setting(ch, ds, k, m) for name, (k, m) in grid(ch).items()})
               for ds in ch.settings["datasets"]}
    table = records.summary(ch.table(), METRICS)
    ch.save_table(table, "results")
    return results, table


def _saved(ch: Chapter, fig: plt.Figure, name: str, caption: str) -> plt.Figure:
    """Save the figure and close it, so the notebook shows it once, as the cell's value."""
    fig.tight_layout()
    ch.save(fig, name, caption)
    plt.close(fig)
    return fig


def _histories(runs: list) -> list[pd.DataFrame]:
    """The per-epoch histories of the runs that trained (a diverged run has none)."""
    return [r.history for r in runs if not isinstance(r, Diverged) and len(r.history)]


def accuracy_against_grid(ch: Chapter, metric: str = SECONDARY) -> plt.Figure:
    """Per data set: the metric against K at the centre's M (left) and against M at the centre's K
    (right), every seed a dot, the mean ± sd a line."""
    at, points, table = ch.settings["grid_at"], grid(ch), ch.table()
    datasets = ch.settings["datasets"]
    fig, axes = plt.subplots(len(datasets), 2, figsize=(11, 3.4 * len(datasets)), squeeze=False)
    for row, ds in zip(axes, datasets):
        seeds = table[table["dataset"] == ds]
        for ax, vary in zip(row, ["K", "M"]):
            if vary == "K":
                chosen = sorted((k, name) for name, (k, m) in points.items() if m == at["recluster_every"] or k == 1)
                label = f"K (learners; M = {at['recluster_every']})"
            else:
                chosen = sorted((m, name) for name, (k, m) in points.items() if k == at["clusters"])
                label = f"M (epochs between re-clusterings; K = {at['clusters']})"
            xs = [x for x, _ in chosen]
            values = [seeds.loc[seeds["setting"] == name, metric].to_numpy(dtype=float) * 100 for _, name in chosen]
            spread = [np.nanstd(v, ddof=1) if np.isfinite(v).sum() > 1 else 0.0 for v in values]
            ax.errorbar(xs, [np.nanmean(v) for v in values], yerr=spread, marker="o", capsize=3)
            for x, v in zip(xs, values):
                ax.scatter([x] * len(v), v, color="C0", alpha=0.35, s=12)
            ax.set_xscale("log", base=2)
            ax.set_xticks(xs, [str(x) for x in xs])
            ax.set_xlabel(label)
            ax.set_ylabel(f"{ds} {LABELS.get(metric, metric)} (%)")
    return _saved(ch, fig, "map-vs-k",
                  "Held-out MAP@R against the number of learners K and the re-clustering interval M")


def learning_curves(ch: Chapter, results: dict[str, dict[str, list]]) -> plt.Figure:
    """Held-out Recall@1 after each epoch, one learner against the grid's centre, per data set;
    the shaded epochs are the ones the centre trains as K separate learners."""
    middle, datasets = centre(ch), ch.settings["datasets"]
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 3.6), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        divided = divide.divided_epochs(results[ds][middle][0].config)
        ax.axvspan(0, divided, color="grey", alpha=0.15, lw=0, label=f"{middle}: divided epochs")
        for i, name in enumerate([SINGLE, middle]):
            plots.seed_lines(ax, _histories(results[ds][name]), CURVE, label=name, color=f"C{i}")
        last = max((max(line.get_xdata()) for line in ax.get_lines()), default=1)
        ax.set_xticks(range(int(last) + 1))
        ax.set_xlim(0, last + 0.2)
        ax.yaxis.set_major_formatter(lambda y, _: f"{y * 100:.0f}")
        ax.set_xlabel("epoch (first clustering at 0, on the untrained network)")
        ax.set_ylabel(f"{ds}: held-out Recall@1 (%)")
        ax.legend(fontsize=8, loc="lower right")
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
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 5), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        arrays = getattr(results[ds][middle][0], "arrays", {})
        if "train_sample_embeddings" not in arrays:
            ax.set_visible(False)
            continue
        x, learner = arrays["train_sample_embeddings"][:keep], arrays["train_sample_learner"][:keep]
        z = plots.tsne_coordinates(x)
        ax.scatter(*z[learner == divide.DROPPED].T, s=4, c="lightgrey", lw=0)
        for k in range(ch.settings["grid_at"]["clusters"]):
            ax.scatter(*z[learner == k].T, s=6, lw=0, color=sns.color_palette("tab10")[k], label=f"learner {k}")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{ds}, {middle}")
        ax.legend(fontsize=7, markerscale=2)
    return _saved(ch, fig, "tsne-by-learner",
                  "t-SNE of training images in the final embedding, coloured by the learner that trained on them")


def clusters_and_cost(ch: Chapter, results: dict[str, dict[str, list]]) -> plt.Figure:
    """Left: the share of images each re-clustering leaves with their learner. Right: seconds of
    k-means (embedding the training set included) and of training per run, mean over seeds."""
    datasets = ch.settings["datasets"]
    fig, axes = plt.subplots(len(datasets), 2, figsize=(12, 3.4 * len(datasets)), squeeze=False)
    for (kept_ax, cost_ax), ds in zip(axes, datasets):
        costs = {}
        for i, (name, runs) in enumerate(results[ds].items()):
            histories = _histories(runs)
            if histories and "cluster_kept_fraction" in histories[0]:
                plots.seed_lines(kept_ax, [h.dropna(subset=["cluster_kept_fraction"]) for h in histories],
                                  "cluster_kept_fraction", label=name, color=f"C{i}")
            costs[name] = {"clustering": np.mean([h.get("cluster_seconds", pd.Series([0.0])).sum() for h in histories]),
                           "training": np.mean([h["train_seconds"].sum() for h in histories])}
        kept_ax.set_ylim(0, 1.02)
        kept_ax.set_xlabel("epoch of re-clustering")
        kept_ax.set_ylabel(f"{ds}: images kept by their learner")
        if kept_ax.get_legend_handles_labels()[0]:
            kept_ax.legend(fontsize=7)
        pd.DataFrame(costs).T.plot.barh(stacked=True, ax=cost_ax, color=["C3", "C0"])
        cost_ax.set_xlabel("seconds per run")
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
    """What one comparison says, with the smallest effect the seeds could have detected."""
    if not (math.isfinite(row["low"]) and math.isfinite(row["high"])):
        return "one seed: nothing can be concluded"
    if row["effect"] != compare.EFFECT["none"]:
        return f"dividing {row['effect']}"
    return f"no difference detected; {compare.detectable(row['mde'])}"


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


def _why(word: stats.Verdict, row: pd.Series, same_regime: bool, still_improving: pd.Series) -> str:
    if word == stats.Verdict.INCONCLUSIVE and not math.isfinite(row["low"]):
        because = "With a single seed there is no interval: nothing can be concluded."
    else:
        because = {
            stats.Verdict.REPRODUCED: "The corrected interval lies above zero: dividing helps, even in this regime.",
            stats.Verdict.NOT_SUPPORTED: "The corrected interval excludes a gain, in a regime far from the paper's, "
                                         "so it does not test the paper's claim.",
            stats.Verdict.CONTRADICTED: "The corrected interval excludes a gain, in the paper's own regime.",
            stats.Verdict.INCONCLUSIVE: "The corrected interval contains zero.",
        }[word]
    if still_improving.any() and not same_regime:
        who = "both arms were" if still_improving.all() else "an arm was"
        because += f" Training stopped while {who} still learning: a small-budget outcome, not a test of the paper."
    return because


def verdict(ch: Chapter, family: pd.DataFrame, improving: pd.DataFrame) -> str:
    """Per data set: the pre-registered comparison (centre vs K = 1), the rest of its family, the
    post hoc best, whether the arms had finished learning, the regime against the paper's, and
    the ledger's verdict word."""
    middle = centre(ch)
    paper = _regime(load_profile(PAPER_PROFILE).run_config(PAPER_DATASET))
    paragraphs = []
    for ds in ch.settings["datasets"]:
        primary, secondary = _family(family, ds, PRIMARY), _family(family, ds, SECONDARY)
        row = primary.loc[middle]
        tested = _regime(divide_setting(ch, ds, *grid(ch)[middle]))
        same = all(tested[key] == paper[key] for key in ("backbone", "pretrained", "epochs", "whole"))
        difference = compare.differences(ch.table(), {n: (n, SINGLE) for n in primary.index}, PRIMARY, ds)[middle]
        word = stats.verdict(difference, claimed_effect=None, regime_matches=same)
        text = (f"**{ds}** — held-out Recall@1, {int(row['seeds'])} seed(s) paired by seed, "
                f"{_epochs(tested['epochs'])} for every setting. *Pre-registered:* the grid's centre *{middle}* "
                f"against one learner: {compare.sentence(row)}; {_finding(row)}. "
                f"(MAP@R: {compare.sentence(secondary.loc[middle])}; {_finding(secondary.loc[middle])}.) ")
        others = primary.drop(index=middle)
        if len(others):
            groups = {effect: [n for n in others.index if others.loc[n, "effect"] == effect]
                      for effect in compare.EFFECT.values()}
            listed = "; ".join(f"{effect}: {', '.join(f'*{n}*' for n in names)}"
                               for effect, names in groups.items() if names)
            undetected = others.loc[groups[compare.EFFECT["none"]], "mde"] * 100
            undetected = undetected[np.isfinite(undetected)]
            if len(undetected):
                listed += (f" (the seeds could not detect effects smaller than {undetected.min():.1f} to "
                           f"{undetected.max():.1f} points)")
            text += (f"The other grid settings, in the same Holm family of {int(row['family'])} comparisons with "
                     f"K = 1 — {listed}. ")
            measured = primary["diff"].dropna()
            if len(measured):
                best = measured.idxmax()
                text += (f"Best divided setting on the test split, chosen after the fact (post hoc, not a test): "
                         f"*{best}*, {compare.sentence(primary.loc[best])}. ")
        text += f"\n\n{_trajectory(improving, ds, middle)} {_regime_text(tested, paper)}"
        text += f"\n\n**Verdict on {ds}: {word}.** {_why(word, row, same, improving.loc[ds, 'still improving'])}"
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


def budgets(ch: Chapter) -> tuple[dict[int, dict[str, list]], pd.DataFrame]:
    """One learner against the grid's centre (and its warm start) at 1x, 2x, 4x ... the chapter's
    budget (`budgets`) on `budget_dataset`: every epoch count multiplied (the whole-embedding epochs
    too, so their share stays), the same steps for every arm, paired by seed. 1x is the grid's own
    pair of runs. Returns the runs ({multiple: {arm: runs}}) and the gap of each arm to one learner
    at each budget, one Holm family over all of them."""
    arms, middle = budget_arms(ch), centre(ch)
    results = {}
    for multiple in ch.settings["budgets"]:
        settings = {records.budget_setting(arm, multiple): cfg.with_overrides({
            "train.epochs": cfg.train.epochs * multiple,
            "divide.finetune_epochs": cfg.divide.finetune_epochs * multiple,
            "divide.warmup_epochs": cfg.divide.warmup_epochs * multiple}) for arm, cfg in arms.items()}
        runs = ch.run_settings(settings)
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
    fig, (ax, ax_gap) = plt.subplots(1, 2, figsize=(11, 3.6))
    for i, arm in enumerate(arms):
        values = [np.array([r.metrics[PRIMARY] for r in results[m][arm] if not isinstance(r, Diverged)]) * 100
                  for m in multiples]
        ax.plot(multiples, [v.mean() for v in values], marker="o", color=f"C{i}", label=arm)
        for m, v in zip(multiples, values):
            ax.scatter([m] * len(v), v, color=f"C{i}", alpha=0.35, s=12)
    epochs = gap["epochs"].to_numpy()[:len(multiples)]
    for a in (ax, ax_gap):
        a.set_xscale("log", base=2)
        a.set_xticks(multiples, [f"{m}x\n({e} epochs)" for m, e in zip(multiples, epochs)])
        a.set_xlabel("budget (the same for every arm)")
    ax.set_ylabel(f"{ch.settings['budget_dataset']} held-out Recall@1 (%)")
    ax.legend(fontsize=8)
    for i, arm in enumerate(arms[1:], start=1):
        rows = gap[gap["arm"] == arm]
        diff, low, high = (rows[c].to_numpy() * 100 for c in ("diff", "low", "high"))
        shifted = np.array(multiples) * 2 ** (0.06 * (i - 1))  # side by side, not on top of each other
        ax_gap.errorbar(shifted, diff, yerr=[diff - low, high - diff], marker="o", capsize=4, color=f"C{i}", label=arm)
    ax_gap.axhline(0, color="grey", lw=1)
    ax_gap.set_ylabel("minus K=1 (points)")
    ax_gap.legend(fontsize=8)
    return _saved(ch, fig, "budgets", "Divide and conquer against one learner at 1x, 2x and 4x the budget: "
                                      "Recall@1 per arm and each gap with its Holm interval")


def budget_curves(ch: Chapter, results: dict[int, dict[str, list]]) -> plt.Figure:
    """Held-out Recall@1 and MAP@R after every epoch of every budget arm, one column per budget
    (thin: seeds, bold: mean): does the gap between the arms move while they train?"""
    multiples, arms = ch.settings["budgets"], list(budget_arms(ch))
    metrics = {"val_recall@1": "Recall@1", "val_map@r": "MAP@R"}
    fig, axes = plt.subplots(len(metrics), len(multiples), figsize=(4.2 * len(multiples), 3.0 * len(metrics)),
                             squeeze=False, sharey="row")
    for col, m in enumerate(multiples):
        for row, (column, label) in enumerate(metrics.items()):
            ax = axes[row, col]
            for i, arm in enumerate(arms):
                plots.seed_lines(ax, _histories(results[m][arm]), column, label=arm, color=f"C{i}")
            ax.yaxis.set_major_formatter(lambda y, _: f"{y * 100:.0f}")
            if row == 0:
                ax.set_title(f"{m}x the budget", fontsize=10)
            if row == len(metrics) - 1:
                ax.set_xlabel("epoch")
            if col == 0:
                ax.set_ylabel(f"held-out {label} (%)")
    axes[0, 0].legend(fontsize=7)
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
