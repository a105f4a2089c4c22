"""The chapters' figures, fit for a slide: each figure function is rendered on small hand-made
inputs (per-seed tables and training histories as pandas frames, in the full profile's settings)
and checked by `check_slide` (FIGURE_DUMP=<folder> keeps each as a PNG to look at): width/height at most 16:9, every axis labelled (image and map axes
without ticks excepted), and every legend placed by loc="best" or outside all the axes. Figure
by figure, the tests also check what the figure must show (paired differences with a zero line,
integer epochs, the validation cut named, ...). Nothing here trains or reads a run; the last
test, marked slow, checks the PNGs a smoke render left in figures/smoke/.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from lib import ledger, plots, records  # noqa: E402
from lib.chapters import beluga_collapse as collapse  # noqa: E402
from lib.chapters import claims_ledger as claims  # noqa: E402
from lib.chapters import (distance_weighted, divide_and_conquer, mining, oneshot_record, quickstart,  # noqa: E402
                          reidentification)
from lib.chapters import distance_weighted_figures, divide_and_conquer_figures, reidentification_figures  # noqa: E402
from lib.config import load_profile  # noqa: E402
from lib.stats import Verdict  # noqa: E402
from lib.study import Chapter, divide_setting  # noqa: E402

PROFILE = "full"  # the settings (arm names, grids) the hand-made inputs follow
SEEDS = [0, 1, 2]
TOLERANCE = 1.03  # on the aspect ratio: tight bounding boxes move by a few pixels


# ----------------------------------------------------------------------------- the slide check
def _is_map(ax) -> bool:
    """An image or map panel: no ticks on either axis (t-SNE maps, retrieval thumbnails)."""
    return len(ax.get_xticks()) == 0 and len(ax.get_yticks()) == 0


def _labelled(ax, axis: str) -> bool:
    """The axis has a label, or shows no tick labels and shares the axis with a labelled panel."""
    if getattr(ax, f"get_{axis}label")().strip():
        return True
    ticks = [t for t in getattr(ax, f"get_{axis}ticklabels")() if t.get_visible() and t.get_text()]
    siblings = getattr(ax, f"get_shared_{axis}_axes")().get_siblings(ax)
    return not ticks and any(getattr(s, f"get_{axis}label")().strip() for s in siblings if s is not ax)


def _overlap(a, b, slack: float = 1.0) -> bool:
    return a.x0 < b.x1 - slack and b.x0 < a.x1 - slack and a.y0 < b.y1 - slack and b.y0 < a.y1 - slack


def check_slide(fig: plt.Figure, what: str = "") -> None:
    """Assert the house rules of lib.plots on a built figure."""
    if not hasattr(fig.canvas, "get_renderer"):  # a figure the chapter closed after saving it
        FigureCanvasAgg(fig)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.get_tightbbox(renderer)  # what savefig(bbox_inches="tight") keeps
    aspect = box.width / box.height
    if os.environ.get("FIGURE_DUMP") and what:  # FIGURE_DUMP=<folder>: keep each checked figure to look at
        fig.savefig(Path(os.environ["FIGURE_DUMP"]) / f"{what.replace(' ', '_')}.png", dpi=70, bbox_inches="tight")
    assert aspect <= plots.MAX_ASPECT * TOLERANCE, f"{what}: aspect {aspect:.2f} > 16:9"
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
    for ax in panels:
        if _is_map(ax):
            continue
        name = f"{what}: panel {ax.get_title()!r}"
        assert _labelled(ax, "x"), f"{name} has no x label"
        assert _labelled(ax, "y"), f"{name} has no y label"
    legends = [(ax.get_legend(), ax) for ax in panels if ax.get_legend() is not None] + [(lg, None) for lg in fig.legends]
    for legend, _ in legends:
        if not legend.get_visible() or legend._loc == 0:  # loc="best"
            continue
        extent = legend.get_window_extent(renderer)
        for ax in panels:
            assert not _overlap(extent, ax.get_window_extent(renderer)), \
                f"{what}: a legend placed at loc={legend._loc} lies over the panel {ax.get_title()!r}"


# ----------------------------------------------------------------------------- hand-made inputs
EDGES = np.linspace(0, 2, 41)


def history(epochs: int = 3, seed: int = 0, *, fallback: float = 0.0, hard: bool = False) -> pd.DataFrame:
    """A trainer's per-epoch history (lib.train's columns) that looks like a run's."""
    rng = np.random.default_rng(seed)
    rows = []
    for e in range(1, epochs + 1):
        if hard:  # every selected negative in the first bin: a histogram 'clipped' at one bin
            counts = np.zeros(len(EDGES) - 1)
            counts[0] = 500
        else:
            counts = np.histogram(rng.normal(0.9 + 0.05 * e, 0.25, 500), bins=EDGES)[0]
        rows.append({
            "epoch": e, "loss": 0.05, "loss_over_margin": 0.9 - 0.05 * e + rng.normal(0, 0.01),
            "nonzero_fraction": 1.0, "grad_norm": 1.0 + rng.normal(0, 0.05), "d_ap_mean": 0.7 + 0.02 * e,
            "d_an_mean": 0.9 + 0.05 * e, "d_an_hist": counts.tolist(), "d_an_hist_edges": EDGES.tolist(),
            "val_recall@1": 0.5 + 0.05 * e + rng.normal(0, 0.01), "val_map@r": 0.2 + 0.03 * e + rng.normal(0, 0.01),
            "val_spread_ratio": 0.5 + rng.normal(0, 0.02), "val_effective_rank": 30 + rng.normal(0, 1),
            "val_loss_space_effective_rank": 1.2 + rng.normal(0, 0.05), "val_loss": 0.5,
            "beta": 1.2 - 0.1 * e + rng.normal(0, 0.01), "zero_weight_fraction": fallback * e,
            "cluster_kept_fraction": 0.8 + rng.normal(0, 0.02), "train_seconds": 10.0, "cluster_seconds": 1.0,
        })
    return pd.DataFrame(rows)


def run(seed: int = 0, config=None, metrics: dict | None = None, **kw) -> SimpleNamespace:
    """A finished run as the chapters read it (lib.results.RunResult's fields)."""
    cfg = config.with_overrides({"train.seed": seed}) if config is not None else None
    return SimpleNamespace(history=history(seed=seed, **kw), metrics=metrics or {}, config=cfg, key=f"k{seed}",
                           arrays={})


def per_seed(arms: dict[str, list[float]], metric: str, dataset: str = "beluga", **columns) -> pd.DataFrame:
    """A chapter's per-seed table (lib.records): one row per (dataset, setting, seed)."""
    rows = [{"chapter": "x", "dataset": dataset, "setting": name, "seed": s, metric: v,
             **{c: f(name, s) for c, f in columns.items()}}
            for name, values in arms.items() for s, v in zip(SEEDS, values)]
    return pd.DataFrame(rows)


@pytest.fixture
def chapter(tmp_path, monkeypatch):
    """A real Chapter in the full profile's settings whose per-seed table is hand-made and whose
    figures are kept in `ch.saved` (and written under tmp_path, never in figures/)."""
    def make(name: str, table: pd.DataFrame | None = None) -> Chapter:
        ch = Chapter(name, PROFILE)
        ch.figure_dir = tmp_path
        ch.saved, ch.frame = {}, table
        monkeypatch.setattr(ch, "table", lambda: ch.frame)
        monkeypatch.setattr(ch, "save", lambda fig, figure, caption="": ch.saved.__setitem__(figure, (fig, caption)))
        return ch
    yield make
    plt.close("all")


def _lines(ax) -> list[Line2D]:
    return [line for line in ax.get_lines() if len(line.get_xdata())]


def _zero_line(ax, axis: str = "x") -> bool:
    """A straight line at 0 across the axes (axvline for axis x, axhline for y)."""
    for line in _lines(ax):
        x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
        values = x if axis == "x" else y
        if len(values) == 2 and np.allclose(values, 0):
            return True
    return False


# ----------------------------------------------------------------------------- chapter 0
def test_quickstart_diagnostics_has_the_rank_panel_labels_and_the_validation_cut(chapter) -> None:
    ch = chapter("00_quickstart")
    results = [run(s, ch.config()) for s in SEEDS]
    quickstart.diagnostics(ch, results)
    fig, caption = ch.saved["diagnostics"]
    check_slide(fig, "00 diagnostics")
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert any("effective rank" in t for t in titles), titles  # the panel the notebook describes
    assert not any("non-zero" in t for t in titles), "a flat panel at 100 % carries no information"
    assert "non-zero loss: 100 % at every epoch" in fig._suptitle.get_text()
    validation = next(t for t in titles if t.startswith("validation retrieval"))
    assert "3,000" in validation and "3,000" in caption  # the cut, beside the final test on the whole split
    assert all(not ax.get_visible() or ax.axison for ax in fig.axes)  # no empty slot
    score = next(ax for ax in fig.axes if ax.get_title().startswith("validation retrieval"))
    assert max(max(line.get_ydata()) for line in _lines(score)) > 1  # in %, not a fraction
    check_slide(ch.saved["negative-distances"][0], "00 negative distances")


# ----------------------------------------------------------------------------- chapter 1
def _ablation_inputs(ch):
    metric, blog = ch.settings.metric, collapse.blog_name(ch)
    changes = list(collapse.ablation_arms(ch))
    base = [0.040, 0.045, 0.038]
    arms = {blog: base, **{n: [b + 0.004 * (i - 3) + 0.002 * s for s, b in enumerate(base)]
                           for i, n in enumerate(changes)}}
    runs = per_seed(arms, metric)
    means = runs.groupby("setting")[metric].agg(["mean", "std"])
    table = pd.DataFrame({f"{metric} mean": means["mean"], f"{metric} sd": means["std"]}).loc[[blog, *changes]]
    diffs = {n: np.mean(arms[n]) - np.mean(base) for n in changes}
    table["Δ diff"] = pd.Series(diffs)
    table["Δ low"], table["Δ high"] = table["Δ diff"] - 0.006, table["Δ diff"] + 0.006
    return runs, table


def test_collapse_ablation_shows_paired_differences_in_points_with_a_zero_line(chapter) -> None:
    ch = chapter("01_beluga_collapse")
    runs, table = _ablation_inputs(ch)
    ch.frame = runs
    collapse.ablation_figure(ch, table)
    fig, _ = ch.saved["ablation"]
    check_slide(fig, "01 ablation")
    ax = fig.axes[0]
    assert _zero_line(ax, "x")
    assert "percentage points" in ax.get_xlabel() and "minus the blog" in ax.get_xlabel()
    labels = [t.get_text().replace("\n", " ") for t in ax.get_yticklabels()]
    assert collapse.blog_name(ch) not in labels and len(labels) == len(table) - 1  # the blog is the zero line
    # the dots are per-seed differences in points: lr 1e-3 etc. lie within a few points of zero
    xs = np.concatenate([c.get_offsets()[:, 0] for c in ax.collections if isinstance(c, PathCollection)])
    assert np.abs(xs).max() < 5
    assert "changes raise" in ax.get_title()


def test_collapse_symptoms_dimensionality_and_tsne_fit_a_slide(chapter, monkeypatch) -> None:
    ch = chapter("01_beluga_collapse")
    collapse.symptoms(ch, [run(s) for s in SEEDS])
    check_slide(ch.saved["symptoms"][0], "01 symptoms")
    contrast = pd.DataFrame({"setting": "x", "dimension": [16, 256], "trained": [1.8, 1.3],
                             "random Gaussian": [1.9, 1.2]})
    collapse.dimensionality_figure(ch, contrast)
    check_slide(ch.saved["dimensionality"][0], "01 dimensionality")
    rng = np.random.default_rng(0)
    monkeypatch.setattr(collapse.derived, "of_run", lambda r, name, compute, **kw: {
        "z": rng.normal(size=(60, 2)), "labels": rng.integers(0, 15, 60)})
    collapse.tsne_figure(ch, [run(0)], [run(0)])
    check_slide(ch.saved["tsne"][0], "01 tsne")


# ----------------------------------------------------------------------------- chapter 2
def _mining_results(ch, hard: str | None = None):
    return {ds: {name: [run(s, ch.config(ds), {"map@r": 0.2 + 0.01 * s}, hard=(name == hard), epochs=3)
                        for s in SEEDS] for name in ch.settings.strategies}
            for ds in ch.settings.datasets}


def test_mining_selected_negatives_are_shares_with_d_ap_and_the_margin(chapter) -> None:
    ch = chapter("02_mining")
    fig = mining.selected_negatives_figure(ch, _mining_results(ch, hard=mining.HARD))
    check_slide(fig, "02 selected negatives")
    hard = next(ax for ax in fig.axes if ax.get_title() == mining.HARD)
    assert hard.get_ylim()[1] >= 100  # all in one bin reads 100 %, not a bar cut at the top
    verticals = [line for line in _lines(hard) if len(set(line.get_xdata())) == 1]
    assert len(verticals) >= 3  # each epoch's mean d(a,p)
    assert hard.patches, "the semi-hard band d(a,p) to d(a,p) + α"
    assert "%" in fig.axes[0].get_ylabel()


def test_mining_curves_have_integer_epochs_a_clear_legend_and_the_validation_cut(chapter) -> None:
    ch = chapter("02_mining")
    fig = mining.curves_figure(ch, _mining_results(ch))
    check_slide(fig, "02 curves")
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert all(float(t).is_integer() for t in ticks), (ax.get_title(), ticks)
    assert not any(ax.get_legend() for ax in fig.axes) and fig.legends  # one legend, below the panels
    assert "3,000" in fig._suptitle.get_text()  # per-epoch validation on a cut, unlike the tables
    map_panel = next(ax for ax in fig.axes if "MAP@R" in ax.get_title())
    assert "%" in map_panel.get_ylabel()


def test_mining_map_and_margin_figures_fit_a_slide(chapter) -> None:
    sweep = load_profile(PROFILE).chapter("02_mining")["margin_sweep"]
    arms = {mining.margin_setting(n, m): [0.2, 0.21, 0.22] for n in sweep["strategies"] for m in sweep["margins"]}
    ch = chapter("02_mining", per_seed(arms, "map@r", sweep["dataset"]))
    check_slide(mining.map_figure(ch, _mining_results(ch)), "02 map by strategy")
    check_slide(mining.margin_figure(ch), "02 margin")


# ----------------------------------------------------------------------------- chapter 3
def _dw_results(ch, fallback: float = 0.0):
    return {ds: {name: [run(s, ch.config(ds), {"recall@1": 0.5, "map@r": 0.2},
                            fallback=fallback if "distance-weighted" in name else 0.0) for s in SEEDS]
                 for name in ch.settings.methods} for ds in ch.settings.datasets}


def test_beta_and_fallback_drops_flat_panels_and_fits_16_9(chapter) -> None:
    ch = chapter("03_distance_weighted")
    fig = distance_weighted_figures.beta_and_fallback_figure(ch, _dw_results(ch, fallback=0.0))
    check_slide(fig, "03 beta and fallback (never fired)")
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert len(shown) == len(ch.settings.datasets)  # the all-zero panels are gone ...
    assert "never fired" in fig._suptitle.get_text()  # ... and said in words
    fig = distance_weighted_figures.beta_and_fallback_figure(ch, _dw_results(ch, fallback=0.01))
    check_slide(fig, "03 beta and fallback (fired)")
    assert sum("all-zero" in ax.get_title() for ax in fig.axes) == len(ch.settings.datasets)


def test_distance_weighted_other_figures_fit_a_slide(chapter, monkeypatch) -> None:
    ch = chapter("03_distance_weighted")
    results = _dw_results(ch)
    check_slide(distance_weighted_figures.seed_dots_figure(ch, results), "03 map by method")
    check_slide(distance_weighted_figures.sphere_density_figure(ch, {}), "03 sphere density")
    rng = np.random.default_rng(0)
    monkeypatch.setattr(distance_weighted.derived, "of_run", lambda r, name, compute, **kw: {
        "distance": rng.uniform(0.2, 1.4, 80), "variance": rng.uniform(0, 1, 80)})
    fig, _ = distance_weighted.gradient_noise(ch, results)
    check_slide(fig, "03 gradient variance")
    pretrained = {arm: [run(s) for s in SEEDS] for arm in distance_weighted.pretrained_arms(ch)}
    check_slide(distance_weighted_figures.pretrained_figure(ch, results, pretrained), "03 pretrained")


# ----------------------------------------------------------------------------- chapter 4
def _grid_table(ch) -> pd.DataFrame:
    frames, rng = [], np.random.default_rng(0)
    for ds in ch.settings.datasets:
        arms = {name: [0.25 + 0.002 * k + 0.003 * s + rng.normal(0, 0.002) for s in range(len(SEEDS))]
                for name, (k, m) in divide_and_conquer.grid(ch).items()}
        frames.append(per_seed(arms, "map@r", ds, **{"recall@1": lambda n, s: 0.5 + 0.01 * s}))
    return pd.concat(frames, ignore_index=True)


def test_map_vs_k_shows_paired_points_with_intervals_without_magnifying_noise(chapter) -> None:
    ch = chapter("04_divide_and_conquer")
    ch.frame = _grid_table(ch)
    fig = divide_and_conquer_figures.accuracy_against_grid(ch)
    check_slide(fig, "04 map vs k")
    for ax in fig.axes:
        assert _zero_line(ax, "y"), ax.get_ylabel()
        joined = [line for line in _lines(ax) if len(line.get_xdata()) > 1 and not np.allclose(line.get_ydata(), 0)]
        assert not joined, "no line joins separate arms"
        low, high = ax.get_ylim()
        assert high - low >= 2 * divide_and_conquer_figures.MIN_SPAN  # differences of 0.2 points are not blown up
        assert "minus K = 1" in ax.get_ylabel() and "points" in ax.get_ylabel()
    assert "minus one learner" in fig._suptitle.get_text()


def test_divide_and_conquer_other_figures_fit_a_slide(chapter, monkeypatch) -> None:
    ch = chapter("04_divide_and_conquer")
    results = {ds: {name: [run(s, divide_setting(ch, ds, k, m), {"recall@1": 0.5}) for s in SEEDS]
                    for name, (k, m) in divide_and_conquer.grid(ch).items()} for ds in ch.settings.datasets}
    check_slide(divide_and_conquer_figures.learning_curves(ch, results), "04 learning curves")
    check_slide(divide_and_conquer_figures.clusters_and_cost(ch, results), "04 clusters and cost")
    rng = np.random.default_rng(0)
    monkeypatch.setattr(divide_and_conquer_figures.derived, "of_run", lambda r, name, compute, **kw: {
        "z": rng.normal(size=(60, 2)), "learner": rng.integers(-1, 2, 60)})
    check_slide(divide_and_conquer_figures.learners_map(ch, results), "04 tsne by learner")
    arms = list(divide_and_conquer.budget_arms(ch))
    multiples = ch.settings.budgets
    budget_runs = {m: {arm: [run(s, metrics={"recall@1": 0.5 + 0.01 * s}) for s in SEEDS] for arm in arms}
                   for m in multiples}
    gap = pd.DataFrame([{"arm": arm, "epochs": 5 * m, "diff": 0.01, "low": -0.01, "high": 0.03}
                        for arm in arms[1:] for m in multiples])
    check_slide(divide_and_conquer_figures.budget_figure(ch, budget_runs, gap), "04 budgets")
    check_slide(divide_and_conquer_figures.budget_curves(ch, budget_runs), "04 budget curves")


# ----------------------------------------------------------------------------- chapter 5
def _reid_table(ch) -> pd.DataFrame:
    m = reidentification.Metrics(ch)
    names = list(reidentification.recipes(ch, None))
    rng = np.random.default_rng(0)
    rows = []
    for i, name in enumerate(names):
        for s in SEEDS:
            row = {"chapter": "x", "dataset": "beluga", "setting": name, "seed": s, "open-set threshold": 0.5,
                   "new AUC": 0.6 + 0.01 * i}
            row.update({c: rng.uniform(0.02, 0.4) for c in m.reported if c not in row})
            rows.append(row)
    return pd.DataFrame(rows)


def test_scenarios_name_their_queries_and_fit_16_9(chapter) -> None:
    ch = chapter("05_reidentification")
    table = _reid_table(ch)
    queries = dict(zip(reidentification.SCENARIOS, (123, 456, 10)))
    fig = reidentification_figures.scenario_figure(ch, table, queries=queries)
    check_slide(fig, "05 scenarios")
    titles = [ax.get_title() for ax in fig.axes]
    assert any("(10 queries)" in t for t in titles) and all("queries" in t for t in titles)
    assert "%" in fig.axes[0].get_xlabel()


def test_catalogue_is_small_multiples(chapter) -> None:
    ch = chapter("05_reidentification")
    table = _reid_table(ch)
    fig = reidentification_figures.catalogue_figure(ch, table)
    check_slide(fig, "05 catalogue and averaging")
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert len(shown) == table["setting"].nunique()
    assert all(len(_lines(ax)) <= 2 * 3 for ax in shown)  # two lines a panel (error-bar caps aside)
    assert "recipes" in fig._suptitle.get_text()


def test_new_individual_roc_annotates_the_chosen_thresholds_clear_of_the_curves(chapter, monkeypatch) -> None:
    ch = chapter("05_reidentification")
    table = _reid_table(ch)
    rng = np.random.default_rng(1)
    is_new = rng.random(80) < 0.5
    score = rng.normal(0.5, 0.1, 80) + 0.1 * is_new
    monkeypatch.setattr(reidentification.derived, "of_run", lambda r, name, compute, **kw: {
        "score": score, "is_new": is_new})
    monkeypatch.setattr(reidentification_figures, "_test_half", lambda ch, split: None)
    cfg = load_profile(PROFILE).run_config("beluga")
    results = {name: [run(s, cfg) for s in SEEDS] for name in table["setting"].unique()}
    fig = reidentification_figures.new_whale_roc(ch, results, None, table)
    check_slide(fig, "05 roc")
    legend = fig.axes[0].get_legend()
    texts = [t.get_text() for t in legend.get_texts()]
    assert sum("of known whales called new" in t for t in texts) == len(results)
    assert "known whales new" in fig.axes[0].get_title()
    assert fig.axes[0].get_xlim()[1] > 50  # in %


# ----------------------------------------------------------------------------- chapter 6
def test_oneshot_per_run_fits_a_slide(chapter) -> None:
    ch = chapter("06_oneshot_record")
    accuracy = np.random.default_rng(0).uniform(0.6, 0.95, size=(3, 20))
    check_slide(oneshot_record.per_run_figure(ch, accuracy), "06 per run")


# ----------------------------------------------------------------------------- chapter 7
def _claims_frame(ch) -> pd.DataFrame:
    source = load_profile(ch.settings.tables_from)
    declaration = ledger.declaration_for(source)
    declared = {c.key: c for c in declaration.claims} if declaration else {}
    rows = []
    for i, c in enumerate(x for x in ledger.claims(source) if isinstance(x, ledger.Comparison)):
        d = declared.get((c.chapter, c.dataset, c.a, c.b, c.metric))
        diff = 0.01 * (i - 4)
        verdict = Verdict.INCONCLUSIVE if i % 3 else Verdict.NO_EFFECT
        rows.append({"section": "confirmatory" if d else "exploratory", "id": d.id if d else "", "claim": c.claim,
                     "source": c.source, "dataset": c.dataset, "metric": c.metric, "diff": diff, "low": diff - 0.03,
                     "high": diff + 0.03, "level": 0.05, "mde": 0.05, "seeds": 3, "verdict": verdict.value})
    rows.append({"section": "exploratory", "id": "", "claim": "A ConvNet reaches 86.5 %", "source": "Lake",
                 "dataset": "omniglot", "metric": "oneshot_accuracy", "diff": -0.1, "low": math.nan,
                 "high": math.nan, "level": 0.05, "mde": math.nan, "seeds": 3, "verdict": "contradicted"})
    return pd.DataFrame(rows)


def test_claims_effects_wraps_labels_marks_the_smallest_effect_and_keys_only_present_verdicts(chapter) -> None:
    ch = chapter("07_claims_ledger")
    frame = _claims_frame(ch)
    claims.effects_figure(ch, frame)
    fig, _ = ch.saved["effects"]
    check_slide(fig, "07 effects")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == len(frame) - 1  # the level row has no paired difference
    assert len(set(labels)) == len(labels) and not any("…" in t for t in labels)
    for label, (_, r) in zip(labels, frame.iterrows()):
        assert label.replace("\n", " ") == f"{r['source']}: {r['claim']} ({r['dataset']}, {r['metric']})"
    keyed = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {Verdict.INCONCLUSIVE.value, Verdict.NO_EFFECT.value} <= set(keyed)
    assert not {Verdict.REPRODUCED.value, Verdict.CONTRADICTED.value} & set(keyed)  # colours never used
    sesoi = claims.smallest_effects(ch, frame.iloc[:-1])
    diamonds = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert sesoi.notna().sum() >= 1 and len(diamonds) == sesoi.notna().sum()
    assert "smallest effect of interest (claimed side)" in keyed


# ----------------------------------------------------------------------------- the house helpers
def test_check_slide_catches_what_the_issue_listed() -> None:
    wide, ax = plt.subplots(figsize=(16, 3))
    ax.plot([0, 1], [0, 1], label="x")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    with pytest.raises(AssertionError, match="aspect"):
        check_slide(wide)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([0, 1], [0, 1], label="x")
    ax.set_xlabel("x")
    with pytest.raises(AssertionError, match="no y label"):
        check_slide(fig)
    ax.set_ylabel("y")
    ax.legend(loc="lower right")
    with pytest.raises(AssertionError, match="legend"):
        check_slide(fig)
    ax.legend(loc="best")
    check_slide(fig)
    plots.legend_outside(ax)
    check_slide(fig)
    plt.close("all")


def test_seed_lines_keeps_a_panel_whose_second_column_is_missing() -> None:
    """The bug behind chapter 0's empty slot: a second, absent column hid the panel."""
    fig, ax = plt.subplots()
    plots.seed_lines(ax, [history()], "val_effective_rank")
    plots.seed_lines(ax, [history().drop(columns="val_loss_space_effective_rank")], "val_loss_space_effective_rank")
    assert ax.get_visible() and ax.lines
    plt.close(fig)


# ----------------------------------------------------------------------------- saved figures
@pytest.mark.slow
def test_saved_smoke_figures_fit_16_9() -> None:
    """The PNGs a smoke render wrote (./run_all.sh --profile smoke) are at most 16:9."""
    from PIL import Image

    folder = Path(__file__).resolve().parent.parent / "figures" / "smoke"
    pngs = sorted(folder.glob("0[0-5]_*.png")) + sorted(folder.glob("07_*.png"))
    if not pngs:
        pytest.skip("no smoke figures rendered")
    wide = {p.name: round(w / h, 2) for p in pngs for w, h in [Image.open(p).size] if w / h > plots.MAX_ASPECT * TOLERANCE}
    assert not wide, wide
