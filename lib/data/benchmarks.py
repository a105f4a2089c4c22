"""The photo benchmarks of deep metric learning, read from their own layouts as file paths
(decoded in `Split.read`): CUB-200-2011, Stanford Cars 196, Stanford Online Products."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from lib.data.archives import download as _download, extract
from lib.data.checksums import verify_source
from lib.data.datasets import Dataset
from lib.data.errors import CorruptDataError, DataError, _not_found
from lib.data.image_files import _check_files, _file_dataset, _file_split, _find_dir, _paths_of
from lib.data.options import _choice, _size


def _read_table(path: Path, columns: list[str]) -> pd.DataFrame:
    """One of CUB's space-separated index files."""
    return pd.read_csv(verify_source(path), sep=" ", names=columns)


_CUB_URL = "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz"


def _load_cub200(
    root: Path, *, image_size: int | Sequence[int] = 224, resize: str = "crop", download: bool = True
) -> Dataset:
    """CUB-200-2011: classes 1-100 train, 101-200 test."""
    size = _size(image_size)
    _choice("resize", resize, ("crop", "pad"))
    candidates = ("CUB_200_2011", "cub200/CUB_200_2011")
    folder = _find_dir(root, candidates, "images.txt")
    if folder is None:
        looked = [root / c / "images.txt" for c in candidates]
        how = f"download {_CUB_URL} and extract it into {root / 'cub200'} (so that {looked[1]} exists)"
        if not download:
            raise _not_found("cub200", looked, how)
        archive = root / "CUB_200_2011.tgz"
        try:
            # Caltech publishes no checksum we could verify here: download() checks the
            # archive's own gzip CRC instead, and extract() keeps nothing from a damaged one.
            if not archive.exists():
                _download(_CUB_URL, archive, sha256=None)
            extract(archive, root / "cub200")
        except CorruptDataError:
            raise
        except (DataError, OSError) as e:
            raise _not_found("cub200", looked, f"{how}. Downloading failed: {e}") from e
        archive.unlink()
        folder = root / "cub200" / "CUB_200_2011"
    df = _read_table(folder / "images.txt", ["image_id", "rel"])
    df = df.merge(_read_table(folder / "image_class_labels.txt", ["image_id", "class_id"]), on="image_id")
    df = df.merge(_read_table(folder / "classes.txt", ["class_id", "class_name"]), on="class_id")
    paths = [folder / "images" / rel for rel in df["rel"]]
    _check_files("cub200", paths, f"extract {_CUB_URL} again into {folder.parent}")
    splits = []
    for rows in (np.flatnonzero(df["class_id"] <= 100), np.flatnonzero(df["class_id"] > 100)):
        part = df.iloc[rows]
        splits.append(_file_split([paths[i] for i in rows], part["class_id"], size, resize,
                                  class_name=part["class_name"].to_numpy()))
    return _file_dataset("cub200", *splits, folder, {"image_size": size, "resize": resize},
                         "CUB-200-2011, Wah et al. (2011), Caltech; Flickr images, for non-commercial research")


def _load_cars196(root: Path, *, image_size: int | Sequence[int] = 224, resize: str = "crop") -> Dataset:
    """Stanford Cars 196 (cars_annos.mat + car_ims/): classes 1-98 train, 99-196 test."""
    from scipy.io import loadmat

    size = _size(image_size)
    _choice("resize", resize, ("crop", "pad"))
    candidates = ("cars196", "stanford_cars", ".")
    folder = _find_dir(root, candidates, "cars_annos.mat")
    if folder is None:
        raise _not_found("cars196", [root / c / "cars_annos.mat" for c in candidates], (
            "the original Stanford Cars links are dead, so it cannot be downloaded automatically: "
            f"get car_ims.tgz and cars_annos.mat from a mirror, put cars_annos.mat in {root / 'cars196'} "
            f"and extract car_ims.tgz there (giving {root / 'cars196' / 'car_ims'})"))
    try:
        mat = loadmat(verify_source(folder / "cars_annos.mat"), squeeze_me=True)
        annotations = np.atleast_1d(mat["annotations"])
        paths = [folder / str(rel) for rel in annotations["relative_im_path"]]
        class_ids = annotations["class"].astype(np.int64)
        names = np.atleast_1d(mat["class_names"]).astype(str)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CorruptDataError(f"{folder / 'cars_annos.mat'}: unreadable ({e}); get it again") from e
    _check_files("cars196", paths, f"extract car_ims.tgz into {folder}")
    splits = []
    for rows in (np.flatnonzero(class_ids <= 98), np.flatnonzero(class_ids > 98)):
        splits.append(_file_split([paths[i] for i in rows], class_ids[rows], size, resize,
                                  class_name=names[class_ids[rows] - 1]))
    return _file_dataset("cars196", *splits, folder, {"image_size": size, "resize": resize},
                         "Stanford Cars, Krause et al. (2013); for non-commercial research")


def _load_sop(root: Path, *, image_size: int | Sequence[int] = 224, resize: str = "crop") -> Dataset:
    """Stanford Online Products: its own Ebay_train.txt / Ebay_test.txt are the standard split."""
    size = _size(image_size)
    _choice("resize", resize, ("crop", "pad"))
    candidates = ("Stanford_Online_Products", "sop/Stanford_Online_Products", "sop")
    folder = _find_dir(root, candidates, "Ebay_train.txt")
    if folder is None or not (folder / "Ebay_test.txt").exists():
        looked = [root / c / f for c in candidates for f in ("Ebay_train.txt", "Ebay_test.txt")]
        raise _not_found("sop", looked, (
            "the original Stanford_Online_Products.zip link is dead, so it cannot be downloaded "
            f"automatically: get Stanford_Online_Products.zip from a mirror and unzip it into {root} "
            f"(giving {root / 'Stanford_Online_Products' / 'Ebay_train.txt'} and the image folders)"))
    splits = []
    for part in ("train", "test"):
        df = pd.read_csv(verify_source(folder / f"Ebay_{part}.txt"), sep=r"\s+")
        paths = [folder / p for p in df["path"]]
        _check_files("sop", paths, f"unzip Stanford_Online_Products.zip again into {folder.parent}")
        names = [f"{p.split('/')[0]}/{c}" for p, c in zip(df["path"], df["class_id"])]
        splits.append(_file_split(paths, df["class_id"], size, resize,
                                  class_name=names, super_class_id=df["super_class_id"].to_numpy()))
    return _file_dataset("sop", *splits, folder, {"image_size": size, "resize": resize},
                         "Stanford Online Products, Oh Song et al. (2016); for non-commercial research")


def _cub200_sources(root: Path, **options: Any) -> list[Path]:
    """The files `cub200` reads (never downloads), for data_fingerprint."""
    dataset = _load_cub200(root, **{**options, "download": False})
    folder = Path(dataset.info["source"])
    return [folder / n for n in ("images.txt", "image_class_labels.txt", "classes.txt")] + _paths_of(dataset)


def _cars196_sources(root: Path, **options: Any) -> list[Path]:
    dataset = _load_cars196(root, **options)
    return [Path(dataset.info["source"]) / "cars_annos.mat"] + _paths_of(dataset)


def _sop_sources(root: Path, **options: Any) -> list[Path]:
    dataset = _load_sop(root, **options)
    folder = Path(dataset.info["source"])
    return [folder / "Ebay_train.txt", folder / "Ebay_test.txt"] + _paths_of(dataset)
