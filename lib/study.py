"""What a chapter notebook needs in its first cells: its profile, its runs, its figures.

    ch = Chapter("00_quickstart", profile)          # profile comes from papermill
    ch.planned({"semi-hard": ch.config("omniglot")})  # what the chapter's plan declares (lib.runs.plan)
    results = ch.results({"semi-hard": ch.config("omniglot")})  # the finished runs, one per seed, recorded
    ch.save(fig, "diagnostics")                     # figures/<profile>/00_quickstart-diagnostics.{png,svg}

A chapter never trains: `results` reads the run cache, then the committed results store
(results/<profile>/), and raises `NotTrained` for a run that is in neither
(`python -m lib.runs train --profile P` trains the plan).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
from pydantic import BaseModel

from lib import confirmatory, records, train
from lib.config import ConfigError, Profile, RunConfig, load_profile
from lib.paths import REPO_ROOT, read_json, write_json
from lib.results import RunResult
from lib.runs.plan import NotTrained, PlannedRun
from lib.runs.store import Store


def check_checkout() -> None:
    """Refuse to run when $METRIC_REPO (the checkout run_all.sh / run_tests.sh was started from)
    is not the checkout this `lib` was imported from: a virtual environment installed editable
    from another checkout imports that one's lib, and the chapter would write its figures there."""
    wanted = os.environ.get("METRIC_REPO")
    if wanted and Path(wanted).resolve() != REPO_ROOT.resolve():
        raise RuntimeError(f"lib was imported from the checkout {REPO_ROOT}, but METRIC_REPO says this run belongs to "
                           f"{Path(wanted).resolve()}: its figures and runs would go to the wrong checkout. Run "
                           f"with PYTHONPATH={Path(wanted).resolve()} (run_all.sh does), or give that checkout its own "
                           "environment (METRIC_VENV=<checkout>/.venv bash scripts/setup_env.sh)")


class Chapter:
    def __init__(self, name: str, profile: str = "quick", overrides: dict | None = None):
        check_checkout()
        self.name = name
        self.overrides = overrides
        self.profile: Profile = load_profile(profile, overrides)
        self.settings = self.profile.section(name)  # typed, frozen (lib.config.chapters)
        self.seeds = list(self.profile.seeds)
        # the confirmatory family's arms (params/confirmatory.yaml) run on their declared seeds too
        self.declared_seeds = confirmatory.declared_seeds(self.profile.name, name)
        self.figure_dir = REPO_ROOT / "figures" / self.profile.name
        self.figure_dir.mkdir(parents=True, exist_ok=True)
        self.records: dict[tuple, dict] = {}  # (dataset, setting, seed) -> row of lib.records
        self._store: Store | None = None
        self.planning = False  # set while a plan reads earlier stages: the per-seed table is not written

    @property
    def dataset(self) -> str:
        return self.settings.dataset or next(iter(self.profile.datasets))

    def config(self, dataset: str | None = None, *layers: dict, **dotted) -> RunConfig:
        """The profile's run for `dataset`, with this chapter's overlay, then `layers` and
        dotted overrides written with double underscores (optim__lr=1e-4)."""
        dataset = dataset or self.dataset
        chapter_layer = self.settings.runs.get(dataset, {})
        return self.profile.run_config(dataset, chapter_layer, *layers, **dotted)

    def planned(self, settings: dict[str, RunConfig], seeds: list[int] | None = None) -> list[PlannedRun]:
        """Every setting over the profile's seeds (or `seeds`), and a confirmatory arm also over its
        declared seeds, as entries of the plan."""
        out = []
        for name, cfg in settings.items():
            declared = self.declared_seeds.get((cfg.data.name, name), ())
            for seed in sorted({*(seeds or self.seeds), *declared}):
                run = cfg.with_overrides({"train.seed": int(seed)})
                out.append(PlannedRun(self.name, name, run.data.name, int(seed), run, train.run_dir_for(run).key))
        return out

    def result(self, config: RunConfig) -> RunResult | Diverged | None:
        """A finished run from the run cache, else from the results store; None when neither has it.
        A run whose loss became NaN is returned as `Diverged`, an outcome to report."""
        run_dir = train.run_dir_for(config)
        cached = run_dir.load_result()
        if cached is not None:
            return RunResult(config, run_dir.key, run_dir.path, *cached, provenance=run_dir.provenance())
        failed = run_dir.file("failed.json")
        if failed.exists() and read_json(failed).get("key") == run_dir.key:
            return Diverged(config, read_json(failed).get("error", "diverged"))
        stored = self.store.get(run_dir.key) if self.profile.results_store else None
        if stored is None:
            return None
        if stored.metrics.get("diverged"):
            return Diverged(config, stored.metrics.get("error", "diverged"))
        return RunResult(config, stored.key, None, stored.metrics, stored.history, provenance=stored.provenance)

    def results(self, settings: dict[str, RunConfig], seeds: list[int] | None = None) -> dict[str, list]:
        """Every setting's finished runs over the profile's seeds (or `seeds`), each recorded in the
        chapter's per-seed table (`lib.records`) under its setting name. Trains nothing: a run with
        no result raises NotTrained, naming the command that trains the plan."""
        wanted = self.planned(settings, seeds)
        found = {run.key: self.result(run.config) for run in wanted}
        missing = [run for run in wanted if found[run.key] is None]
        if missing:
            raise NotTrained(missing, self.profile.name)
        out: dict[str, list] = {}
        for run in wanted:
            self.record(run.setting, found[run.key])
            out.setdefault(run.setting, []).append(found[run.key])
        self.save_records()
        return out

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.profile.name)
        return self._store

    def save_records(self, publish: bool = False) -> pd.DataFrame:
        """Write the per-seed table to the run cache; with `publish`, also to figures/, where the
        ledger and the other chapters read it. A chapter publishes once, when it closes (its box,
        `lib.takeaways.box`): a chapter rendering beside it then reads either the last complete
        table or this one, never a table half recorded."""
        if self.planning:
            return self.table()
        return records.write(list(self.records.values()), self.profile.name, self.name, publish=publish)

    def record(self, setting: str, result, extra: dict | None = None) -> None:
        """Add a run to the chapter's per-seed table; `extra` adds metrics computed outside the run
        (re-identification scores, say). `save_records` writes the table."""
        row = {**records.record(self.name, result.config.data.name, setting, result), **(extra or {})}
        key = (row["dataset"], setting, row["seed"])
        known = self.records.get(key)
        if known is not None and known.get("key") != row.get("key"):
            raise records.RecordsError(f"{self.name}: setting {setting!r} on {key[0]} names two different runs "
                                       f"for seed {key[2]}; give them different names")
        self.records[key] = row

    def table(self) -> pd.DataFrame:
        """This chapter's per-seed table so far."""
        return records.to_frame(list(self.records.values()))

    def save(self, fig, name: str, caption: str = "") -> None:
        """figures/<profile>/<chapter>-<name>.<format> for each of the profile's figure_formats,
        and a .json with the one-line caption the figure index shows; the notebook shows the
        figure itself."""
        stem = self.figure_dir / f"{self.name}-{name}"
        # No date and fixed SVG ids, so a re-render from the same runs rewrites the same bytes
        # (and a diff of figures/ shows only what changed)
        no_date = {"svg": {"Date": None}, "png": {"Software": None}, "pdf": {"CreationDate": None}}
        with matplotlib.rc_context({"svg.hashsalt": f"{self.name}-{name}"}):
            for fmt in self.profile.figure_formats:
                fig.savefig(stem.with_suffix(f".{fmt}"), dpi=120, bbox_inches="tight", metadata=no_date.get(fmt))
        write_json(stem.with_suffix(".json"), {"chapter": self.name, "figure": name, "caption": caption,
                                               "profile": self.profile.name})

    def save_table(self, table: pd.DataFrame, name: str) -> None:
        """figures/<profile>/<chapter>-<name>.csv: the numbers behind a verdict, for the claims ledger."""
        table.to_csv(self.figure_dir / f"{self.name}-{name}.csv")

    def provenance(self, plan) -> str:
        """The header table of where this chapter's numbers were made: its planned runs (its module's
        `plan`) grouped by precision, device, threads and library versions, with the commits and
        minutes of training. Provenance is not part of a run's key; this is where a reader sees it."""
        planning, self.planning = self.planning, True
        try:
            runs = [run for stage in plan(self) for run in stage]
        finally:
            self.planning = planning
        rows: dict[tuple, dict] = {}
        for run in runs:
            found = self.result(run.config)
            made = getattr(found, "provenance", {}) or {}
            libraries = made.get("libraries", {})
            group = (run.config.train.precision, made.get("device", "not recorded"), made.get("threads", "?"),
                     libraries.get("torch", "?"), libraries.get("pytorch-metric-learning", "?"))
            row = rows.setdefault(group, {"runs": 0, "minutes": 0.0, "commits": set()})
            row["runs"] += 1
            row["minutes"] += float(getattr(found, "metrics", {}).get("train_seconds", 0.0)) / 60
            row["commits"].add(made.get("commit", "?"))
        lines = ["| runs | precision | device | threads | torch | pytorch-metric-learning | commit | training minutes |",
                 "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {r['runs']} | {g[0]} | {g[1]} | {g[2]} | {g[3]} | {g[4]} | {', '.join(sorted(r['commits']))} | "
                  f"{r['minutes']:.1f} |" for g, r in rows.items()]
        return "**Where these numbers were made** (each run's provenance, not part of its key):\n\n" + "\n".join(lines)

    def describe(self, cfg: RunConfig | None = None) -> str:
        """One line saying what the numbers below are worth, for the top of a notebook."""
        cfg = cfg or self.config()
        return (f"Profile **{self.profile.name}** — {self.profile.description}. "
                f"{len(self.seeds)} seed(s) {self.seeds}, {cfg.train.epochs} epochs of "
                f"{cfg.train.steps_per_epoch or 'all'} steps, batch {cfg.train.batch_size}, "
                f"backbone {cfg.model.backbone} "
                f"({'ImageNet-pretrained' if cfg.model.pretrained else 'trained from scratch'}).")

    def describe_datasets(self, *layers: dict) -> str:
        """`describe` for each data set the chapter trains on (its `datasets`), `layers` applied."""
        return "\n\n".join(self.describe(self.config(ds, *layers)) for ds in self.settings.datasets)


def planned_walk(ch: Chapter, walk):
    """For a chapter's plan: each batch of runs a walk yields ((settings, seeds) before it reads
    them) as plan entries; returns the walk's value once it has read them all."""
    while True:
        try:
            settings, seeds = next(walk)
        except StopIteration as stop:
            return stop.value
        yield ch.planned(settings, seeds)


def walk_through(walk):
    """For an analysis: the value of a walk (which reads each batch of runs it yields itself)."""
    while True:
        try:
            next(walk)
        except StopIteration as stop:
            return stop.value


def divide_setting(ch: Chapter, dataset: str, clusters: int, recluster_every: int) -> RunConfig:
    """Chapter 4's recipe with K learners re-clustered every M epochs; K = 1 is the same recipe
    without its divide section, trained as one learner."""
    recipe = ch.settings.recipe
    if clusters == 1:
        return ch.config(dataset, {k: v for k, v in recipe.items() if k != "divide"})
    return ch.config(dataset, recipe, {"divide": {"clusters": clusters, "recluster_every": recluster_every}})


def borrowed_config(spec: dict, profile: str, overrides: dict | None, dataset: str) -> RunConfig:
    """The configuration of a run another chapter trains, so that reading it hits that chapter's cache.

    spec is {chapter: NAME, settings: [key, ...]} (a layer found under those keys of the chapter's
    settings) or {chapter: NAME, divide: {clusters: K, recluster_every: M}} (`divide_setting`);
    with settings, `overlay: [key, ...]` finds a second layer the same way and applies it after.
    """
    unknown = set(spec) - {"chapter", "settings", "divide", "overlay"}
    if "chapter" not in spec or unknown or ("settings" in spec) == ("divide" in spec) or \
            ("overlay" in spec and "settings" not in spec):
        raise ConfigError(f"a borrowed recipe is {{chapter, settings: [keys], overlay: [keys] (optional)}} or "
                          f"{{chapter, divide: {{clusters, recluster_every}}}}, got {spec!r}")
    other = Chapter(spec["chapter"], profile, overrides)
    if "divide" in spec:
        return divide_setting(other, dataset, int(spec["divide"]["clusters"]), int(spec["divide"]["recluster_every"]))
    return other.config(dataset, *[_layer(other, spec[k]) for k in ("settings", "overlay") if spec.get(k)])


def _layer(chapter: Chapter, keys: list) -> dict:
    """The setting under `keys` of a chapter's section: fields of its typed model, then dict keys."""
    layer: Any = chapter.settings
    for key in keys:
        if isinstance(layer, BaseModel) and key in layer.model_fields_set:
            layer = getattr(layer, key)
        elif isinstance(layer, dict) and key in layer:
            layer = layer[key]
        else:
            raise ConfigError(f"chapters.{chapter.name} has no setting {'.'.join(map(str, keys))} in profile "
                              f"'{chapter.profile.name}'")
    return layer.model_dump(exclude_unset=True) if isinstance(layer, BaseModel) else layer


def backbone_words(layer: dict) -> str:
    """'efficientnet_lite0 with ImageNet weights, its stem and first 6 stages frozen' for a run
    overlay that makes a run pretrained (a chapter's `pretrained.backbone`)."""
    model = layer.get("model", {})
    frozen = model.get("frozen_stages", 0)
    return (f"{model.get('backbone', 'the profile backbone')} with ImageNet weights, "
            + (f"its stem and first {frozen} stages frozen" if frozen else "every stage fine-tuned"))


@dataclass
class Diverged:
    """A run stopped by a NaN/inf loss: no metrics, kept so tables can count it."""

    config: RunConfig
    error: str
    metrics: dict = field(default_factory=lambda: {"diverged": True, "collapsed": True})
    history: pd.DataFrame = field(default_factory=pd.DataFrame)


def fmt(mean: float, sd: float, pct: bool = True) -> str:
    """'62.3 ± 1.4 %', or '0.71 ± 0.02' for a unitless value such as an AUC (without the spread
    when there is a single seed)."""
    scale, unit, digits = (100, " %", 1) if pct else (1, "", 2)
    if math.isnan(sd):
        return f"{mean * scale:.{digits}f}{unit} (one seed)"
    return f"{mean * scale:.{digits}f} ± {sd * scale:.{digits}f}{unit}"
