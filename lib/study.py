"""What a chapter notebook needs in its first cells: its profile, its runs, its figures.

    ch = Chapter("00_quickstart", profile)          # profile comes from papermill
    results = ch.run_settings({"semi-hard": ch.config("omniglot")})  # cached runs, one per seed, recorded
    ch.save(fig, "diagnostics")                     # figures/<profile>/00_quickstart-diagnostics.{png,svg}
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import pandas as pd

from lib import records, train
from lib.cache import write_json
from lib.config import REPO_ROOT, ConfigError, Profile, RunConfig, load_profile


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
        self.profile: Profile = load_profile(profile, overrides)
        self.settings = self.profile.chapter(name)
        self.seeds = list(self.profile.seeds)
        self.figure_dir = REPO_ROOT / "figures" / self.profile.name
        self.figure_dir.mkdir(parents=True, exist_ok=True)
        self.records: dict[tuple, dict] = {}  # (dataset, setting, seed) -> row of lib.records

    @property
    def dataset(self) -> str:
        return self.settings.get("dataset") or next(iter(self.profile.datasets))

    def config(self, dataset: str | None = None, *layers: dict, **dotted) -> RunConfig:
        """The profile's run for `dataset`, with this chapter's overlay, then `layers` and
        dotted overrides written with double underscores (optim__lr=1e-4)."""
        dataset = dataset or self.dataset
        chapter_layer = self.settings.get("runs", {}).get(dataset, {})
        return self.profile.run_config(dataset, chapter_layer, *layers, **dotted)

    def run(self, config: RunConfig, **kwargs) -> train.RunResult | Diverged:
        """A cached run; a run whose loss became NaN is returned as `Diverged`, an outcome to report."""
        try:
            return train.run(config, **kwargs)
        except train.TrainingDiverged as exc:
            return Diverged(config, str(exc))

    def run_settings(self, settings: dict[str, RunConfig], seeds: list[int] | None = None,
                     **kwargs) -> dict[str, list]:
        """Every setting over the profile's seeds (or `seeds`), each run recorded in the chapter's
        per-seed table (`lib.records`) under its setting name."""
        out = {}
        for name, cfg in settings.items():
            runs = [self.run(cfg.with_overrides({"train.seed": int(s)}), **kwargs) for s in (seeds or self.seeds)]
            for result in runs:
                self.record(name, result)
            out[name] = runs
        self.save_records()
        return out

    def save_records(self) -> pd.DataFrame:
        return records.write(list(self.records.values()), self.profile.name, self.name)

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
        return "\n\n".join(self.describe(self.config(ds, *layers)) for ds in self.settings["datasets"])


def divide_setting(ch: Chapter, dataset: str, clusters: int, recluster_every: int) -> RunConfig:
    """Chapter 4's recipe with K learners re-clustered every M epochs; K = 1 is the same recipe
    without its divide section, trained as one learner."""
    recipe = ch.settings["recipe"]
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
    layer = chapter.settings
    for key in keys:
        if not isinstance(layer, dict) or key not in layer:
            raise ConfigError(f"chapters.{chapter.name} has no setting {'.'.join(map(str, keys))} in profile "
                              f"'{chapter.profile.name}'")
        layer = layer[key]
    return layer


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
