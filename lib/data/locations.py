"""Where the data and the decoded-array cache live."""
from __future__ import annotations

import os
from pathlib import Path

# lib/data/locations.py -> the repository root (computed here, not imported from lib.config,
# so that the data layer imports nothing else of lib).
REPO_ROOT = Path(__file__).resolve().parent.parent.parent


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data folder: `root` if given (the params key), else $METRIC_DATA, else ./data."""
    chosen = root if root is not None else os.environ.get("METRIC_DATA") or "data"
    return Path(chosen).expanduser().resolve()


def cache_dir() -> Path:
    """Where decoded arrays (and the verified source checksums) are cached: $METRIC_CACHE,
    else $METRIC_RUNS/data_cache, else <repository>/runs/data_cache, as lib.cache.runs_dir()
    places runs; never relative to the current working directory."""
    explicit = os.environ.get("METRIC_CACHE")
    if explicit:
        return Path(explicit).expanduser().resolve()
    runs = os.environ.get("METRIC_RUNS")
    return (Path(runs).expanduser() if runs else REPO_ROOT / "runs").resolve() / "data_cache"
