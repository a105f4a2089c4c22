"""Where the study keeps things, and how it writes a file so that a killed writer leaves no half file.

    REPO_ROOT       the checkout (lib/..)
    runs_dir()      the run cache: $METRIC_RUNS, else <checkout>/runs
    results_dir()   the results stores, one folder per profile: $METRIC_RESULTS, else <checkout>/results

Every file is written to a temporary name in its folder and renamed into place
(`atomic_write_bytes`, `write_json`), with the mode open() would give it. This module imports
nothing of lib, so every layer may use it.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


def runs_dir() -> Path:
    return Path(os.environ.get("METRIC_RUNS", REPO_ROOT / "runs"))


def results_dir() -> Path:
    return Path(os.environ.get("METRIC_RESULTS", REPO_ROOT / "results"))


def _umask() -> int:
    """This process's umask, read from /proc where it can be (no other thread sees it change)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # the mode open() would give, not mkstemp's 0600
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1, default=json_default).encode())


def json_default(obj: Any) -> Any:
    import numpy as np  # numpy's scalars and arrays as JSON; lib.config imports this module without numpy

    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())
