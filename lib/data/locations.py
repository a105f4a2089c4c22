"""Where the data and the decoded-array cache live."""
from __future__ import annotations

import os
import time
from pathlib import Path

# lib/data/locations.py -> the repository root (computed here as in lib.paths, not imported,
# so that the data layer imports nothing else of lib).
REPO_ROOT = Path(__file__).resolve().parent.parent.parent


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data folder: `root` if given (the params key), else $METRIC_DATA, else ./data."""
    chosen = root if root is not None else os.environ.get("METRIC_DATA") or "data"
    return Path(chosen).expanduser().resolve()


# A temporary file (.<name>.<random>.tmp) in the data cache untouched for this long belongs to a
# killed writer: writers stream into theirs, so its mtime moves while one is alive.
STALE_TEMP_SECONDS = 600
_swept: set[Path] = set()


def umask() -> int:
    """This process's umask (read from /proc where it can be, so no other thread sees it change)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode `open()` would give a new file: 0o666 less the umask (mkstemp gives 0o600)."""
    return 0o666 & ~umask()


def folder_mode() -> int:
    """The mode `mkdir` would give a new folder: 0o777 less the umask (mkdtemp gives 0o700)."""
    return 0o777 & ~umask()


def sweep_temp_files(folder: Path) -> None:
    """Remove the temporary files (.*.tmp) that killed writers left in `folder`, once per process
    and folder; only those older than STALE_TEMP_SECONDS, since another process may be writing."""
    folder = Path(folder)
    if folder in _swept:
        return
    _swept.add(folder)
    now = time.time()
    try:
        for tmp in folder.glob(".*.tmp"):
            try:
                if tmp.is_file() and now - tmp.stat().st_mtime > STALE_TEMP_SECONDS:
                    tmp.unlink()
            except OSError:
                pass  # gone meanwhile, or not ours to remove
    except OSError:
        pass


def cache_dir() -> Path:
    """Where decoded arrays (and the verified source checksums) are cached: $METRIC_CACHE,
    else $METRIC_RUNS/data_cache, else <repository>/runs/data_cache, as lib.cache.runs_dir()
    places runs; never relative to the current working directory."""
    explicit = os.environ.get("METRIC_CACHE")
    if explicit:
        return Path(explicit).expanduser().resolve()
    runs = os.environ.get("METRIC_RUNS")
    return (Path(runs).expanduser() if runs else REPO_ROOT / "runs").resolve() / "data_cache"
