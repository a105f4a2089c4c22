"""Chapter 1: the blog's beluga collapse, its symptoms, a one-factor ablation, a minimal fix
confirmed on fresh seeds, and the curse-of-dimensionality hypothesis tested where retrieval happens."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lib import compare, plots, records
from lib.config import ConfigError, RunConfig
from lib.evaluate import distance_contrast
from lib.study import Chapter, backbone_words, fmt

KEPT_AT_TEST = "projector kept at test"  # the reference arm of the dimensionality test (256-d)
FRESH = " (fresh seeds)"
PRETRAINED = "pretrained: "  # the blog's regime (`pretrained`): the same settings on an ImageNet backbone
SUMMARY = ["precision@1", "spread_ratio", "effective_rank", "collapsed", "contracted", "train_loss_over_margin"]


def blog_name(ch: Chapter) -> str:
    return f"blog (margin {ch.settings['blog']['loss']['kwargs']['margin']})"


def margin(ch: Chapter) -> float:
    return float(ch.settings["blog"]["loss"]["kwargs"]["margin"])


def _summary(ch: Chapter, settings: list[str]) -> pd.DataFrame:
    table = records.summary(ch.table(), [ch.settings["metric"], *SUMMARY]).droplevel("dataset")
    return table.loc[[s for s in settings if s in table.index]]


def reproduce(ch: Chapter) -> tuple[dict, pd.DataFrame]:
    """The blog's configuration and the same with other margins, over the profile's seeds."""
    blog = ch.config(None, ch.settings["blog"])
    arms = {blog_name(ch): blog, **{f"blog, margin {m}": blog.with_overrides(
        {"loss.kwargs.margin": m, "miner.kwargs.margin": m}) for m in ch.settings["margins"]}}
    results = ch.run_settings(arms)
    table = _summary(ch, list(arms))
    ch.save_table(table, "margins")
    return results, table


def symptoms(ch: Chapter, runs: list) -> None:
    """Loss over margin (training and held out), mined distances, and the geometry of both spaces."""
    m = margin(ch)
    hist = [r.history.assign(val_loss_over_margin=r.history.val_loss / m) for r in runs if len(r.history)]
    panels = [({"loss_over_margin": None}, "training loss / margin", 1.0),
              ({"val_loss_over_margin": None}, "held-out loss / margin", 1.0),
              ({"d_ap_mean": "d(a,p)", "d_an_mean": "d(a,n)"}, "mined distances", None),
              ({"val_loss_space_effective_rank": "space the loss sees", "val_effective_rank": "evaluated"},
               "held-out effective rank (log)", 1.5)]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.5))
    for ax, (columns, title, line) in zip(axes, panels):
        for i, (col, label) in enumerate(columns.items()):
            plots.seed_lines(ax, hist, col, label=label, color=f"C{i}")
        if line is not None:
            ax.axhline(line, color="red", ls=":")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if len(columns) > 1:
            ax.legend(fontsize=8)
    axes[3].set_yscale("log")
    ch.save(fig, "symptoms", "The blog's runs: loss over margin, mined distances, effective rank of both spaces")


def ablate(ch: Chapter) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each one-factor change against the blog, paired by seed, one Holm family."""
    blog, S = blog_name(ch), ch.settings
    changes = {n: layer for n, layer in S["ablations"].items() if n in (S.get("only_ablations") or S["ablations"])}
    ch.run_settings({name: ch.config(None, S["blog"], layer) for name, layer in changes.items()})
    family = compare.compare(ch.table(), {n: (n, blog) for n in changes}, S["metric"])
    table = _summary(ch, [blog, *changes]).join(family[["diff", "low", "high", "mde", "effect"]].add_prefix("Δ "))
    ch.save_table(table, "ablation")
    return table, family


def ablation_figure(ch: Chapter, table: pd.DataFrame) -> None:
    metric, runs = ch.settings["metric"], ch.table()
    order = table[f"{metric} mean"].sort_values().index
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(order) + 1))
    for y, name in enumerate(order):
        values = runs.loc[runs.setting == name, metric]
        ax.scatter(values, [y] * len(values), color="C0", alpha=0.5, s=18)
        ax.errorbar(table.loc[name, f"{metric} mean"], y, xerr=table.loc[name, f"{metric} sd"], fmt="o", color="C3")
    ax.set_yticks(range(len(order)), order)
    ax.set_xlabel(f"{metric} on held-out whales (dots: seeds; red: mean ± sd)")
    ch.save(fig, "ablation", "One factor at a time: each change to the blog's configuration, per seed")


def _keys(layer: dict, prefix: str = "") -> set[str]:
    keys = set()
    for k, v in layer.items():
        if isinstance(v, dict) and not k.endswith("kwargs") and v:
            keys |= _keys(v, f"{prefix}{k}.")
        else:
            keys.add(f"{prefix}{k}")
    return keys


def minimal_fix(ch: Chapter, ablation: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, list]:
    """Greedy on the profile's seeds, then confirmed on fresh ones.

    The single changes that raised the metric are added best first, one per step (a change that
    sets a key an earlier one set is skipped), up to max_fix_steps; every step is trained, none is
    skipped for a non-significant predecessor. The fix is the step with the highest mean on the
    selection seeds, which flatters it (winner's curse), so the fix and the blog are then trained
    again on `confirmation_seeds`, which chose nothing, and compared there."""
    S, metric, blog = ch.settings, ch.settings["metric"], blog_name(ch)
    fresh = [s for s in S["confirmation_seeds"] if s not in ch.seeds]
    if len(fresh) != len(S["confirmation_seeds"]):
        raise ConfigError(f"chapters.01_beluga_collapse.confirmation_seeds must be fresh: {S['confirmation_seeds']} "
                          f"overlaps the profile's seeds {ch.seeds}")
    gains = ablation["Δ diff"].drop(blog, errors="ignore").dropna()
    chosen, taken, steps = [], set(), []
    for name in gains[gains > 0].sort_values(ascending=False).index:
        if len(steps) >= S["max_fix_steps"] or _keys(S["ablations"][name]) & taken:
            continue
        chosen, taken = chosen + [name], taken | _keys(S["ablations"][name])
        setting = chosen[0] if len(chosen) == 1 else "fix: " + " + ".join(chosen)
        ch.run_settings({setting: ch.config(None, S["blog"], *[S["ablations"][c] for c in chosen])})
        steps.append({"step": len(chosen), "added": name, "setting": setting, "changes": list(chosen)})
    if not steps:
        return pd.DataFrame(), pd.DataFrame(), []
    table = pd.DataFrame(steps).set_index("step")
    runs = ch.table()
    table[f"{metric} (selection seeds)"] = [runs.loc[runs.setting == s, metric].mean() for s in table.setting]
    best = table[f"{metric} (selection seeds)"].idxmax()
    fix = ch.config(None, S["blog"], *[S["ablations"][c] for c in table.loc[best, "changes"]])
    confirmed = ch.run_settings({blog + FRESH: ch.config(None, S["blog"]), "minimal fix" + FRESH: fix}, seeds=fresh)
    confirmation = compare.compare(ch.table(), {"minimal fix vs blog": ("minimal fix" + FRESH, blog + FRESH)}, metric)
    confirmation.insert(0, "fix", " + ".join(table.loc[best, "changes"]))
    return table.drop(columns="changes"), confirmation, confirmed["minimal fix" + FRESH]


def dimensionality(ch: Chapter) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The projector's output kept at test (what retrieval then uses), at 256-d and smaller, paired
    by seed against 256-d; and the median farthest/nearest distance ratio of each evaluated space
    beside that of random Gaussian vectors of the same dimension."""
    S, metric = ch.settings, ch.settings["metric"]
    kept = ch.config(None, S["blog"], S["ablations"][KEPT_AT_TEST]) if KEPT_AT_TEST in S["ablations"] else \
        ch.config(None, S["blog"], {"model": {"projector_at_test": True}})
    width = kept.model.projector[0]
    arms = {f"embedding {d}, evaluated at {d}-d": kept.with_overrides({"model.projector": [width, d]})
            for d in S["dimensions"]}
    results = ch.run_settings({KEPT_AT_TEST: kept, **arms})
    family = compare.compare(ch.table(), {n: (n, KEPT_AT_TEST) for n in arms}, metric)
    rng = np.random.default_rng(0)
    contrast = []
    for name, runs in results.items():
        for r in runs:
            if "test_embeddings" in r.arrays:
                e = r.arrays["test_embeddings"]
                contrast.append({"setting": name, "dimension": e.shape[1], "trained": distance_contrast(e),
                                 "random Gaussian": distance_contrast(rng.normal(size=e.shape))})
    return family, pd.DataFrame(contrast)


def dimensionality_figure(ch: Chapter, contrast: pd.DataFrame) -> None:
    rng = np.random.default_rng(0)
    dims = [2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.loglog(dims, [distance_contrast(rng.normal(size=(1000, d))) for d in dims], "o-", label="random Gaussian vectors")
    if len(contrast):
        ax.scatter(contrast.dimension, contrast.trained, color="C3", s=40, zorder=3,
                   label="trained, evaluated space (one dot per seed)")
    ax.set_xlabel("dimension")
    ax.set_ylabel("median farthest / nearest distance")
    ax.legend(fontsize=8)
    ch.save(fig, "dimensionality", "Distance contrast of trained embeddings against random vectors, by dimension")


def pretrained_arms(ch: Chapter) -> dict[str, RunConfig]:
    """The blog and `pretrained.ablations`, each with the `pretrained` section's backbone overlay."""
    S, P = ch.settings, ch.settings["pretrained"]
    return {PRETRAINED + blog_name(ch): ch.config(None, S["blog"], P["backbone"]),
            **{PRETRAINED + n: ch.config(None, S["blog"], S["ablations"][n], P["backbone"]) for n in P["ablations"]}}


def pretrained_regime(ch: Chapter, ablation: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The blog's configuration and `pretrained.ablations` again on the ImageNet-pretrained backbone
    (the blog's own regime). Returns the summary per setting, with each change's paired difference
    against the pretrained blog beside the same change's from scratch (`ablation`), and the
    comparisons: the changes (one Holm family) and the pretrained blog against the scratch blog
    (its own family of one). Both empty when the profile has no `pretrained` section."""
    S, metric, blog = ch.settings, ch.settings["metric"], blog_name(ch)
    if not S.get("pretrained"):
        return pd.DataFrame(), pd.DataFrame()
    P, arms = S["pretrained"], pretrained_arms(ch)
    ch.run_settings(arms)
    changes = compare.compare(ch.table(), {PRETRAINED + n: (PRETRAINED + n, PRETRAINED + blog)
                                           for n in P["ablations"]}, metric) if P["ablations"] else pd.DataFrame()
    against_scratch = compare.compare(ch.table(), {PRETRAINED + blog: (PRETRAINED + blog, blog)}, metric)
    found = pd.concat([against_scratch, changes])
    table = _summary(ch, list(arms)).join(found[["diff", "low", "high", "mde", "effect"]].add_prefix("Δ "))
    table["Δ from scratch"] = [np.nan, *ablation.reindex(P["ablations"])["Δ diff"]]
    ch.save_table(table, "pretrained")
    return table, found


def pretrained_verdict(ch: Chapter, table: pd.DataFrame, found: pd.DataFrame) -> str:
    """What the blog's regime changes: its collapse symptoms, and which changes help, against scratch."""
    if not len(table):
        return "This profile has no `pretrained` section: the blog's pretrained regime was not run."
    metric, blog, runs = ch.settings["metric"], blog_name(ch), ch.table()
    b, s = runs[runs.setting == PRETRAINED + blog], runs[runs.setting == blog]
    lines = [f"**The blog's regime** ({backbone_words(ch.settings['pretrained']['backbone'])}): the blog's configuration gives {metric} "
             f"{fmt(b[metric].mean(), b[metric].std())} against {fmt(s[metric].mean(), s[metric].std())} from scratch, "
             f"{_judged(found.loc[PRETRAINED + blog])}. "
             f"Training loss / margin at the end: {', '.join(f'{v:.3f}' for v in b['train_loss_over_margin'])}; "
             f"collapsed in the space the loss sees on {int(b.loss_space_collapsed.sum())} of {len(b)} seeds, in the "
             f"evaluated features on {int(b.collapsed.sum())} of {len(b)} (effective rank {b['effective_rank'].mean():.1f})."]
    changes = found.drop(index=PRETRAINED + blog)
    if len(changes):
        helped = changes[changes.effect == compare.EFFECT["helps"]]
        scratch = table.loc[changes.index, "Δ from scratch"]
        same = int((np.sign(changes["diff"]) == np.sign(scratch)).sum())
        lines.append(f"Each change against the pretrained blog (paired by seed, Holm-corrected over {len(changes)}): " + (
            "; ".join(f"{n.removeprefix(PRETRAINED)} {compare.sentence(r)}" for n, r in helped.iterrows())
            + " lie above zero" if len(helped) else
            f"none has a corrected interval above zero; {compare.detectable(float(changes['mde'].min()))}") +
            f". {same} of {len(changes)} changes move {metric} the same way as they do from scratch.")
    return " ".join(lines)


def _judged(row: pd.Series) -> str:
    """A comparison's difference and effect, with its minimum detectable effect when none is detected."""
    text = f"{compare.sentence(row)}, {row['effect']}"
    return text if row["effect"] != compare.EFFECT["none"] else f"{text}; {compare.detectable(float(row['mde']))}"


def tsne_figure(ch: Chapter, blog_runs: list, fixed_runs: list) -> None:
    views = [("blog, space the loss sees", blog_runs[0], "test_loss_space_embeddings"),
             ("blog, evaluated features", blog_runs[0], "test_embeddings"),
             ("minimal fix", fixed_runs[0], "test_embeddings")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, (name, r, key) in zip(axes, views):
        if key in r.arrays:
            plots.tsne(r.arrays[key], r.arrays["test_labels"], ax, max_points=ch.settings["tsne_points"], title=name)
        else:
            ax.set_visible(False)
    fig.suptitle("t-SNE of held-out whales (the 12 most photographed in colour)")
    ch.save(fig, "tsne", "t-SNE maps of the blog's two spaces and of the minimal fix")


def verdict(ch: Chapter, margins: pd.DataFrame, family: pd.DataFrame, confirmation: pd.DataFrame,
            dims: pd.DataFrame, contrast: pd.DataFrame) -> str:
    metric, blog, runs = ch.settings["metric"], blog_name(ch), ch.table()
    b = runs[runs.setting == blog]
    row = margins.loc[blog]
    stuck = b["train_loss_over_margin"].tolist()
    lines = [f"**Reproduction.** The blog's configuration gives {metric} {fmt(row[f'{metric} mean'], row[f'{metric} sd'])} "
             f"on held-out whales (chance precision@1 {b['chance_precision@1'].mean():.3f}). Training loss / margin at the "
             f"end: {', '.join(f'{v:.3f}' for v in stuck)}. Collapsed by the scale-free test: "
             f"{int(b.loss_space_collapsed.sum())} of {len(b)} seeds in the space the loss sees "
             f"({b['loss_space_effective_rank'].mean():.2f} effective dimensions), {int(b.collapsed.sum())} of {len(b)} "
             f"in the evaluated features ({b['effective_rank'].mean():.2f} effective dimensions, precision@1 "
             f"{b['precision@1'].mean():.3f}); {int(b.contracted.sum())} of {len(b)} contracted by the older spread rule. "
             "Collapsed means retrieval no better than twice chance or fewer than 1.5 effective dimensions."]
    spread = margins[f"{metric} mean"].max() - margins[f"{metric} mean"].min()
    values = [margin(ch), *ch.settings["margins"]]
    lines.append(f"**Margins.** Margins {', '.join(map(str, values))} differ by at most {spread * 100:.1f} points of {metric}: "
                 "a hard triplet already has d(a,n) < d(a,p), so its loss is non-zero and its gradient the same "
                 "whatever the margin.")
    helped = family[family.effect == compare.EFFECT["helps"]].sort_values("diff", ascending=False)
    lines.append(f"**Causes** (each change against the blog, paired by seed, Holm-corrected over {len(family)} "
                 "changes). " + ("Changes whose corrected interval lies above zero: " + "; ".join(
                     f"{n} ({compare.sentence(r)})" for n, r in helped.iterrows()) + "." if len(helped) else
                     f"No change has a corrected interval above zero; {compare.detectable(family['mde'].min())}."))
    if len(confirmation):
        c = confirmation.iloc[0]
        lines.append(f"**Minimal fix.** Chosen on the selection seeds {ch.seeds}: {c['fix']}. On the fresh seeds "
                     f"{ch.settings['confirmation_seeds']}, which chose nothing, it changes {metric} by "
                     f"{compare.sentence(c)}: {'confirmed' if c['effect'] == compare.EFFECT['helps'] else 'not confirmed'}.")
    lines.append(_dimension_sentence(dims, contrast, metric))
    if ch.profile.name == "smoke":
        lines.append("*Smoke profile: these numbers are meaningless; the sentences above only prove the chain runs.*")
    return "\n\n".join(lines)


def _dimension_sentence(dims: pd.DataFrame, contrast: pd.DataFrame, metric: str) -> str:
    parts = [f"{n}: {compare.sentence(r)}, {r['effect']}; {compare.detectable(r['mde'])}" for n, r in dims.iterrows()]
    text = ("**The blog's hypothesis.** Shrinking the embedding that retrieval uses (against 256-d kept at test): "
            + "; ".join(parts) + ".")
    if len(contrast):
        by_dim = contrast.groupby("dimension")[["trained", "random Gaussian"]].median()
        text += " Median farthest/nearest distance ratio, trained vs random vectors of the same dimension: " + ", ".join(
            f"{d}-d {r.trained:.2f} vs {r['random Gaussian']:.2f}" for d, r in by_dim.iterrows()) + \
            " (a ratio near 1 is what would make nearest neighbours meaningless)."
    return text
