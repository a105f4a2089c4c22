"""The decoded-array cache: arrays that `build()` makes, kept as .npy files in `cache_dir()`
under a hash of what they were made from, each with a sidecar `<file>.npy.json` holding the
sha256, shape and dtype of the array. An entry is used only when it matches its sidecar; a
damaged, truncated or unverifiable entry is rebuilt (with a warning), never used."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from lib.data.locations import cache_dir, file_mode, sweep_temp_files

# Bump when the decoded arrays change for the same inputs, so old cache entries are ignored.
# 2: entries carry a checksum sidecar (entries of version 1 have none).
_CACHE_VERSION = 2


def _array_sha256(arr: np.ndarray) -> str:
    return hashlib.sha256(memoryview(np.ascontiguousarray(arr)).cast("B")).hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _atomic_write(path: Path, write: Callable) -> None:
    """`write(file)` into a temporary file beside `path`, renamed into place when complete."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, file_mode())  # mkstemp's 0600 would keep the cache from the user's group
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_verified(path: Path, count: int) -> tuple[np.ndarray | None, str | None]:
    """(the cached array, None) when it is intact, else (None, why not); (None, None) when
    there is no entry."""
    if not path.exists():
        return None, None
    try:
        meta = json.loads(_sidecar(path).read_text())
        expected = (meta["sha256"], list(meta["shape"]), meta["dtype"])
    except FileNotFoundError:
        return None, "it has no checksum file"
    except (OSError, ValueError, KeyError, TypeError) as e:
        return None, f"its checksum file is unreadable ({e})"
    try:
        arr = np.load(path)
    except (OSError, ValueError, EOFError) as e:
        return None, f"it is unreadable ({e})"
    if [list(arr.shape), str(arr.dtype)] != list(expected[1:]):
        return None, f"its shape/dtype {arr.shape} {arr.dtype} differ from the recorded {expected[1]} {expected[2]}"
    if _array_sha256(arr) != expected[0]:
        return None, "its sha256 differs from the recorded one (the file is damaged)"
    if len(arr) != count:
        return None, f"it holds {len(arr)} images, not {count}"
    return arr, None


def _cached(name: str, key: dict, count: int, build: Callable[[], np.ndarray]) -> np.ndarray:
    """The array `build()` makes, kept as .npy in cache_dir() under a hash of `key`."""
    digest = hashlib.sha256(json.dumps({**key, "version": _CACHE_VERSION}, sort_keys=True).encode()).hexdigest()
    path = cache_dir() / f"{name}-{digest[:16]}.npy"
    sweep_temp_files(path.parent)
    arr, problem = _load_verified(path, count)
    if arr is not None:
        return arr
    if problem is not None:
        warnings.warn(f"decoded-array cache {path} is not used: {problem}; decoding {name} again to rebuild it")
    arr = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"sha256": _array_sha256(arr), "shape": list(arr.shape), "dtype": str(arr.dtype), "key": key}
        _atomic_write(path, lambda f: np.save(f, arr))
        # written after the array: a reader between the two renames sees a mismatch and rebuilds
        _atomic_write(_sidecar(path), lambda f: f.write(json.dumps(meta, default=str, indent=1).encode()))
    except OSError as e:
        warnings.warn(f"could not cache decoded {name} data in {path.parent} ({e}); it is decoded again next time")
    return arr
