"""Helpers shared by the data sets read from image files (the benchmarks, a user's folder or
CSV): a Split of paths, the check that every file is there, the data set's info."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from lib.data.datasets import Dataset, Split, _counts
from lib.data.errors import _not_found

_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def _file_split(paths: list[Path], keys: Sequence, size: tuple[int, int], resize: str, **columns: Any) -> Split:
    """A Split of image files; `keys` (class ids or names) sort into labels 0..C-1."""
    labels = np.unique(np.asarray(keys), return_inverse=True)[1].reshape(-1)
    meta = pd.DataFrame({"label": labels, **columns, "path": [str(p) for p in paths]})
    return Split(labels, meta, None, list(paths), size, channels=3, resize=resize)


def _check_files(name: str, paths: Sequence[Path], how: str) -> None:
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise _not_found(f"{name} ({len(missing)} of {len(paths)} image files missing)", missing[:5], how)


def _find_dir(root: Path, candidates: Sequence[str], marker: str) -> Path | None:
    return next((root / c for c in candidates if (root / c / marker).exists()), None)


def _file_dataset(name: str, train: Split, test: Split, source: Path, options: dict, licence: str) -> Dataset:
    info = {"source": str(source), "options": options, "counts": _counts(train, test), "licence": licence}
    return Dataset(name, train, test, info)


def _paths_of(dataset: Dataset) -> list[Path]:
    """Every image file of a file-based data set, train then test."""
    return [Path(p) for split in (dataset.train, dataset.test) for p in split.paths]
