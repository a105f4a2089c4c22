"""What a chapter notebook needs in its first cells: its profile, its runs, its figures.

    ch = Chapter("00_quickstart", profile)          # profile comes from papermill
    results = ch.run_seeds("omniglot")              # cached runs, one per seed
    ch.save(fig, "diagnostics")                     # figures/<profile>/00_quickstart-diagnostics.{png,svg}
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from lib import train
from lib.config import REPO_ROOT, Profile, RunConfig, load_profile


class Chapter:
    def __init__(self, name: str, profile: str = "quick", overrides: dict | None = None):
        self.name = name
        self.profile: Profile = load_profile(profile, overrides)
        self.settings = self.profile.chapter(name)
        self.seeds = list(self.profile.seeds)
        self.figure_dir = REPO_ROOT / "figures" / self.profile.name
        self.figure_dir.mkdir(parents=True, exist_ok=True)

    @property
    def dataset(self) -> str:
        return self.settings.get("dataset") or next(iter(self.profile.datasets))

    def config(self, dataset: str | None = None, *layers: dict, **dotted) -> RunConfig:
        """The profile's run for `dataset`, with this chapter's overlay, then `layers` and
        dotted overrides written with double underscores (optim__lr=1e-4)."""
        dataset = dataset or self.dataset
        chapter_layer = self.settings.get("runs", {}).get(dataset, {})
        return self.profile.run_config(dataset, chapter_layer, *layers, **dotted)

    def run(self, config: RunConfig, **kwargs) -> train.RunResult:
        return train.run(config, **kwargs)

    def run_seeds(self, config: RunConfig | str | None = None, **kwargs) -> list[train.RunResult]:
        if config is None or isinstance(config, str):
            config = self.config(config)
        return train.run_seeds(config, self.seeds, **kwargs)

    def save(self, fig, name: str) -> Path:
        stem = self.figure_dir / f"{self.name}-{name}"
        fig.savefig(stem.with_suffix(".png"), dpi=120, bbox_inches="tight")
        fig.savefig(stem.with_suffix(".svg"), bbox_inches="tight")
        return stem.with_suffix(".png")

    def describe(self) -> str:
        """One line saying what the numbers below are worth, for the top of a notebook."""
        cfg = self.config()
        return (f"Profile **{self.profile.name}** — {self.profile.description}. "
                f"{len(self.seeds)} seed(s) {self.seeds}, {cfg.train.epochs} epochs of "
                f"{cfg.train.steps_per_epoch or 'all'} steps, batch {cfg.train.batch_size}, "
                f"backbone {cfg.model.backbone}.")


def metric_table(results: dict[str, list[train.RunResult]], metrics: list[str]) -> pd.DataFrame:
    """mean ± sample standard deviation over seeds of each metric, one row per setting."""
    rows = []
    for setting, runs in results.items():
        row = {"setting": setting, "seeds": len(runs)}
        for m in metrics:
            values = np.array([r.metrics.get(m, math.nan) for r in runs], dtype=float)
            row[f"{m} mean"] = float(np.nanmean(values)) if np.isfinite(values).any() else math.nan
            row[f"{m} sd"] = float(np.nanstd(values, ddof=1)) if np.isfinite(values).sum() > 1 else math.nan
        rows.append(row)
    return pd.DataFrame(rows).set_index("setting")


def fmt(mean: float, sd: float, pct: bool = True) -> str:
    """'62.3 ± 1.4 %' (or without the spread when there is a single seed)."""
    scale, unit = (100, " %") if pct else (1, "")
    if math.isnan(sd):
        return f"{mean * scale:.1f}{unit} (one seed)"
    return f"{mean * scale:.1f} ± {sd * scale:.1f}{unit}"
