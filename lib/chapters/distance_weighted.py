"""Chapter 3: distance-weighted sampling and the margin loss (Wu, Manmatha, Smola & Krähenbühl, ICCV 2017).

The notebook trains four methods on each data set (`run_methods`), shows why Wu et al. weight
negatives by distance (`sphere_density_figure` in `distance_weighted_figures`, `gradient_noise`), what
training did (`seed_dots_figure`, `beta_and_fallback_figure`, there too), and renders its verdict (`verdict`) from the
per-seed table, pairing arms by seed and correcting each data set's comparisons together
(`comparisons`).
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lib import derived, geometry, plots, records, train
from lib.arms import PRETRAINED, SEMI_HARD_TRIPLET, WU
from lib.compare import compare
from lib.config import RunConfig
from lib.study import Chapter, backbone_words, fmt

SEMI = SEMI_HARD_TRIPLET  # the method names of lib.arms, as params YAML spells them
SEMI_MARGIN = "margin loss, semi-hard sampling"
PML = "margin loss, distance-weighted (pml: drops anchors)"

CLAIM_METRIC = "recall@1"  # what Wu et al. report; MAP@R is the study's whole-ranking check
CHECK_METRIC = "map@r"
METRICS = ["recall@1", "map@r", "oneshot_accuracy", "precision@1"]
SUMMARY_METRICS = METRICS + ["effective_rank", "spread_ratio", "train_nonzero_fraction"]

# Share of anchors whose negatives all had weight zero: where Wu's code falls back to a uniform
# negative and pml drops the anchor (recorded per step by lib.miners.WuDistanceWeightedMiner).
FALLBACK = "zero_weight_fraction"
VOID = "void: identical runs"

WHOLE = "Wu's recipe vs semi-hard triplet"
LOSS_ONLY = "the loss alone (margin loss, semi-hard sampling vs semi-hard triplet)"
SAMPLING_ONLY = "the sampling alone (distance-weighted vs semi-hard, both with the margin loss)"
PML_RECIPE = "pml's recipe vs semi-hard triplet"
DROPPING = "pml's anchor dropping vs Wu's uniform fallback"

WHOLE_NETWORK = ", pretrained, whole network fine-tuned"

# Published 20-way one-shot accuracies on Lake's 20 runs (Lake, Salakhutdinov & Tenenbaum 2015, Science).
LAKE_ANCHORS = {"people": 0.955, "Bayesian Program Learning": 0.967, "a convolutional network": 0.865}


def plan(ch: Chapter):
    """The chapter's runs (lib.runs.plan): every method on every data set, and the pretrained arms."""
    yield [run for ds in ch.settings.datasets for run in ch.planned(method_arms(ch, ds))] + \
        ch.planned(pretrained_arms(ch))


def method_arms(ch: Chapter, dataset: str) -> dict[str, RunConfig]:
    return {name: ch.config(dataset, layer) for name, layer in ch.settings.methods.items()}


def run_methods(ch: Chapter) -> dict[str, dict[str, list]]:
    """{dataset: {method: runs}}: every method over the profile's seeds, recorded in the per-seed
    table with the share of anchors the distance-weighted miner found without a usable negative."""
    results = {ds: ch.results(method_arms(ch, ds)) for ds in ch.settings.datasets}
    for by_method in results.values():
        for name in (WU, PML):
            for result in by_method.get(name, []):
                ch.record(name, result, extra={FALLBACK: fallback_share(result)})
    ch.save_records()
    return results


def fallback_share(result) -> float:
    """Mean over training of the share of anchors with no negative of non-zero weight; 0 exactly
    when the fallback never fired (the per-step shares are never negative); NaN when not recorded."""
    history = result.history
    return float(history[FALLBACK].mean()) if FALLBACK in history else math.nan


def summary_table(ch: Chapter) -> pd.DataFrame:
    """Mean and sd over seeds per (dataset, method), with the counts of collapsed and diverged
    seeds (the claims ledger reads this table)."""
    return records.summary(ch.table(), SUMMARY_METRICS + [FALLBACK])


def trained_distances(run) -> dict[str, np.ndarray]:
    """The density of pairwise distances between 1,500 of a run's held-out embeddings (normalised),
    on 60 bins over [0, 2], and the embedding's dimension (kept by run: lib.derived)."""
    def compute() -> dict:
        emb = run.arrays["test_embeddings"]
        density, edges = np.histogram(geometry.pairwise_distances(emb, points=1500), bins=60, range=(0, 2),
                                      density=True)
        return {"density": density, "edges": edges, "dimension": emb.shape[1]}

    return derived.of_run(run, "sphere-distances", compute, params={"points": 1500, "bins": 60},
                          modules=("geometry",))


def gradient_noise(ch: Chapter, results: dict) -> tuple[plt.Figure, pd.DataFrame]:
    """The variance over augmentations of ∂d(a,n)/∂f(n) against d(a,n) for the first seed's Wu
    model on each data set, and per data set the mean variance of the closest and farthest
    distance octiles, their ratio and the correlation of distance and variance."""
    datasets = ch.settings.datasets
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), max(3.8, 5 * len(datasets) / 1.75)),
                             squeeze=False)
    rows = []
    for ax, ds in zip(axes[0], datasets):
        run, pairs, augmentations = results[ds][WU][0], ch.settings.gradient_pairs, ch.settings.gradient_augmentations

        def measure(run=run):
            trainer = train.load_trained(run)
            return geometry.negative_gradient_variance(trainer, trainer.splits.test, pairs=pairs,
                                                       augmentations=augmentations)

        g = derived.of_run(run, "gradient-variance", measure, params={"pairs": pairs, "augmentations": augmentations},
                           modules=("geometry", "augment", "models", "trainer"))
        edges = np.quantile(g["distance"], np.linspace(0, 1, 9))
        octile = np.clip(np.digitize(g["distance"], edges[1:-1]), 0, len(edges) - 2)
        means = [g["variance"][octile == b].mean() for b in range(len(edges) - 1)]
        ax.scatter(g["distance"], g["variance"], s=5, alpha=0.3)
        ax.plot((edges[1:] + edges[:-1]) / 2, means, "o-", color=plots.MEAN, label="mean per distance octile")
        ax.set_xlabel("d(a,n)")
        ax.set_ylabel("variance of ∂d/∂f(n)\nover augmentations")
        ax.set_title(ds)
        ax.legend(fontsize=8, loc="best")
        rows.append({"dataset": ds, "variance, closest octile": means[0], "variance, farthest octile": means[-1],
                     "ratio": means[0] / means[-1],
                     "correlation(d, variance)": np.corrcoef(g["distance"], g["variance"])[0, 1]})
    fig.tight_layout()
    return fig, pd.DataFrame(rows).set_index("dataset")


def identical_runs(table: pd.DataFrame, a: str, b: str, dataset: str) -> bool:
    """Whether two arms ran the same seeds and agree, seed by seed, on every numeric metric but
    the wall-clock timings (to floating tolerance)."""
    rows = {arm: table[(table["dataset"] == dataset) & (table["setting"] == arm)].set_index("seed").sort_index()
            for arm in (a, b)}
    if rows[a].empty or list(rows[a].index) != list(rows[b].index):
        return False
    skip = set(records.KEYS) | set(records.REGIME) | set(records.BUDGET)
    columns = [c for c in rows[a].select_dtypes("number").columns
               if c in rows[b] and c not in skip and "seconds" not in c]
    return bool(np.allclose(rows[a][columns].to_numpy(float), rows[b][columns].to_numpy(float),
                            rtol=1e-9, atol=1e-12, equal_nan=True))


def family(void_fallback: bool) -> dict[str, tuple[str, str]]:
    """One data set's comparisons, all corrected together; pml's arm enters only when its runs
    differ from Wu's (otherwise its comparisons repeat Wu's or compare a run with itself)."""
    pairs = {WHOLE: (WU, SEMI), LOSS_ONLY: (SEMI_MARGIN, SEMI), SAMPLING_ONLY: (WU, SEMI_MARGIN)}
    if not void_fallback:
        pairs |= {PML_RECIPE: (PML, SEMI), DROPPING: (PML, WU)}
    return pairs


def comparisons(ch: Chapter) -> pd.DataFrame:
    """Paired, Holm-corrected differences per (data set, metric), one family each, Recall@1 and
    MAP@R; the pml-vs-Wu comparison is a `VOID` row when the two arms' runs are identical."""
    table = ch.table()
    frames = []
    for ds in ch.settings.datasets:
        void = identical_runs(table, PML, WU, ds)
        for metric in (CLAIM_METRIC, CHECK_METRIC):
            frame = compare(table, family(void), metric, dataset=ds)
            if void:
                frame.loc[DROPPING, ["metric", "effect"]] = [metric, VOID]
            frames.append(frame.reset_index().assign(dataset=ds))
    out = pd.concat(frames, ignore_index=True)
    return out[["dataset", "metric", "comparison"] + [c for c in out if c not in ("dataset", "metric", "comparison")]]


def judged(row: pd.Series) -> str:
    """A comparison's difference and interval at its own level, and where the interval lies
    (`lib.compare.said`, the one voice); when it includes zero, the effect these seeds would detect
    at that level."""
    from lib.compare import said
    return said(row)


def ledger_said(ch: Chapter, dataset: str, a: str, b: str, metric: str = CLAIM_METRIC) -> str:
    """' — the ledger's verdict on Wu et al.'s claim: <its sentence, word for word>', or '' when the
    ledger does not judge a - b (`lib.ledger.chapter_sentence`)."""
    from lib import ledger
    said = ledger.chapter_sentence(ch, dataset, a, b, metric)
    return "" if said is None else f" — **the ledger's verdict** on Wu et al.'s claim: {said}"


def fallback_text(table: pd.DataFrame, dataset: str, rows: pd.DataFrame) -> str:
    """What the runs say about pml's anchor dropping against Wu's uniform fallback."""
    wu = table[(table["dataset"] == dataset) & (table["setting"] == WU)]
    shares = wu[FALLBACK].dropna().to_numpy(float) if FALLBACK in wu else np.array([])
    recorded, fired = len(shares) > 0, int((shares > 0).sum())
    if not recorded:
        evidence = "the runs do not record how often the fallback fired"
    elif fired:
        evidence = (f"the miner recorded anchors without a usable negative on {fired} of {len(shares)} seed(s), "
                    f"{shares.mean() * 100:.2g} % of anchors on average")
    else:
        evidence = (f"the miner recorded no anchor without a usable negative at any training step of the "
                    f"{len(shares)} seed(s)")
    row = rows.loc[DROPPING]
    if row["effect"] != VOID:
        noise = "; so the difference is run-to-run noise, not the fallback" if recorded and not fired else ""
        return (f"{PML_RECIPE}: {judged(rows.loc[PML_RECIPE])}. {DROPPING}: {judged(row)}; {evidence}{noise}.")
    why = {(True, False): f"because the fallback never fired ({evidence})",
           (True, True): f"even though {evidence}",
           (False, False): f"so the fallback never changed the training ({evidence})"}[(recorded, fired > 0)]
    return (f"{DROPPING}: **no comparison** — the two arms' runs are identical seed by seed (every metric "
            f"equal), {why}. The arms differ only in that fallback, so these runs say nothing about it, and "
            f"pml's arm is Wu's recipe over again.")


def dataset_verdict(ch: Chapter, found: pd.DataFrame, ds: str) -> str:
    """One data set's paragraph: Wu's claim on Recall@1, the loss and the sampling separated, the
    fallback, and the MAP@R check."""
    table = ch.table()
    claim = found[(found["dataset"] == ds) & (found["metric"] == CLAIM_METRIC)].set_index("comparison")
    check = found[(found["dataset"] == ds) & (found["metric"] == CHECK_METRIC)].set_index("comparison")
    means = records.summary(table, [CLAIM_METRIC]).loc[ds]

    def level(method: str) -> str:
        return fmt(means.loc[method, f"{CLAIM_METRIC} mean"], means.loc[method, f"{CLAIM_METRIC} sd"])

    whole = claim.loc[WHOLE]
    return (f"**{ds}** ({CLAIM_METRIC}, {int(whole['seeds'])} seed(s) paired; one Holm family of "
            f"{int(whole['family'])} comparisons). Wu's recipe {level(WU)} vs semi-hard triplet {level(SEMI)}: "
            f"{judged(whole)}{ledger_said(ch, ds, WU, SEMI)}. The loss alone: {judged(claim.loc[LOSS_ONLY])}. "
            f"The sampling alone: {judged(claim.loc[SAMPLING_ONLY])}. {fallback_text(table, ds, claim)} "
            f"On MAP@R, the whole ranking, Wu's recipe vs semi-hard triplet: {judged(check.loc[WHOLE])}.")


def oneshot_verdict(ch: Chapter) -> str | None:
    """The best method's one-shot accuracy on Lake's 20 runs, labelled as chosen after the fact,
    placed among the published results on the same runs; None without one-shot runs."""
    frame = ch.table()
    if "oneshot_accuracy" not in frame:
        return None
    scores = records.summary(frame[frame["dataset"] == "omniglot"], ["oneshot_accuracy"]).droplevel("dataset")
    scores = scores.dropna(subset=["oneshot_accuracy mean"])
    if scores.empty:
        return None
    best = scores["oneshot_accuracy mean"].idxmax()
    acc, sd = scores.loc[best, "oneshot_accuracy mean"], scores.loc[best, "oneshot_accuracy sd"]
    cfg = ch.config("omniglot")
    above = [who for who, v in sorted(LAKE_ANCHORS.items(), key=lambda item: item[1]) if acc > v]
    below = [who for who in LAKE_ANCHORS if who not in above]
    published = ", ".join(f"{who} at {v * 100:.1f} %" for who, v in LAKE_ANCHORS.items())
    place = ("above all three" if not below else "below all three" if not above else
             f"above {' and '.join(above)} but below {' and '.join(below)}")
    return (f"**One-shot.** Best of {len(scores)} settings on Lake's 20 within-alphabet runs, chosen after the fact "
            f"(so an optimistic figure): *{best}* with {fmt(acc, sd)}, at this profile's budget "
            f"({cfg.train.epochs} epochs at {cfg.data.image_size} px). On these same 20 runs Lake, Salakhutdinov & "
            f"Tenenbaum (2015, *Science*) report {published}; this best setting is {place}. Koch et al.'s 92.0 % is no anchor for "
            f"these runs: it was measured on their own 400 trials from a 40/10-alphabet split.")


def gradient_verdict(gradient_table: pd.DataFrame) -> str:
    """Whether close negatives had the noisier gradients on every data set (Wu's premise)."""
    ratios = gradient_table["ratio"]
    held = (ratios > 1).all()
    return ("**Gradient noise.** The variance of the gradient with respect to the negative, in the closest octile "
            "of pairs against the farthest, is "
            + ", ".join(f"{v:.1f}× on {ds}" for ds, v in ratios.items())
            + " (one seed's model, point estimates) — "
            + ("Wu's premise that close negatives give noisy gradients holds on the real network." if held
               else "Wu's premise does **not** hold on every data set here."))


def verdict(ch: Chapter, found: pd.DataFrame, gradient_table: pd.DataFrame) -> str:
    """The chapter's conclusion in Markdown: per data set the claim on Recall@1 with the loss and
    the sampling separated, the fallback, the MAP@R check; then one-shot and gradient noise."""
    parts = [dataset_verdict(ch, found, ds) for ds in ch.settings.datasets]
    parts += [text for text in (oneshot_verdict(ch),) if text]
    parts.append(gradient_verdict(gradient_table))
    return "\n\n".join(parts)


# ------------------------------------------------------------------ the same recipes, pretrained
def pretrained_arms(ch: Chapter) -> dict[str, RunConfig]:
    """`pretrained.methods` on the pretrained backbone, and `whole_network` with every stage
    trained; {} when the profile has no `pretrained` section."""
    P = ch.settings.pretrained
    if P is None:
        return {}
    arms = {m + PRETRAINED: ch.config(P.dataset, ch.settings.methods[m], P.backbone) for m in P.methods}
    if P.whole_network:
        arms[P.whole_network + WHOLE_NETWORK] = arms[P.whole_network + PRETRAINED].with_overrides(
            {"model.frozen_stages": 0})
    return arms


def run_pretrained(ch: Chapter) -> dict[str, list]:
    """`pretrained_arms` over the profile's seeds, recorded in the per-seed table."""
    return ch.results(pretrained_arms(ch))


def pretrained_pairs(ch: Chapter) -> dict[str, tuple[str, str]]:
    """Each pretrained method against itself from scratch, and what freezing costs: one family."""
    P = ch.settings.pretrained
    pairs = {f"{m}: pretrained vs scratch": (m + PRETRAINED, m) for m in P.methods}
    if P.whole_network:
        w = P.whole_network
        pairs[f"{w}: frozen stages vs whole network fine-tuned"] = (w + PRETRAINED, w + WHOLE_NETWORK)
    return pairs


def _paired_arms(pairs: dict[str, tuple[str, str]]) -> list[str]:
    return list(dict.fromkeys(arm for pair in pairs.values() for arm in pair))


def pretrained_comparisons(ch: Chapter) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary per arm with training minutes, paired comparisons on MAP@R and Recall@1, each
    metric one Holm family); empty frames when the profile has no `pretrained` section."""
    P = ch.settings.pretrained
    if P is None:
        return pd.DataFrame(), pd.DataFrame()
    table = ch.table()
    table = table[table["dataset"] == P.dataset]
    pairs = pretrained_pairs(ch)
    summary = records.summary(table, [CHECK_METRIC, CLAIM_METRIC, "train_seconds"]).droplevel("dataset")
    summary = summary.loc[[a for a in _paired_arms(pairs) if a in summary.index]]
    found = pd.concat([compare(table, pairs, metric) for metric in (CHECK_METRIC, CLAIM_METRIC)])
    ch.save_table(summary, "pretrained")
    ch.save_table(found, "pretrained-comparisons")
    return summary, found


def pretrained_verdict(ch: Chapter, summary: pd.DataFrame, found: pd.DataFrame) -> str:
    """Pretrained against scratch per method, and what freezing costs, on MAP@R then Recall@1."""
    if not len(found):
        return "This profile has no `pretrained` section: the recipes were not run on a pretrained backbone."
    P = ch.settings.pretrained
    cfg = ch.config(P.dataset, P.backbone)
    minutes = summary["train_seconds mean"] / 60

    def level(arm: str) -> str:
        return f"{fmt(summary.loc[arm, f'{CHECK_METRIC} mean'], summary.loc[arm, f'{CHECK_METRIC} sd'])} " \
               f"({minutes[arm]:.1f} training min a seed)"

    check = found[found.metric == CHECK_METRIC]
    claim = found[found.metric == CLAIM_METRIC]
    lines = [f"**Pretrained against scratch on {P.dataset}** ({backbone_words(P.backbone)}, "
             f"{cfg.data.image_size} px, {cfg.train.epochs} epochs; {CHECK_METRIC}, paired by seed, Holm over "
             f"{len(check)}):"]
    for name, (a, b) in pretrained_pairs(ch).items():
        lines.append(f"- {name}: {level(a)} against {level(b)}, {judged(check.loc[name])}; "
                     f"on {CLAIM_METRIC} {judged(claim.loc[name])}.")
    ruled = ledger_said(ch, P.dataset, WU + PRETRAINED, SEMI + PRETRAINED)
    if ruled:
        lines.append(f"- Wu's recipe against semi-hard triplet, both pretrained{ruled}.")
    return "\n".join(lines)
