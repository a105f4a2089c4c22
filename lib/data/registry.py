"""The data sets by name: `load_dataset`, the name -> loader table, and `data_fingerprint`,
a short digest of the source files a data set reads (for the run cache's key)."""
from __future__ import annotations

import hashlib
import inspect
import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

from lib.data.beluga import _beluga_sources, _load_beluga
from lib.data.benchmarks import _cars196_sources, _cub200_sources, _load_cars196, _load_cub200, _load_sop, _sop_sources
from lib.data.checksums import source_sha256
from lib.data.datasets import Dataset, OneShotRun
from lib.data.errors import DataNotFoundError, UnknownDatasetError, _not_found
from lib.data.folders import _csv_sources, _folder_sources, _load_csv, _load_folder
from lib.data.locations import data_root
from lib.data.omniglot import _load_omniglot, _omniglot_sources, _oneshot_sources, load_oneshot_runs
from lib.data.options import _size

# name -> (loader(root, **options), the files it reads(root, **options))
_REGISTRY: dict[str, tuple[Callable[..., Any], Callable[..., list[Path]]]] = {
    "omniglot": (_load_omniglot, _omniglot_sources),
    "beluga": (_load_beluga, _beluga_sources),
    "cub200": (_load_cub200, _cub200_sources),
    "cars196": (_load_cars196, _cars196_sources),
    "sop": (_load_sop, _sop_sources),
    "folder": (_load_folder, _folder_sources),
    "csv": (_load_csv, _csv_sources),
    # not a train/test set: load_dataset returns load_oneshot_runs(...)'s list of runs
    "omniglot_oneshot": (load_oneshot_runs, _oneshot_sources),
}
# The names `load_dataset` accepts.
DATASETS: tuple[str, ...] = tuple(_REGISTRY)


def loader_options(name: str) -> list[str]:
    """The options (`data.options` keys) that data set `name`'s loader takes, besides root and
    image_size (lib.train.check_run checks a run's options against them)."""
    if name not in _REGISTRY:
        raise UnknownDatasetError(f"unknown data set {name!r}; valid: {', '.join(DATASETS)}")
    return [p for p in inspect.signature(_REGISTRY[name][0]).parameters if p not in ("root", "image_size")]


def _loader(name: str, options: dict) -> tuple[Callable[..., Any], Callable[..., list[Path]]]:
    """The registry entry of `name`, once `options` are checked against its loader's."""
    if name not in _REGISTRY:
        raise UnknownDatasetError(f"unknown data set {name!r}; valid: {', '.join(DATASETS)}")
    loader, sources = _REGISTRY[name]
    valid = [p for p in inspect.signature(loader).parameters if p not in ("root", "image_size")]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TypeError(
            f"{name}: unknown option(s) {', '.join(unknown)}; valid options: image_size, {', '.join(valid)}"
        )
    return loader, sources


def load_dataset(
    name: str, *, root: str | os.PathLike | None = None, image_size: int | Sequence[int] | None = None,
    **options: Any,
) -> Dataset | list[OneShotRun]:
    """The data set `name` from `data_root(root)`; `image_size` None means its default.

    'omniglot_oneshot' is not a train/test set: it returns `load_oneshot_runs(...)`'s list.
    """
    loader, _ = _loader(name, options)
    if image_size is not None:
        options["image_size"] = _size(image_size)
    return loader(data_root(root), **options)


def data_fingerprint(name: str, root: str | os.PathLike | None = None, **options: Any) -> str:
    """A 16-hex-digit digest of the source files that `load_dataset(name, root=root, **options)`
    reads: their names (relative to the data root), sizes and sha256. Options that pick files
    (omniglot's background/source, folder/csv's path) matter; the others are ignored. The
    sha256 of each file is kept by its fingerprint (path, size, mtime_ns) under cache_dir(),
    so only the first call reads the files. Nothing is downloaded: data not found raises
    DataNotFoundError."""
    options.pop("image_size", None)
    _, sources = _loader(name, options)
    options.pop("download", None)
    root_path = data_root(root)
    files = list(dict.fromkeys(Path(p) for p in sources(root_path, **options)))
    try:
        hashes = source_sha256(files)
    except DataNotFoundError:
        raise
    except FileNotFoundError as e:
        missing = [p for p in files if not p.is_file()]
        raise _not_found(f"{name} ({len(missing)} of {len(files)} files missing)", missing[:5] or files[:1],
                         "copy or extract the data set again") from e
    rows = []
    for path, sha in zip(files, hashes):
        try:
            shown = path.absolute().relative_to(root_path).as_posix()
        except ValueError:
            shown = str(path.absolute())
        rows.append([shown, path.stat().st_size, sha])
    payload = json.dumps({"data_set": name, "files": sorted(rows)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
