"""The study's one tidy results table: a row per (chapter, data set, setting, seed).

Every run a chapter reads through `Chapter.results` becomes a row holding every scalar metric,
the budget it trained for (epochs, steps, images seen) and its regime (backbone, pretrained or not,
image size, the sizes of the space the loss sees and of the space retrieval uses). The chapter
writes its rows beside the run cache (runs/tables/<profile>/<chapter>.csv) and exports them with
its figures (figures/<profile>/<chapter>-runs.csv); the ledger pairs arms by seed from these rows.

    rows = [record("02_mining", "omniglot", "hard", result) for result in results]
    write(rows, "full", "02_mining")
    table = read("full", "02_mining")
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lib.paths import REPO_ROOT, runs_dir

KEYS = ["chapter", "dataset", "setting", "seed"]
REGIME = ["backbone", "pretrained", "image_size", "loss_dim", "evaluated_dim"]
BUDGET = ["epochs", "train_steps", "train_images_seen"]


class RecordsError(RuntimeError):
    pass


def record(chapter: str, dataset: str, setting: str, result) -> dict:
    """One run as a row: keys, regime, budget, then every scalar metric (a diverged run keeps
    its keys, regime and budget, with `diverged` true and no metrics)."""
    cfg, m = result.config, result.metrics
    size = cfg.data.image_size
    row = {"chapter": chapter, "dataset": dataset, "setting": setting, "seed": int(cfg.train.seed),
           "backbone": cfg.model.backbone, "pretrained": bool(cfg.model.pretrained),
           "image_size": "x".join(map(str, size)) if isinstance(size, (list, tuple)) else str(size),
           "loss_dim": m.get("loss_space_dim", m.get("evaluated_dim")), "evaluated_dim": m.get("evaluated_dim"),
           "epochs": int(cfg.train.epochs), "train_steps": m.get("train_steps"),
           "train_images_seen": m.get("train_images_seen"), "diverged": bool(m.get("diverged", False)),
           "key": getattr(result, "key", None)}  # the run's cache folder, runs/<key>
    if cfg.divide.warmup_epochs:  # divide and conquer with a warm start (chapter 4)
        row["warmup_epochs"] = int(cfg.divide.warmup_epochs)
    if cfg.model.frozen_stages:  # a pretrained trunk kept as loaded (chapters 1 and 3)
        row["frozen_stages"] = int(cfg.model.frozen_stages)
    for name, value in sorted(m.items()):  # one column order whether the run came from the cache or the store
        if name not in row and isinstance(value, (bool, int, float, np.floating, np.integer)):
            row[name] = value
    return row


def table_path(profile: str, chapter: str) -> Path:
    return runs_dir() / "tables" / profile / f"{chapter}.csv"


def export_path(profile: str, chapter: str, root: Path | None = None) -> Path:
    return Path(root or REPO_ROOT) / "figures" / profile / f"{chapter}-runs.csv"


def to_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    if len(frame) and frame.duplicated(KEYS).any():
        dup = frame[frame.duplicated(KEYS, keep=False)][KEYS].drop_duplicates().to_dict("records")
        raise RecordsError(f"two runs recorded under the same (chapter, dataset, setting, seed): {dup[:3]}")
    return frame


def write(rows: list[dict], profile: str, chapter: str, publish: bool = True) -> pd.DataFrame:
    """Write the chapter's rows to the cache's table and, with `publish`, to the figures' export
    that the ledger and the other chapters read (atomically each)."""
    frame = to_frame(rows)
    paths = (table_path(profile, chapter), export_path(profile, chapter))
    for path in paths if publish else paths[:1]:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".csv.tmp")
        frame.to_csv(tmp, index=False)
        tmp.replace(path)
    return frame


def read(profile: str, chapter: str, root: Path | None = None) -> pd.DataFrame:
    """A chapter's exported per-seed table; a clear error naming the command that writes it."""
    path = export_path(profile, chapter, root)
    if not path.exists():
        raise RecordsError(f"{path} is missing: run `./run_all.sh --profile {profile} --only {chapter}` first "
                           "(the ledger only reads what the chapters measured)")
    frame = pd.read_csv(path)
    missing = [c for c in KEYS if c not in frame.columns]
    if missing:
        raise RecordsError(f"{path} lacks the columns {missing}: it was not written by lib.records; rerun the chapter")
    return frame


def per_seed(frame: pd.DataFrame, setting: str, metric: str, dataset: str | None = None) -> dict[int, float]:
    """{seed: value} of one setting's metric (NaN for a diverged seed), for `lib.stats.paired_difference`."""
    rows = frame[frame["setting"] == setting]
    if dataset is not None:
        rows = rows[rows["dataset"] == dataset]
    if rows.empty:
        where = f"{setting!r}" + (f" on {dataset}" if dataset else "")
        raise RecordsError(f"no runs of {where}; known settings: {sorted(frame['setting'].unique())}")
    if metric not in rows:
        raise RecordsError(f"no metric {metric!r} in the table; it has {sorted(c for c in frame.columns if c not in KEYS)}")
    return {int(s): float(v) for s, v in zip(rows["seed"], rows[metric])}


FLAGS = ("collapsed", "contracted", "diverged")


def summary(frame: pd.DataFrame, metrics: list[str], by: tuple[str, ...] = ("dataset", "setting"),
            flags: tuple[str, ...] = FLAGS) -> pd.DataFrame:
    """Mean and sd over seeds of each metric, with the number of seeds and, for each per-run flag
    the table has, the number of seeds that raised it (a readable view; the verdicts use the
    per-seed rows)."""
    groups = frame.groupby(list(by), sort=False)
    out = groups.size().rename("seeds").to_frame()
    for flag in flags:
        if flag in frame:
            out[flag] = frame[flag].astype("boolean").fillna(False).astype(int).groupby(
                [frame[k] for k in by], sort=False).sum()
    for metric in metrics:
        values = groups[metric].agg(["mean", "std"]) if metric in frame else None
        if values is not None:
            out[f"{metric} mean"], out[f"{metric} sd"] = values["mean"], values["std"]
    return out
