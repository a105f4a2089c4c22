"""The "Where's Whale-do?" beluga photo-identification set (NOAA / BOEM / Wild Me), from the
shared max-256 zip or the competition's own layout (metadata.csv + images/)."""
from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from lib.data.array_cache import _cached
from lib.data.checksums import _fingerprint, verify_source
from lib.data.datasets import Dataset, Split, _counts, class_disjoint_split
from lib.data.decode import _decode
from lib.data.errors import _SHARED_HINT, CorruptDataError, DataNotFoundError, _not_found
from lib.data.options import _choice, _fraction, _size

_BELUGA_ZIP = "beluga_whaledo_max256.zip"
_BELUGA_COLUMNS = ["image_id", "path", "viewpoint", "whale_id", "encounter_id", "date"]
_VIEWPOINT_VALUE = {"left": -1.0, "top": 0.0, "right": 1.0}
# Turn side views to portrait with the head up, as in the top views, assuming a whale shown
# from its left faces left (rotate clockwise) and one shown from its right faces right.
_SIDE_ROTATION = {"left": 270, "right": 90}


def _beluga_not_found(folder: Path) -> DataNotFoundError:
    zip_path, csv_path, image_dir = folder / _BELUGA_ZIP, folder / "metadata.csv", folder / "images"
    return _not_found("beluga", [zip_path, csv_path, image_dir], (
        f"{_SHARED_HINT}, or get the 'Where's Whale-do?' training data (LILA BC data set "
        f"beluga-id-2022) and put its metadata.csv and images/ into {folder}"))


def _load_beluga(
    root: Path,
    *,
    image_size: int | Sequence[int] = (128, 64),
    test_fraction: float = 0.2,
    split_seed: int = 0,
    viewpoint_channel: bool = False,
    rotate_sides: bool = True,
    viewpoints: Sequence[str] = ("top", "left", "right"),
    min_images: int = 1,
) -> Dataset:
    """Where's Whale-do beluga photo-ID: a class is a whale, and train/test are split by whale,
    so a whale's encounters stay on one side. RGB, padded to `image_size` (H, W)."""
    size = _size(image_size)
    _fraction("test_fraction", test_fraction)
    viewpoints = [viewpoints] if isinstance(viewpoints, str) else list(viewpoints)
    for v in viewpoints:
        _choice("viewpoints", v, tuple(_VIEWPOINT_VALUE))
    if int(min_images) < 1:
        raise ValueError(f"min_images must be at least 1, got {min_images}")
    folder = root / "beluga"
    zip_path, csv_path, image_dir = folder / _BELUGA_ZIP, folder / "metadata.csv", folder / "images"

    if zip_path.exists():
        verify_source(zip_path)
        try:
            with zipfile.ZipFile(zip_path) as z:
                meta = pd.read_csv(z.open("metadata.csv"), dtype=str)
        except (OSError, KeyError, zipfile.BadZipFile, zlib.error, EOFError, pd.errors.ParserError) as e:
            raise CorruptDataError(f"{zip_path}: damaged zip or metadata.csv ({e}); delete it and copy it again") from e
        fingerprint, source = [_fingerprint(zip_path)], f"zip: {zip_path}"
    elif csv_path.exists() and image_dir.is_dir():
        meta = pd.read_csv(verify_source(csv_path), dtype=str)
        fingerprint, source = [_fingerprint(csv_path), _fingerprint(image_dir)], f"original layout: {folder}"
    else:
        raise _beluga_not_found(folder)
    missing = [c for c in _BELUGA_COLUMNS if c not in meta.columns]
    if missing:
        raise CorruptDataError(f"{source}: metadata.csv lacks column(s) {missing}; copy the data set again")
    rotations = [_SIDE_ROTATION.get(v, 0) if rotate_sides else 0 for v in meta["viewpoint"]]

    def build() -> np.ndarray:
        out = np.empty((len(meta), 3, *size), dtype=np.uint8)
        if not zip_path.exists():
            for i, (rel, rotate) in enumerate(zip(meta["path"], rotations)):
                out[i] = _decode(folder / rel, size, 3, "pad", rotate)
            return out
        with zipfile.ZipFile(zip_path) as z:
            for i, (rel, rotate) in enumerate(zip(meta["path"], rotations)):
                try:
                    blob = z.read(rel)
                except (KeyError, zipfile.BadZipFile, zlib.error, EOFError) as e:
                    raise CorruptDataError(f"{zip_path}: cannot read {rel} ({e}); delete it and copy it again") from e
                out[i] = _decode(blob, size, 3, "pad", rotate, name=f"{zip_path}:{rel}")
        return out

    images = _cached("beluga", {"files": fingerprint, "size": size, "rotate_sides": rotate_sides}, len(meta), build)
    keep = meta["viewpoint"].isin(viewpoints)
    keep &= keep.groupby(meta["whale_id"]).transform("sum") >= int(min_images)
    meta = meta[keep].reset_index(drop=True)
    labels = np.unique(meta["whale_id"], return_inverse=True)[1].reshape(-1)
    table = meta[["image_id", "whale_id", "viewpoint", "encounter_id", "date"]].copy()
    table.insert(0, "label", labels)
    table.insert(1, "class_name", meta["whale_id"])
    extra = meta["viewpoint"].map(_VIEWPOINT_VALUE).to_numpy(np.float32) if viewpoint_channel else None
    full = Split(labels, table, images[keep.to_numpy()], None, size, channels=3, extra_channel=extra)
    train, test = class_disjoint_split(full, test_fraction, split_seed)
    options = {"image_size": size, "test_fraction": test_fraction, "split_seed": split_seed,
               "viewpoint_channel": viewpoint_channel, "rotate_sides": rotate_sides,
               "viewpoints": viewpoints, "min_images": int(min_images)}
    return Dataset("beluga", train, test, {
        "source": source,
        "options": options,
        "counts": _counts(train, test),
        "licence": "CDLA-Permissive-1.0",
        "attribution": "Cook Inlet beluga photo-identification data, "
                       "NOAA Alaska Fisheries Science Center Marine Mammal Laboratory",
    })


def _beluga_sources(root: Path, **_: Any) -> list[Path]:
    """The files `beluga` reads, for data_fingerprint: the zip, else metadata.csv and the
    images it lists."""
    folder = root / "beluga"
    zip_path, csv_path, image_dir = folder / _BELUGA_ZIP, folder / "metadata.csv", folder / "images"
    if zip_path.exists():
        return [zip_path]
    if csv_path.exists() and image_dir.is_dir():
        rel = pd.read_csv(csv_path, dtype=str, usecols=["path"])["path"]
        return [csv_path, *(folder / r for r in rel)]
    raise _beluga_not_found(folder)
