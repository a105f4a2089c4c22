"""Chapter 6: the road to a one-shot record on Lake's 20 within-alphabet runs.

Ingredients are tried one at a time and kept only when they raise a validation metric measured
on background classes held out from training (`data.val_fraction`): the 20 runs, whose images lie
in the evaluation set, never choose anything."""
from __future__ import annotations

from dataclasses import dataclass, replace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lib import derived, evaluate, plots, scoring, stats, train
from lib.errors import ConfigError
from lib.arms import CHOSEN_ONESHOT
from lib.config import RunConfig
from lib.study import Chapter, fmt, planned_walk, walk_through

CHOSEN = CHOSEN_ONESHOT  # the road's end, recorded again under this name for the ledger
START = "start"


@dataclass
class Step:
    setting: str  # the recipe tried: the kept ingredients so far, plus this one
    ingredient: str  # what this step added ("start" for the first)
    results: list
    selection: dict  # seed -> the validation metric
    gain: stats.Difference | None  # against the recipe kept so far (None for the start)
    kept: bool
    layers: list  # the run overlays that make this step's recipe
    views: tuple = scoring.IDENTITY  # the test-time views its scores embed each image under

    @property
    def trains(self) -> bool:
        """Whether this step trained new runs (a test-time step re-scores the kept recipe's)."""
        return self.views == scoring.IDENTITY


def _scores(results: list, metric: str = "oneshot_accuracy") -> np.ndarray:
    """One final metric per seed."""
    return np.array([r.metrics[metric] for r in results])


def _sd(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if len(values) > 1 else float("nan")


def _selection_metric(result, metric: str) -> float:
    """The metric's value at the run's last validation (background classes held out)."""
    history = result.history
    if metric not in history:
        raise KeyError(f"{metric!r} is not in the run's history (columns: {', '.join(history.columns)}); "
                       "chapters.06_oneshot_record.select_on must name a per-epoch validation metric")
    return float(history[metric].dropna().iloc[-1])


def plan(ch: Chapter):
    """The chapter's runs (lib.runs.plan), a stage per step of the road (each step is chosen from
    the one before), then the chosen recipe on the minimal background sets."""
    steps, _, _ = yield from planned_walk(ch, _trained_road(ch))
    yield ch.planned(background_arms(ch, chosen(steps).layers))


def _judge(step: Step, current: Step, steps: list[Step]) -> bool:
    """Keep `step` when its mean paired gain in the selection metric over `current` is positive."""
    step.gain = stats.paired_difference(step.selection, current.selection)
    step.kept = bool(np.isfinite(step.gain.diff) and step.gain.diff > 0)
    steps.append(step)
    return step.kept


def _trained_road(ch: Chapter):
    """The road's training steps as a walk that yields each step's {setting: config} before reading
    its runs (for the plan), and returns (steps, the kept step, the kept ingredients' names)."""
    s = ch.settings
    metric = s.select_on
    layers, names = [s.start], []
    steps: list[Step] = []

    def attempt(ingredient: str, extra_layers: list):
        setting = " + ".join([START, *names, *([ingredient] if ingredient != START else [])])
        cfg = ch.config("omniglot", *extra_layers)
        yield {setting: cfg}, None
        results = ch.results({setting: cfg})[setting]
        selection = {r.config.train.seed: _selection_metric(r, metric) for r in results}
        return Step(setting, ingredient, results, selection, None, True, extra_layers)

    current = yield from attempt(START, layers)
    steps.append(current)
    for ingredient, layer in s.ingredients.items():
        step = yield from attempt(ingredient, [*layers, layer])
        if _judge(step, current, steps):
            layers.append(layer)
            names.append(ingredient)
            current = step
    return steps, current, names


def road(ch: Chapter) -> list[Step]:
    """The start recipe, then each ingredient on top of what was kept so far, over the seeds;
    an ingredient stays when its mean paired gain in `select_on` is positive. Test-time views
    (no training: they re-score the kept recipe's runs) come last, judged the same way."""
    metric = ch.settings.select_on
    steps, current, names = walk_through(_trained_road(ch))
    for ingredient, shifts in ch.settings.test_time.items():
        views = (*current.views, *(tuple(v) for v in shifts))
        selection = {r.config.train.seed: _view_scores(r, views)[metric] for r in current.results}
        step = Step(" + ".join([START, *names, ingredient]), ingredient, rescored(current.results, views),
                    selection, None, True, current.layers, views)
        if _judge(step, current, steps):
            names.append(ingredient)
            current = step
    # Each of Lake's 20 runs as its own column, so the ledger's level rows resample runs and trials
    # (a hierarchical bootstrap) instead of one block of 400 trials.
    for result, runs in zip(current.results, per_run_accuracy(current)):
        ch.record(CHOSEN, result, {f"oneshot_accuracy_run_{i}": float(a) for i, a in enumerate(runs, 1)})
    ch.save_records()
    return steps


def _view_scores(result, views: tuple) -> dict:
    """A trained run re-scored with every image embedded under the test-time `views`: its
    validation metrics (val_-prefixed, on the per-epoch validation cut, as its history has them)
    and Lake's 20 runs, overall and run by run. Kept under runs/derived/."""
    def compute() -> dict:
        trainer = train.load_trained(result)
        if trainer.splits.validates_on_test:
            raise ConfigError("test-time views are chosen on validation, and this run has none: "
                              "set data.val_fraction above 0 in the chapter's start")
        val = trainer.splits.val_each_epoch
        metrics = evaluate.retrieval_metrics(scoring.embed_views(trainer, val.images, views), val.labels,
                                             recall_ks=tuple(result.config.eval.recall_ks), nmi=False)
        accuracy, per_run = scoring.oneshot_accuracy(trainer, per_run=True, views=views)
        return {**{f"val_{k}": v for k, v in metrics.items()}, "oneshot_accuracy": accuracy, "per_run": per_run}

    stored = derived.of_run(result, "oneshot-views", compute, params={"views": [list(v) for v in views]},
                            modules=("scoring", "evaluate", "augment"))
    return {k: np.asarray(v) if k == "per_run" else float(v) for k, v in stored.items()}


def rescored(results: list, views: tuple) -> list:
    """The runs with their one-shot accuracy re-scored under the test-time `views` (the same
    runs when `views` is the image alone)."""
    if views == scoring.IDENTITY:
        return results
    return [replace(r, metrics={**r.metrics, "oneshot_accuracy": _view_scores(r, views)["oneshot_accuracy"],
                                "test_time_views": len(views)}) for r in results]


def chosen(steps: list[Step]) -> Step:
    return [s for s in steps if s.kept][-1]


def background_arms(ch: Chapter, layers: list) -> dict[str, RunConfig]:
    """The chosen recipe (its run overlays `layers`) on each of Lake's minimal background sets."""
    return {f"{CHOSEN}, {background} background":
            ch.config("omniglot", *layers, {"data": {"options": {"background": background}}})
            for background in ch.settings.minimal_backgrounds}


def minimal_backgrounds(ch: Chapter, best: Step) -> pd.DataFrame:
    """The chosen recipe, unchanged, trained on each of Lake's two minimal background sets (5
    alphabets each, the harder form of the challenge) beside the whole background set."""
    rows = [_background_row("full (30 alphabets)", best.results)]
    for background, (name, cfg) in zip(ch.settings.minimal_backgrounds, background_arms(ch, best.layers).items()):
        results = rescored(ch.results({name: cfg})[name], best.views)
        for result in results:  # the per-seed table, as scored with the chosen views
            ch.record(name, result)
        rows.append(_background_row(f"{background} (5 alphabets)", results))
    ch.save_records()
    table = pd.DataFrame(rows).set_index("background")
    ch.save_table(table, "backgrounds")
    return table


def _background_row(name: str, results: list) -> dict:
    shot = _scores(results)
    return {"background": name, "train steps": results[0].metrics["train_steps"],
            "oneshot_accuracy mean": shot.mean(), "oneshot_accuracy sd": _sd(shot),
            "per seed": ", ".join(f"{x:.1%}" for x in shot),
            "train minutes per seed": _scores(results, "train_seconds").mean() / 60}


def road_table(ch: Chapter, steps: list[Step]) -> pd.DataFrame:
    """One row per step: what it added, its validation metric, its gain and whether it stayed,
    then the one-shot accuracy and the minutes it trained (the 20 runs are read, never used)."""
    metric = ch.settings.select_on
    rows = []
    for step in steps:
        val = np.array(list(step.selection.values()))
        oneshot = _scores(step.results)
        g = step.gain
        rows.append({
            "step": step.ingredient, "setting": step.setting, "kept": step.kept,
            f"{metric} mean": val.mean(), f"{metric} sd": _sd(val),
            "gain": np.nan if g is None else g.diff, "gain low": np.nan if g is None else g.low,
            "gain high": np.nan if g is None else g.high,
            "oneshot_accuracy mean": oneshot.mean(),
            "oneshot_accuracy sd": _sd(oneshot),
            # a test-time step's views are not applied to the whole evaluation set
            "recall@1 (evaluation set) mean": _scores(step.results, "recall@1").mean() if step.trains else np.nan,
            "test-time views": len(step.views),
            "epochs": step.results[0].config.train.epochs,
            "train minutes per seed": _scores(step.results, "train_seconds").mean() / 60,
        })
    table = pd.DataFrame(rows).set_index("step")
    ch.save_table(table, "road")
    return table


def per_run_accuracy(step: Step) -> np.ndarray:
    """(seeds, 20): each seed's accuracy on each of Lake's runs, from its trained weights under
    the step's test-time views (kept under runs/derived/, so a re-render does not reload the networks)."""
    if not step.trains:
        return np.stack([_view_scores(r, step.views)["per_run"] for r in step.results])
    results = step.results

    def compute(result):
        return lambda: {"accuracy": scoring.oneshot_accuracy(train.load_trained(result), per_run=True)[1]}

    return np.stack([derived.of_run(r, "oneshot-per-run", compute(r), modules=("scoring", "evaluate"))["accuracy"]
                     for r in results])


def _anchor_lines(ax, anchors: list) -> None:
    """The published levels as lines (dotted: not measured on these runs), labelled at the right
    and spread apart where two levels lie close."""
    for anchor in anchors:
        ax.axhline(anchor.accuracy * 100, color=plots.GREY, ls="-" if anchor.on_these_runs else ":", lw=1)
    low, high = ax.get_ylim()
    gap, previous = 0.045 * (high - low), -np.inf
    for anchor in sorted(anchors, key=lambda a: a.accuracy):
        y = max(anchor.accuracy * 100, previous + gap)
        previous = y
        where = "" if anchor.on_these_runs else " (other trials)"
        ax.annotate(f"{anchor.label}{where} {anchor.accuracy:.1%}", (1.0, anchor.accuracy * 100),
                    xycoords=("axes fraction", "data"), xytext=(1.01, y), textcoords=("axes fraction", "data"),
                    va="center", fontsize=8, color="dimgrey")


def road_figure(ch: Chapter, steps: list[Step]) -> plt.Figure:
    metric = ch.settings.select_on
    fig, (ax_val, ax_shot) = plt.subplots(1, 2, figsize=(12, 7.4), gridspec_kw={"width_ratios": [1, 1.5]})
    labels = [s.ingredient for s in steps]
    for i, step in enumerate(steps):
        colour = plots.PALETTE[0] if step.kept else plots.GREY
        val = np.array(list(step.selection.values())) * 100
        shot = _scores(step.results) * 100
        for ax, y in ((ax_val, val), (ax_shot, shot)):
            ax.scatter(np.full(len(y), i), y, color=colour, s=18, alpha=0.7, zorder=3)
            ax.plot([i - 0.25, i + 0.25], [y.mean()] * 2, color=colour, lw=2.5)
    for ax in (ax_val, ax_shot):
        ax.set_xticks(range(len(steps)), labels, rotation=20, ha="right")
        ax.set_xlabel("step (grey: not kept)")
        ax.grid(axis="y", alpha=0.3)
    ax_val.set_ylabel(f"{metric} (%), background classes held out")
    ax_val.set_title("What chose each step (validation)")
    ax_shot.set_ylabel("20-way one-shot accuracy (%), Lake's 20 runs")
    ax_shot.set_title("Where each step stands (read, never used to choose)")
    _anchor_lines(ax_shot, ch.settings.anchors)
    fig.tight_layout()
    return fig


def per_run_figure(ch: Chapter, accuracy: np.ndarray) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(9.5, 5.6))
    runs = np.arange(1, accuracy.shape[1] + 1)
    for i, seed_row in enumerate(accuracy):
        ax.scatter(runs, seed_row * 100, s=14, color=plots.PALETTE[0], alpha=0.6, label="one seed" if i == 0 else None)
    ax.plot(runs, accuracy.mean(0) * 100, "_", color=plots.MEAN, markersize=14, mew=2, label="mean over seeds")
    ax.set_xticks(runs)
    ax.set_xlabel("Lake's run (20-way, one alphabet each)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"The chosen recipe on each of the 20 runs ({accuracy.shape[0]} seeds)")
    _anchor_lines(ax, ch.settings.anchors)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def conclusion(ch: Chapter, steps: list[Step], table: pd.DataFrame, accuracy: np.ndarray,
               backgrounds: pd.DataFrame) -> str:
    metric = ch.settings.select_on
    best = chosen(steps)
    shot = _scores(best.results)
    kept = [s.ingredient for s in steps[1:] if s.kept]
    dropped = [s.ingredient for s in steps[1:] if not s.kept]
    text = (f"The road kept **{', '.join(kept) or 'nothing beyond the start'}**"
            f"{' and dropped ' + ', '.join(dropped) if dropped else ''}, each judged by the mean paired gain "
            f"in {metric} over {len(best.results)} seed(s) on background classes held out from training. "
            f"The chosen recipe scores **{fmt(shot.mean(), _sd(shot))}** "
            f"on Lake's 20 runs (per seed: {', '.join(f'{x:.1%}' for x in shot)}; run by run, the mean over seeds ranges from "
            f"{accuracy.mean(0).min():.0%} to {accuracy.mean(0).max():.0%}), after "
            f"{table.loc[best.ingredient, 'train minutes per seed']:.1f} minutes of training per seed"
            f"{'' if best.trains else f', each image embedded under {len(best.views)} test-time views'}. ")
    anchors = ch.settings.anchors
    above = [a for a in anchors if a.on_these_runs and shot.mean() >= a.accuracy]
    below = [a for a in anchors if a.on_these_runs and shot.mean() < a.accuracy]
    if above:
        text += f"On these very runs it is above {', '.join(a.label for a in above)}. "
    if below:
        levels = [f"{a.label} ({a.accuracy:.1%})" for a in below]
        text += f"It stays below {', '.join(levels)}. "
    minimal = backgrounds.iloc[1:]
    if len(minimal):
        text += ("Trained on a minimal background set (5 alphabets) instead, the same recipe scores "
                 + ", ".join(f"{fmt(r['oneshot_accuracy mean'], r['oneshot_accuracy sd'])} ({name})"
                             for name, r in minimal.iterrows()) + ". ")
    text += "The ledger (chapter 7) judges the levels with intervals over seeds. "
    if ch.profile.name != "full":
        text += f"Profile {ch.profile.name}: a shorter schedule on fewer images than the full profile, so these numbers only show the road's shape."
    return text
