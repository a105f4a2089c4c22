"""Chapter 1: the blog's beluga collapse, its symptoms, a one-factor ablation, a minimal fix
confirmed on fresh seeds, and the curse-of-dimensionality hypothesis tested where retrieval happens."""
from __future__ import annotations

from importlib.metadata import version

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lib import compare, derived, plots, records
from lib.arms import FRESH, KEPT_AT_TEST, MINIMAL_FIX, PRETRAINED_REGIME, dimension_arm
from lib.arms import blog_name as blog_at_margin
from lib.config import ConfigError, RunConfig
from lib.evaluate import distance_contrast
from lib.study import Chapter, Diverged, backbone_words, fmt, planned_walk, walk_through

PRETRAINED = PRETRAINED_REGIME  # the blog's regime (`pretrained`): the same settings on an ImageNet backbone
SUMMARY = ["precision@1", "spread_ratio", "effective_rank", "collapsed", "contracted", "train_loss_over_margin"]


def blog_name(ch: Chapter) -> str:
    return blog_at_margin(ch.settings.blog["loss"]["kwargs"]["margin"])


def margin(ch: Chapter) -> float:
    return float(ch.settings.blog["loss"]["kwargs"]["margin"])


def _summary(ch: Chapter, settings: list[str]) -> pd.DataFrame:
    table = records.summary(ch.table(), [ch.settings.metric, *SUMMARY]).droplevel("dataset")
    return table.loc[[s for s in settings if s in table.index]]


def plan(ch: Chapter):
    """The chapter's runs (lib.runs.plan): the blog and its margins, the one-factor ablations, the
    dimension arms and the pretrained regime; then the minimal fix's steps, chosen from the
    ablations' gains; then the fix and the blog on the confirmation seeds, chosen from the steps."""
    yield [run for arms in (margin_arms(ch), ablation_arms(ch), dimension_arms(ch), pretrained_arms(ch))
           for run in ch.planned(arms)]
    yield from planned_walk(ch, _fix_walk(ch, selection_gains(ch)))


def margin_arms(ch: Chapter) -> dict[str, RunConfig]:
    """The blog's configuration and the same with other margins."""
    blog = ch.config(None, ch.settings.blog)
    return {blog_name(ch): blog, **{f"blog, margin {m}": blog.with_overrides(
        {"loss.kwargs.margin": m, "miner.kwargs.margin": m}) for m in ch.settings.margins}}


def reproduce(ch: Chapter) -> tuple[dict, pd.DataFrame]:
    """The blog's configuration and the same with other margins, over the profile's seeds."""
    arms = margin_arms(ch)
    results = ch.results(arms)
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
    ylabels = ["loss / margin", "loss / margin", "mean distance", "effective rank (log scale)"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    axes = axes.flat
    for ax, (columns, title, line), ylabel in zip(axes, panels, ylabels):
        for i, (col, label) in enumerate(columns.items()):
            plots.seed_lines(ax, hist, col, label=label, color=plots.PALETTE[i])
        if line is not None:
            ax.axhline(line, color=plots.MEAN, ls=":", label="d(a,p) = d(a,n)" if line == 1.0 else "collapse threshold")
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        plots.epoch_axis(ax)
        if len(ax.get_legend_handles_labels()[1]) > 1:
            ax.legend(fontsize=8, loc="best")
    plots.log_axis(axes[3])
    fig.tight_layout()
    ch.save(fig, "symptoms", "The blog's runs: loss over margin, mined distances, effective rank of both spaces")


def ablation_arms(ch: Chapter) -> dict[str, RunConfig]:
    """Each one-factor change to the blog's configuration (the profile's `only_ablations`, else all)."""
    section = ch.settings
    return {n: ch.config(None, section.blog, layer) for n, layer in section.ablations.items()
            if n in (section.only_ablations or section.ablations)}


def ablation_family(ch: Chapter) -> pd.DataFrame:
    """Each change against the blog, paired by seed, one Holm family (reads both arms' runs)."""
    blog, changes = blog_name(ch), ablation_arms(ch)
    ch.results({blog: ch.config(None, ch.settings.blog), **changes})
    return compare.compare(ch.table(), {n: (n, blog) for n in changes}, ch.settings.metric)


def ablate(ch: Chapter) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each one-factor change against the blog, paired by seed, one Holm family."""
    blog, section = blog_name(ch), ch.settings
    changes = ablation_arms(ch)
    family = ablation_family(ch)
    table = _summary(ch, [blog, *changes]).join(family[["diff", "low", "high", "mde", "effect"]].add_prefix("Δ "))
    ch.save_table(table, "ablation")
    return table, family


def ablation_figure(ch: Chapter, table: pd.DataFrame) -> None:
    """Each one-factor change minus the blog, paired by seed: every seed's difference as a dot, the
    mean difference with its Holm-corrected interval from the chapter's comparison table (`ablate`),
    in points of the metric, against a line at zero (the blog)."""
    metric, runs, blog = ch.settings.metric, ch.table(), blog_name(ch)
    changes = table.drop(index=blog, errors="ignore")
    rows = changes[["Δ diff", "Δ low", "Δ high"]].set_axis(["diff", "low", "high"], axis=1)
    rows = rows.sort_values("diff", ascending=False)  # the largest gain on top
    base = records.per_seed(runs, blog, metric)
    per_seed = {}
    for name in rows.index:
        change = records.per_seed(runs, name, metric)
        per_seed[name] = np.array([change[s] - base[s] for s in sorted(change.keys() & base.keys())])
    rows.index = [plots.wrap(n, 30) for n in rows.index]
    per_seed = {plots.wrap(n, 30): v for n, v in per_seed.items()}
    width = 8.5
    fig, ax = plt.subplots(figsize=(width, max(0.55 * len(rows) + 1.8, width / 1.6)))
    plots.paired_differences(ax, rows, per_seed)
    ax.set_xlabel(f"{plots.metric_name(metric)} of the change minus the blog's, same seed (percentage points)\n"
                  "small dots: seeds; large dot and bar: mean with its Holm-corrected interval; 0: the blog")
    ax.set_ylabel("one-factor change")
    ax.set_title(_ablation_takeaway(rows, metric), fontsize=11)
    fig.tight_layout()
    ch.save(fig, "ablation", "One factor at a time: each change minus the blog's configuration, paired by seed, "
                             "with its Holm-corrected interval")


def _ablation_takeaway(rows: pd.DataFrame, metric: str) -> str:
    """The figure's title: how many changes' intervals lie above or below zero (computed)."""
    if not np.isfinite(rows[["low", "high"]].to_numpy(float)).any():
        return f"Each change minus the blog ({plots.metric_name(metric)}): too few seeds for an interval"
    up, down = int((rows["low"] > 0).sum()), int((rows["high"] < 0).sum())
    return (f"{up} of {len(rows)} changes raise {plots.metric_name(metric)} above the blog's, {down} lower it "
            "(interval clear of zero)")


def _keys(layer: dict, prefix: str = "") -> set[str]:
    keys = set()
    for k, v in layer.items():
        if isinstance(v, dict) and not k.endswith("kwargs") and v:
            keys |= _keys(v, f"{prefix}{k}.")
        else:
            keys.add(f"{prefix}{k}")
    return keys


def minimal_fix(ch: Chapter) -> tuple[pd.DataFrame, pd.DataFrame, list]:
    """Greedy on the profile's seeds and on validation whales only, then confirmed on fresh seeds.

    Every choice reads the metric on validation whales (`runs.beluga.data.val_fraction` of the
    training whales, held out from training), never the test whales. The single changes that raised
    it are added best first, one per step (a change that
    sets a key an earlier one set is skipped), up to max_fix_steps; every step is trained, none is
    skipped for a non-significant predecessor. The fix is the step with the highest mean on the
    selection seeds, which flatters it (winner's curse), so the fix and the blog are then trained
    again on `confirmation_seeds`, which chose nothing, and compared there."""
    return walk_through(_fix_walk(ch, selection_gains(ch)))


def _selection(run, metric: str) -> float:
    """The run's metric at its last validation (validation whales, held out from training)."""
    values = run.history[f"val_{metric}"].dropna() if f"val_{metric}" in run.history else pd.Series(dtype=float)
    return float(values.iloc[-1]) if len(values) else np.nan


def selection_gains(ch: Chapter) -> pd.Series:
    """Each change's mean paired gain over the blog on validation whales (what the fix is chosen on)."""
    section, metric, blog = ch.settings, ch.settings.metric, blog_name(ch)
    found = ch.results({blog: ch.config(None, section.blog), **ablation_arms(ch)})
    per_seed = {name: {r.config.train.seed: _selection(r, metric) for r in runs if not isinstance(r, Diverged)}
                for name, runs in found.items()}
    return pd.Series({name: np.nanmean([v - per_seed[blog][s] for s, v in seeds.items() if s in per_seed[blog]])
                      for name, seeds in per_seed.items() if name != blog}, dtype=float)


def _fix_walk(ch: Chapter, gains: pd.Series):
    """The minimal fix as a walk that yields each batch of runs it reads ((settings, seeds), for
    the plan) before reading them, and returns (steps table, confirmation, confirmed runs)."""
    section, metric, blog = ch.settings, ch.settings.metric, blog_name(ch)
    fresh = [s for s in section.confirmation_seeds if s not in ch.seeds]
    if len(fresh) != len(section.confirmation_seeds):
        raise ConfigError(f"chapters.01_beluga_collapse.confirmation_seeds must be fresh: {section.confirmation_seeds} "
                          f"overlaps the profile's seeds {ch.seeds}")
    gains = gains.dropna()
    chosen, taken, steps, settings = [], set(), [], {}
    for name in gains[gains > 0].sort_values(ascending=False).index:
        if len(steps) >= section.max_fix_steps or _keys(section.ablations[name]) & taken:
            continue
        chosen, taken = chosen + [name], taken | _keys(section.ablations[name])
        setting = chosen[0] if len(chosen) == 1 else "fix: " + " + ".join(chosen)
        settings[setting] = ch.config(None, section.blog, *[section.ablations[c] for c in chosen])
        steps.append({"step": len(chosen), "added": name, "setting": setting, "changes": list(chosen)})
    if not steps:
        return pd.DataFrame(), pd.DataFrame(), []
    yield settings, None
    found = ch.results(settings)
    table = pd.DataFrame(steps).set_index("step")
    chosen_on = f"validation {metric} (selection seeds)"
    table[chosen_on] = [np.nanmean([_selection(r, metric) for r in found[s] if not isinstance(r, Diverged)])
                        for s in table.setting]
    best = table[chosen_on].idxmax()
    fix = ch.config(None, section.blog, *[section.ablations[c] for c in table.loc[best, "changes"]])
    confirmation_arms = {blog + FRESH: ch.config(None, section.blog), MINIMAL_FIX + FRESH: fix}
    yield confirmation_arms, fresh
    confirmed = ch.results(confirmation_arms, seeds=fresh)
    confirmation = compare.compare(ch.table(), {"minimal fix vs blog": (MINIMAL_FIX + FRESH, blog + FRESH)}, metric)
    confirmation.insert(0, "fix", " + ".join(table.loc[best, "changes"]))
    return table.drop(columns="changes"), confirmation, confirmed[MINIMAL_FIX + FRESH]


def dimensionality(ch: Chapter) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The projector's output kept at test (what retrieval then uses), at 256-d and smaller, paired
    by seed against 256-d; and the median farthest/nearest distance ratio of each evaluated space
    beside that of random Gaussian vectors of the same dimension."""
    metric = ch.settings.metric
    every = dimension_arms(ch)
    arms = {n: c for n, c in every.items() if n != KEPT_AT_TEST}
    results = ch.results(every)
    family = compare.compare(ch.table(), {n: (n, KEPT_AT_TEST) for n in arms}, metric)
    contrast = [{"setting": name, **_contrast(r)} for name, runs in results.items() for r in runs
                 if not isinstance(r, Diverged)]
    return family, pd.DataFrame(contrast)


def _contrast(run) -> dict:
    """The run's held-out distance contrast beside that of random Gaussian vectors of its shape."""
    def compute() -> dict:
        e = run.arrays["test_embeddings"]
        return {"dimension": e.shape[1], "trained": distance_contrast(e),
                "random Gaussian": distance_contrast(np.random.default_rng(run.config.train.seed).normal(size=e.shape))}

    kept = derived.of_run(run, "distance-contrast", compute, modules=("evaluate",))
    return {k: v.item() for k, v in kept.items()}


def dimension_arms(ch: Chapter) -> dict[str, RunConfig]:
    """The projector kept at test (256-d, the reference) and the same at each smaller dimension."""
    section = ch.settings
    kept = ch.config(None, section.blog, section.ablations[KEPT_AT_TEST]) if KEPT_AT_TEST in section.ablations else \
        ch.config(None, section.blog, {"model": {"projector_at_test": True}})
    width = kept.model.projector[0]
    return {KEPT_AT_TEST: kept, **{dimension_arm(d): kept.with_overrides({"model.projector": [width, d]})
                                   for d in section.dimensions}}


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
    ax.legend(fontsize=8, loc="best")
    ch.save(fig, "dimensionality", "Distance contrast of trained embeddings against random vectors, by dimension")


def pretrained_arms(ch: Chapter) -> dict[str, RunConfig]:
    """The blog and `pretrained.ablations`, each with the `pretrained` section's backbone overlay."""
    section, pretrained = ch.settings, ch.settings.pretrained
    if pretrained is None:
        return {}
    return {PRETRAINED + blog_name(ch): ch.config(None, section.blog, pretrained.backbone),
            **{PRETRAINED + n: ch.config(None, section.blog, section.ablations[n], pretrained.backbone) for n in pretrained.ablations}}


def pretrained_regime(ch: Chapter, ablation: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The blog's configuration and `pretrained.ablations` again on the ImageNet-pretrained backbone
    (the blog's own regime). Returns the summary per setting, with each change's paired difference
    against the pretrained blog beside the same change's from scratch (`ablation`), and the
    comparisons: the changes (one Holm family) and the pretrained blog against the scratch blog
    (its own family of one). Both empty when the profile has no `pretrained` section."""
    section, metric, blog = ch.settings, ch.settings.metric, blog_name(ch)
    if section.pretrained is None:
        return pd.DataFrame(), pd.DataFrame()
    pretrained, arms = section.pretrained, pretrained_arms(ch)
    ch.results(arms)
    changes = compare.compare(ch.table(), {PRETRAINED + n: (PRETRAINED + n, PRETRAINED + blog)
                                           for n in pretrained.ablations}, metric) if pretrained.ablations else pd.DataFrame()
    against_scratch = compare.compare(ch.table(), {PRETRAINED + blog: (PRETRAINED + blog, blog)}, metric)
    found = pd.concat([against_scratch, changes])
    table = _summary(ch, list(arms)).join(found[["diff", "low", "high", "mde", "effect"]].add_prefix("Δ "))
    table["Δ from scratch"] = [np.nan, *ablation.reindex(pretrained.ablations)["Δ diff"]]
    ch.save_table(table, "pretrained")
    return table, found


def pretrained_verdict(ch: Chapter, table: pd.DataFrame, found: pd.DataFrame) -> str:
    """What the blog's regime changes: its collapse symptoms, and which changes help, against scratch."""
    if not len(table):
        return "This profile has no `pretrained` section: the blog's pretrained regime was not run."
    metric, blog, runs = ch.settings.metric, blog_name(ch), ch.table()
    b, s = runs[runs.setting == PRETRAINED + blog], runs[runs.setting == blog]
    lines = [f"**The blog's regime** ({backbone_words(ch.settings.pretrained.backbone)}): the blog's configuration gives {metric} "
             f"{fmt(b[metric].mean(), b[metric].std())} against {fmt(s[metric].mean(), s[metric].std())} from scratch, "
             f"{_judged(found.loc[PRETRAINED + blog])}. "
             f"Training loss / margin at the end: {', '.join(f'{v:.3f}' for v in b['train_loss_over_margin'])}; "
             f"collapsed in the space the loss sees on {int(b.loss_space_collapsed.sum())} of {len(b)} seeds, in the "
             f"evaluated features on {int(b.collapsed.sum())} of {len(b)} (effective rank {b['effective_rank'].mean():.1f})."]
    changes = found.drop(index=PRETRAINED + blog)
    if len(changes):
        scratch = table.loc[changes.index, "Δ from scratch"]
        same = int((np.sign(changes["diff"]) == np.sign(scratch)).sum())
        lines.append(f"Each change against the pretrained blog (paired by seed, Holm-corrected over {len(changes)}): "
                     + "; ".join(f"{n.removeprefix(PRETRAINED)}: {compare.said(r)}" for n, r in changes.iterrows())
                     + f". {same} of {len(changes)} changes move {metric} the same way as they do from scratch.")
    return " ".join(lines)


def _judged(row: pd.Series) -> str:
    """A comparison at its level and where its interval lies (`lib.compare.said`, the one voice), with
    the effect these seeds would detect when it includes zero."""
    return compare.said(row)


def _ledger_verdicts(ch: Chapter) -> dict[tuple[str, str], str]:
    """{(a, b): the claims ledger's verdict sentence, word for word} for this chapter's judged arms."""
    from lib import ledger
    return {(c.a, c.b): said for c, _, said in ledger.chapter_verdicts(ch)}


def tsne_figure(ch: Chapter, blog_runs: list, fixed_runs: list) -> None:
    views = [("blog, space the loss sees", blog_runs[0], "test_loss_space_embeddings"),
             ("blog, evaluated features", blog_runs[0], "test_embeddings"),
             (MINIMAL_FIX, fixed_runs[0], "test_embeddings")]
    fig, axes = plots.panel_grid(len(views), ncols=2, figsize=(10, 9.5))
    for ax, (name, r, key) in zip(axes, views):
        points = ch.settings.tsne_points
        kept = derived.of_run(r, "tsne", lambda r=r, key=key: plots.tsne_map(
            r.arrays[key], r.arrays["test_labels"], max_points=points) if key in r.arrays else {},
            params={"array": key, "points": points, "seed": 0, "openTSNE": version("openTSNE")}, modules=("plots",))
        if kept:
            plots.draw_map(ax, kept["z"], kept["labels"], title=name)
        else:
            ax.set_visible(False)
    fig.suptitle("t-SNE of held-out whales (the 12 most photographed in colour)")
    ch.save(fig, "tsne", "t-SNE maps of the blog's two spaces and of the minimal fix")


def verdict(ch: Chapter, margins: pd.DataFrame, family: pd.DataFrame, confirmation: pd.DataFrame,
            dims: pd.DataFrame, contrast: pd.DataFrame) -> str:
    metric, blog, runs = ch.settings.metric, blog_name(ch), ch.table()
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
    values = [margin(ch), *ch.settings.margins]
    if spread == 0:
        lines.append(f"**Margins.** Margins {', '.join(map(str, values))} give the same {metric} in every seed: the "
                     "hard miner keeps the triplets with d(a,n) < d(a,p) whatever the margin, their loss is non-zero, "
                     "and the margin only adds a constant to it, so the gradient does not change.")
    else:
        lines.append(f"**Margins** (exploratory, not tested). Margins {', '.join(map(str, values))} differ by up to "
                     f"{spread * 100:.1f} points of {metric} in the mean, so here the margin does change training.")
    ordered = family.sort_values("diff", ascending=False)
    lines.append(f"**Causes** (each change against the blog, paired by seed, Holm-corrected over {len(family)} "
                 "changes): " + "; ".join(f"{n}: {compare.said(r)}" for n, r in ordered.iterrows()) + ".")
    ruled = _ledger_verdicts(ch)
    if len(confirmation):
        c = confirmation.iloc[0]
        said = ruled.get((MINIMAL_FIX + FRESH, blog + FRESH))
        lines.append(f"**Minimal fix.** Chosen on validation whales (held out from training) of the selection seeds "
                     f"{ch.seeds}, never on the test whales: {c['fix']}. On the test whales of the fresh seeds "
                     f"{ch.settings.confirmation_seeds}, which chose nothing, its gain in {metric} over the blog: "
                     f"{compare.said(c)}." + (f" **The ledger's verdict:** {said}." if said else ""))
    lines.append(_dimension_sentence(dims, contrast, metric))
    lines += [f"**The ledger's verdict** on the blog's hypothesis ({a} against {b}): {said}."
              for (a, b), said in ruled.items() if b == KEPT_AT_TEST]
    if ch.profile.name == "smoke":
        lines.append("*Smoke profile: these numbers are meaningless; the sentences above only prove the chain runs.*")
    return "\n\n".join(lines)


def _dimension_sentence(dims: pd.DataFrame, contrast: pd.DataFrame, metric: str) -> str:
    parts = [f"{n}: {compare.said(r)}" for n, r in dims.iterrows()]
    text = ("**The blog's hypothesis.** Shrinking the embedding that retrieval uses (against 256-d kept at test): "
            + "; ".join(parts) + ".")
    if len(contrast):
        by_dim = contrast.groupby("dimension")[["trained", "random Gaussian"]].median()
        text += " Median farthest/nearest distance ratio, trained vs random vectors of the same dimension: " + ", ".join(
            f"{d}-d {r.trained:.2f} vs {r['random Gaussian']:.2f}" for d, r in by_dim.iterrows()) + \
            " (a ratio near 1 is what would make nearest neighbours meaningless)."
    return text
