"""A user's own images: a folder of one sub-folder per identity, or a CSV of path,label;
split by identity."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from lib.data.checksums import verify_source
from lib.data.datasets import Dataset, class_disjoint_split
from lib.data.errors import _not_found
from lib.data.image_files import _IMAGE_SUFFIXES, _check_files, _file_dataset, _file_split, _paths_of
from lib.data.options import _choice, _fraction, _size


def _own_dataset(name: str, paths: list[Path], class_names: list[str], source: Path, *, size: tuple[int, int],
                 resize: str, test_fraction: float, split_seed: int) -> Dataset:
    """A user's images, split by class."""
    full = _file_split(paths, class_names, size, resize, class_name=class_names)
    train, test = class_disjoint_split(full, test_fraction, split_seed)
    options = {"image_size": size, "resize": resize, "test_fraction": test_fraction, "split_seed": split_seed}
    return _file_dataset(name, train, test, source, options, "the user's own images")


def _load_folder(root: Path, *, path: str | None = None, test_fraction: float = 0.2, split_seed: int = 0,
                 image_size: int | Sequence[int] = 224, resize: str = "crop") -> Dataset:
    """A user's images as `<path>/<identity>/**/<image>`; `path` is relative to the data root
    (default: the data root itself). Split by identity."""
    size = _size(image_size)
    _choice("resize", resize, ("crop", "pad"))
    _fraction("test_fraction", test_fraction)
    folder = root / path if path is not None else root
    identities = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")) \
        if folder.is_dir() else []
    rows = [(f, d.name) for d in identities for f in sorted(d.rglob("*"))
            if f.suffix.lower() in _IMAGE_SUFFIXES and f.is_file()]
    if not rows:
        raise _not_found("folder", [folder / "<identity>" / "<image>"], (
            "pass root= or path= (relative to the data root) naming a folder with one sub-folder "
            "of images per identity"))
    paths, names = (list(column) for column in zip(*rows))
    return _own_dataset("folder", paths, names, folder, size=size, resize=resize,
                        test_fraction=test_fraction, split_seed=split_seed)


def _load_csv(root: Path, *, path: str = "labels.csv", test_fraction: float = 0.2, split_seed: int = 0,
              image_size: int | Sequence[int] = 224, resize: str = "crop") -> Dataset:
    """A user's images listed in a CSV with columns path,label (relative paths are read from
    the CSV's folder; `path` itself is relative to the data root). Split by label."""
    size = _size(image_size)
    _choice("resize", resize, ("crop", "pad"))
    _fraction("test_fraction", test_fraction)
    csv_path = root / path
    if not csv_path.is_file():
        raise _not_found("csv", [csv_path], (
            "pass path= (relative to the data root, or absolute) naming a CSV file with columns path,label"))
    df = pd.read_csv(verify_source(csv_path), dtype={"label": str})
    if not {"path", "label"} <= set(df.columns):
        raise ValueError(f"{csv_path}: needs columns path,label; found {', '.join(df.columns)}")
    paths = [csv_path.parent / p for p in df["path"]]
    _check_files("csv", paths, f"fix the paths in {csv_path} (relative paths are read from its folder)")
    return _own_dataset("csv", paths, df["label"].tolist(), csv_path, size=size, resize=resize,
                        test_fraction=test_fraction, split_seed=split_seed)


def _folder_sources(root: Path, **options: Any) -> list[Path]:
    """The files `folder` reads, for data_fingerprint."""
    return _paths_of(_load_folder(root, **options))


def _csv_sources(root: Path, **options: Any) -> list[Path]:
    dataset = _load_csv(root, **options)
    return [Path(dataset.info["source"])] + _paths_of(dataset)
