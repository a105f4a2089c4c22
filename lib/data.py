"""Data sets by name, as train/test splits with disjoint classes (the zero-shot protocol).

`load_dataset(name, root=..., image_size=..., **options)` is the one entry point; `DATASETS`
maps each name to its loader. Small sets (Omniglot, beluga) are decoded once into uint8
arrays at the target size and cached under `cache_dir()`, because the shared data folder is
read-only and decoding is the slow part. Large photo sets (CUB, Cars, SOP, a user's folder
or CSV) keep file paths and decode in `Split.read`, which DataLoader workers can call.

Every missing file raises `DataNotFoundError` saying which data set, where it looked and how
to get it; every damaged file raises `CorruptDataError` saying which file and what to do.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import inspect
import io
import json
import math
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image

# Bump when the decoded arrays change for the same inputs, so old cache entries are ignored.
_CACHE_VERSION = 1
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
_SHARED_HINT = "run with METRIC_DATA=../shared/data (the project's shared copy)"


# --------------------------------------------------------------------------- locations, errors


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data folder: `root` if given (the params key), else $METRIC_DATA, else ./data."""
    chosen = root if root is not None else os.environ.get("METRIC_DATA") or "data"
    return Path(chosen).expanduser().resolve()


def cache_dir() -> Path:
    """Where decoded arrays are cached: $METRIC_CACHE, else ./runs/data_cache."""
    return Path(os.environ.get("METRIC_CACHE") or Path("runs") / "data_cache").expanduser().resolve()


class DataError(RuntimeError):
    """Base class of the data layer's errors."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A data set (or one of its files) is not where we looked."""


class CorruptDataError(DataError):
    """A file exists but cannot be trusted: bad archive, checksum mismatch, unreadable image."""


def _not_found(what: str, looked: Sequence[Path], how: str) -> DataNotFoundError:
    places = "\n".join(f"  - {p}" for p in dict.fromkeys(looked))
    return DataNotFoundError(f"{what}: data not found. Looked for:\n{places}\nHow to get it: {how}")


# --------------------------------------------------------------------------- splits


def _as_index(idx: Any, n: int) -> np.ndarray:
    """Any of int, slice, bool mask, sequence, array or tensor -> int64 positions."""
    if isinstance(idx, slice):
        return np.arange(n)[idx]
    if isinstance(idx, torch.Tensor):
        idx = idx.cpu().numpy()
    out = np.asarray(idx)
    if out.dtype == bool:
        return np.flatnonzero(out)
    return out.reshape(-1).astype(np.int64)


def _size(image_size: int | Sequence[int]) -> tuple[int, int]:
    """An int (square) or (H, W) -> (H, W)."""
    if isinstance(image_size, (int, np.integer)):
        return int(image_size), int(image_size)
    if len(image_size) == 2 and all(int(s) > 0 for s in image_size):
        return int(image_size[0]), int(image_size[1])
    raise ValueError(f"image_size must be an int or (H, W), got {image_size!r}")


@dataclass(eq=False)
class Split:
    """Images and labels of one side of a data set; labels are contiguous 0..C-1."""

    labels: np.ndarray
    meta: pd.DataFrame
    images: np.ndarray | None
    paths: list[Path] | None
    image_size: tuple[int, int]
    channels: int
    extra_channel: np.ndarray | None = None
    resize: str = "pad"

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if (self.images is None) == (self.paths is None):
            raise ValueError("a Split holds either images or paths, not both or neither")
        held = self.images if self.images is not None else self.paths
        if not len(self.labels) == len(self.meta) == len(held):
            raise ValueError(
                f"labels ({len(self.labels)}), meta ({len(self.meta)}) and images ({len(held)}) differ in length"
            )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) else 0

    def read(self, idx: Any) -> torch.Tensor:
        """uint8 (len(idx), C, H, W), gathered from memory or decoded from the files."""
        idx = _as_index(idx, len(self))
        if self.images is not None:
            return torch.from_numpy(self.images[idx])
        if len(idx) == 0:
            return torch.empty((0, self.channels, *self.image_size), dtype=torch.uint8)
        return torch.from_numpy(
            np.stack([_decode(self.paths[i], self.image_size, self.channels, self.resize) for i in idx])
        )

    def subset(self, idx: Any) -> Split:
        """The rows `idx`, labels re-made contiguous (in the order of the old labels)."""
        idx = _as_index(idx, len(self))
        labels = np.unique(self.labels[idx], return_inverse=True)[1].reshape(-1).astype(np.int64)
        return Split(
            labels=labels,
            meta=self.meta.iloc[idx].reset_index(drop=True).assign(label=labels),
            images=self.images[idx] if self.images is not None else None,
            paths=[self.paths[i] for i in idx] if self.paths is not None else None,
            image_size=self.image_size,
            channels=self.channels,
            extra_channel=self.extra_channel[idx] if self.extra_channel is not None else None,
            resize=self.resize,
        )


@dataclass(eq=False)
class Dataset:
    name: str
    train: Split
    test: Split  # classes disjoint from train
    info: dict


@dataclass(eq=False)
class OneShotRun:
    """One of Lake's 20-way one-shot runs: match each query to the support image of its class."""

    support: np.ndarray  # uint8 (20, 1, H, W), one image per class
    query: np.ndarray  # uint8 (20, 1, H, W)
    answers: np.ndarray  # (20,) index into support of each query's class


def class_disjoint_split(
    split: Split, fraction: float, seed: int, group: str | None = None
) -> tuple[Split, Split]:
    """Split by class (or by the meta column `group`, e.g. 'alphabet'): the second part gets
    about `fraction` of the classes (groups), at least one and never all when 0 < fraction < 1."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    keys = split.meta[group].to_numpy() if group is not None else split.labels
    units = np.unique(keys)
    n_second = round(fraction * len(units))
    if 0.0 < fraction < 1.0 and len(units) > 1:
        n_second = min(max(n_second, 1), len(units) - 1)
    chosen = np.random.default_rng(seed).permutation(units)[:n_second]
    in_second = np.isin(keys, chosen)
    return split.subset(~in_second), split.subset(in_second)


def _counts(train: Split, test: Split) -> dict:
    return {
        "train_images": len(train),
        "train_classes": train.num_classes,
        "test_images": len(test),
        "test_classes": test.num_classes,
    }


# --------------------------------------------------------------------------- download, extract


def _check_archive(path: Path, name: str) -> None:
    """Read a zip or tar archive through so that its own CRCs catch a damaged file."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
            if bad is not None:
                raise CorruptDataError(f"{name}: member {bad} of the zip fails its CRC check")
            return
        with tarfile.open(path) as tar:
            for member in tar:
                if member.isfile():
                    with tar.extractfile(member) as f:
                        while f.read(1 << 20):
                            pass
    except (zipfile.BadZipFile, tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise CorruptDataError(f"{name}: not a readable zip or tar archive ({e})") from e


def download(url: str, dest: Path, sha256: str | None) -> Path:
    """Fetch `url` to `dest` through a temporary file beside it, renamed only once verified.

    `sha256=None` is for sources whose checksum cannot be known in advance: the file must then
    be a zip or tar archive, and its own CRCs are checked instead. Works with file:// URLs.
    """
    dest = Path(dest)
    # Folders made only for this download go again if it fails: an empty ./data/<set> left
    # behind would later pass for a data root.
    created = [p for p in (dest.parent, *dest.parent.parents) if not p.exists()]
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    while chunk := response.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
            except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as e:
                raise DataError(f"could not download {url}: {e}") from e
        if sha256 is None:
            _check_archive(tmp, url)
        elif digest.hexdigest() != sha256.lower():
            raise CorruptDataError(
                f"{url}: checksum mismatch (sha256 {digest.hexdigest()}, expected {sha256}); "
                "the download was deleted. Try again; if it persists, the file at the source has changed."
            )
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        for folder in created:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return dest


def extract(archive: Path, dest: Path) -> Path:
    """Unpack a zip or tar archive so that `dest` holds its top-level entries.

    The archive is unpacked into a temporary folder beside `dest` and renamed into place only
    when complete, so an existing `dest` is always a whole extraction.
    """
    archive, dest = Path(archive), Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest} already exists; delete it to extract {archive.name} again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part"))
    try:
        try:
            if zipfile.is_zipfile(archive):
                with zipfile.ZipFile(archive) as z:
                    z.extractall(tmp)
            else:
                with tarfile.open(archive) as tar:
                    tar.extractall(tmp, filter="data")
        except (zipfile.BadZipFile, tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error) as e:
            raise CorruptDataError(f"{archive}: damaged archive ({e}); delete it and download it again") from e
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


# --------------------------------------------------------------------------- decoding, cache


def _decode(
    source: Path | bytes,
    size: tuple[int, int],
    channels: int,
    resize: str,
    rotate: int = 0,
    name: str | None = None,
) -> np.ndarray:
    """One image file -> uint8 (C, H, W) fitted to `size`; `rotate` is 90 or 270 degrees
    counter-clockwise, applied before fitting."""
    height, width = size
    mode = "L" if channels == 1 else "RGB"
    where = name or str(source)
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            w, h = img.size[::-1] if rotate else img.size
            scale = (min if resize == "pad" else max)(width / w, height / h)
            need = (math.ceil(w * scale), math.ceil(h * scale))
            # JPEGs decode directly at 1/2, 1/4 or 1/8 scale: the bulk of the speed-up for photos
            img.draft(mode, need[::-1] if rotate else need)
            img = img.convert(mode)
            if rotate:
                img = img.transpose(Image.Transpose.ROTATE_90 if rotate == 90 else Image.Transpose.ROTATE_270)
            w, h = img.size
            if resize == "pad":
                scale = min(width / w, height / h)
                fitted = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR)
                img = Image.new(mode, (width, height))
                img.paste(fitted, ((width - fitted.width) // 2, (height - fitted.height) // 2))
            else:
                scale = max(width / w, height / h)
                # width / (width / w) can round to just above w: a negative box PIL refuses
                crop_w, crop_h = min(w, width / scale), min(h, height / scale)
                box = ((w - crop_w) / 2, (h - crop_h) / 2, (w + crop_w) / 2, (h + crop_h) / 2)
                img = img.resize((width, height), Image.Resampling.BILINEAR, box=box)
    except FileNotFoundError as e:
        raise DataNotFoundError(f"{where}: image file missing; copy or extract the data set again") from e
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise CorruptDataError(
            f"{where}: unreadable image ({e}); delete the data set's files and download or extract them again"
        ) from e
    arr = np.asarray(img)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _fingerprint(path: Path) -> list:
    path = path.resolve()  # a linked copy of a file shares its cache entry
    stat = path.stat()
    return [str(path), stat.st_size, stat.st_mtime_ns]


def _cached(name: str, key: dict, count: int, build: Callable[[], np.ndarray]) -> np.ndarray:
    """The array `build()` makes, kept as .npy in cache_dir() under a hash of `key`."""
    digest = hashlib.sha256(json.dumps({**key, "version": _CACHE_VERSION}, sort_keys=True).encode()).hexdigest()
    path = cache_dir() / f"{name}-{digest[:16]}.npy"
    if path.exists():
        try:
            arr = np.load(path)
            if len(arr) == count:
                return arr
        except (OSError, ValueError, EOFError):
            pass  # only ever our own file: rebuild it below
    arr = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, arr)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as e:
        warnings.warn(f"could not cache decoded {name} data in {path.parent} ({e}); it is decoded again next time")
    return arr


def _resize_ink(ink: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """bool (N, h, w) ink masks -> uint8 (N, 1, H, W), ink 255, antialiased, in torch batches."""
    out = np.empty((len(ink), 1, *size), dtype=np.uint8)
    for start in range(0, len(ink), 4096):
        x = torch.from_numpy(ink[start : start + 4096]).to(torch.float32).mul_(255).unsqueeze(1)
        if x.shape[-2:] != size:
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        out[start : start + len(x)] = x.round_().clamp_(0, 255).to(torch.uint8).numpy()
    return out


def _png_ink(data: bytes) -> np.ndarray:
    """Omniglot PNG (black ink on white) -> bool mask, True = ink."""
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("L")) < 128


def _choice(option: str, value: Any, valid: Sequence) -> Any:
    if value not in valid:
        raise ValueError(f"{option}={value!r} is not valid; choose from {', '.join(map(repr, valid))}")
    return value


def _fraction(option: str, value: float) -> float:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{option} must be strictly between 0 and 1, got {value}")
    return float(value)


# --------------------------------------------------------------------------- Omniglot

_OMNIGLOT_URL = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/"
# From ../shared/data/omniglot/SHA256SUMS. The full images_background.zip and
# images_evaluation.zip are not available offline, so their checksums cannot be known here:
# they are downloaded with sha256=None, which checks every member's zip CRC instead.
_OMNIGLOT_SHA256 = {
    "images_background_small1.zip": "f38eb80f801274ac2b4dff5b24289016bfaba4a7d5bb50deebf27104ad6cb8a4",
    "images_background_small2.zip": "3ccaa407515a8778e5d0861875af38b17e418f301ad5bb3b5a6b65d901a41c7f",
    "all_runs.zip": "437c1eeab0af8484112e1b4cc0f3d541ec727f7c47b9b202da738af9dfd6c325",
}
_OMNIGLOT_URL_PATH = {"all_runs.zip": "one-shot-classification/all_runs.zip"}
# Lake's two "minimal" background splits: the alphabets of images_background_small1/2.zip.
_OMNIGLOT_SMALL = {
    "small1": ("Balinese", "Early Aramaic", "Greek", "Korean", "Latin"),
    "small2": ("Greek", "Japanese (Katakana)", "Latin", "Sanskrit", "Tagalog"),
}
_OMNIGLOT_SMALL["minimal"] = tuple(dict.fromkeys(_OMNIGLOT_SMALL["small1"] + _OMNIGLOT_SMALL["small2"]))
_OMNIGLOT_FIRST_ID = {"background": 1, "evaluation": 965}  # npz labels = character id - this
_OMNIGLOT_PNG = re.compile(
    r"^[^/]+/(?P<alphabet>[^/]+)/character(?P<character>\d+)/(?P<char_id>\d+)_(?P<drawer>\d+)\.png$"
)
_REFETCH = "delete it and re-run (it is downloaded again), or copy it again"


def _alphabet_key(name: str) -> str:
    """Canonical folder names ('Japanese_(katakana)') and alphabets.csv names
    ('Japanese (Katakana)') differ in spelling only; compare them by this key."""
    return re.sub(r"[^a-z0-9]", "", name.casefold())


def _fetch_omniglot(folder: Path, filename: str) -> Path:
    path = folder / filename
    if path.exists():
        return path
    url = _OMNIGLOT_URL + _OMNIGLOT_URL_PATH.get(filename, filename)
    return download(url, path, _OMNIGLOT_SHA256.get(filename))


def _omniglot_files(
    folder: Path, which: str, background: str, source: str, download_ok: bool
) -> tuple[str, list[Path]]:
    """The files that hold one Omniglot set: ('npz', [file]) or ('zip', [files])."""
    npz = folder / f"images_{which}.npz"
    full_zip = folder / f"images_{which}.zip"
    if which == "evaluation" or background == "full":
        wanted = [full_zip]
    else:
        parts = ("small1", "small2") if background == "minimal" else (background,)
        wanted = [folder / f"images_background_{part}.zip" for part in parts]
    if source != "zip" and npz.exists():
        return "npz", [npz]
    if source != "npz":
        if all(p.exists() for p in wanted):
            return "zip", wanted
        if full_zip.exists():  # the small sets are alphabets of the full one: filtered later
            return "zip", [full_zip]
    looked = ([npz] if source != "zip" else []) + ([*wanted, full_zip] if source != "npz" else [])
    how = f"{_SHARED_HINT}, or use source='auto' and download=True to fetch the canonical zips from {_OMNIGLOT_URL}"
    if source != "npz" and download_ok:
        try:
            return "zip", [_fetch_omniglot(folder, p.name) for p in wanted]
        except CorruptDataError:
            raise
        except (DataError, OSError) as e:
            how += f". Downloading failed: {e}"
    raise _not_found(f"omniglot ({which} set, source={source!r})", looked, how)


def _omniglot_from_npz(path: Path, which: str, size: tuple[int, int]) -> tuple[np.ndarray, pd.DataFrame]:
    """Images and (char_id, drawer) index of an npz set; its bool images are True = paper."""
    try:
        with np.load(path) as npz:
            labels = npz["labels"]
            index = pd.DataFrame({
                "char_id": labels.reshape(-1) + _OMNIGLOT_FIRST_ID[which],
                "drawer": np.tile(np.arange(1, labels.shape[1] + 1), labels.shape[0]),
            })

            def build() -> np.ndarray:
                paper = npz["images"]
                return _resize_ink(~paper.reshape(-1, *paper.shape[-2:]), size)

            key = {"files": [_fingerprint(path)], "size": size}
            images = _cached(f"omniglot-{which}", key, len(index), build)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise CorruptDataError(f"{path}: unreadable npz ({e}); delete it and copy it again") from e
    return images, index


def _omniglot_from_zips(paths: list[Path], which: str, size: tuple[int, int]) -> tuple[np.ndarray, pd.DataFrame]:
    """Images and index of canonical zips. A file name's character id is global, so the images
    sort into the npz's (character, drawer) order."""
    rows = []
    for path in paths:
        try:
            with zipfile.ZipFile(path) as z:
                for member in z.namelist():
                    if m := _OMNIGLOT_PNG.match(member):
                        numbers = (int(m["character"]), int(m["char_id"]), int(m["drawer"]))
                        rows.append((path, member, m["alphabet"], *numbers))
        except (OSError, zipfile.BadZipFile) as e:
            raise CorruptDataError(f"{path}: damaged zip ({e}); {_REFETCH}") from e
    index = pd.DataFrame(rows, columns=["zip", "member", "folder_alphabet", "character", "char_id", "drawer"])
    # Greek and Latin are in both small zips: keep one copy
    index = index.drop_duplicates(["char_id", "drawer"]).sort_values(["char_id", "drawer"], ignore_index=True)

    def build() -> np.ndarray:
        ink = np.empty((len(index), 105, 105), dtype=bool)
        for path, rows_of_zip in index.groupby("zip", sort=False).groups.items():
            try:
                with zipfile.ZipFile(path) as z:
                    for i in rows_of_zip:
                        ink[i] = _png_ink(z.read(index.at[i, "member"]))
            except (OSError, zipfile.BadZipFile, zlib.error, EOFError, SyntaxError, ValueError) as e:
                raise CorruptDataError(f"{path}: damaged zip or PNG ({e}); {_REFETCH}") from e
        return _resize_ink(ink, size)

    key = {"files": [_fingerprint(p) for p in paths], "size": size}
    return _cached(f"omniglot-{which}-zip", key, len(index), build), index


def _omniglot_meta(index: pd.DataFrame, table: pd.DataFrame | None, table_path: Path) -> pd.DataFrame:
    """Alphabet and character number of each image, from alphabets.csv where it covers the
    character (so both sources name alphabets alike), else from the zip's folder names."""
    char_ids = index["char_id"].to_numpy()
    alphabet = np.full(len(index), "", dtype=object)
    character = np.zeros(len(index), dtype=np.int64)
    covered = np.zeros(len(index), dtype=bool)
    if table is not None:
        for name, first, last in table[["alphabet", "first_char_id", "last_char_id"]].itertuples(index=False):
            rows = (char_ids >= first) & (char_ids <= last)
            alphabet[rows], character[rows] = name, char_ids[rows] - first + 1
            covered |= rows
    if not covered.all():
        if "folder_alphabet" not in index:
            raise _not_found("omniglot (alphabets.csv, needed with the npz files)", [table_path], _SHARED_HINT)
        alphabet[~covered] = index["folder_alphabet"].str.replace("_", " ").to_numpy()[~covered]
        character[~covered] = index["character"].to_numpy()[~covered]
    return pd.DataFrame(
        {"alphabet": alphabet, "character": character, "drawer": index["drawer"].to_numpy(), "char_id": char_ids}
    )


def _load_omniglot(
    root: Path,
    *,
    image_size: int | Sequence[int] = 28,
    background: str = "full",
    alphabets: Sequence[str] | None = None,
    source: str = "auto",
    download: bool = True,
) -> Dataset:
    """Omniglot: train = background set, test = evaluation set; a class is a character.

    `background` picks the full background set or Lake's small1/small2 ('minimal' = both).
    `alphabets` restricts each set to the listed alphabets that belong to it; a set none of
    whose alphabets are listed stays whole. `source` 'auto' reads each set's npz if present,
    else its zip(s). Ink is bright (255) on a black (0) page, resized with antialiasing.
    """
    size = _size(image_size)
    _choice("background", background, ("full", "small1", "small2", "minimal"))
    _choice("source", source, ("auto", "npz", "zip"))
    alphabets = [alphabets] if isinstance(alphabets, str) else alphabets
    folder = root / "omniglot"
    table_path = folder / "alphabets.csv"
    table = pd.read_csv(table_path) if table_path.exists() else None

    images, metas, sources = {}, {}, {}
    for which in ("background", "evaluation"):
        kind, paths = _omniglot_files(folder, which, background, source, download)
        read = _omniglot_from_npz if kind == "npz" else _omniglot_from_zips
        images[which], index = read(paths[0] if kind == "npz" else paths, which, size)
        metas[which] = _omniglot_meta(index, table, table_path)
        sources[which] = f"{kind}: {', '.join(map(str, paths))}"

    known = {_alphabet_key(a): a for meta in metas.values() for a in meta["alphabet"].unique()}
    unknown = [a for a in alphabets or () if _alphabet_key(a) not in known]
    if unknown:
        raise ValueError(f"omniglot: unknown alphabet(s) {unknown}; valid names: {', '.join(sorted(known.values()))}")
    chosen = {_alphabet_key(a) for a in alphabets or ()}

    splits = {}
    for which, meta in metas.items():
        keys = set(meta["alphabet"].map(_alphabet_key))
        listed = keys & chosen
        allowed = listed or keys
        if which == "background" and background != "full":
            small = {_alphabet_key(a) for a in _OMNIGLOT_SMALL[background]}
            outside = sorted(known[k] for k in listed - small)
            if outside:
                raise ValueError(f"omniglot: alphabet(s) {outside} are not in background={background!r}, "
                                 f"whose alphabets are {', '.join(_OMNIGLOT_SMALL[background])}")
            allowed &= small
        keep = meta["alphabet"].map(_alphabet_key).isin(allowed).to_numpy()
        meta = meta[keep].reset_index(drop=True)
        labels = np.unique(meta["char_id"], return_inverse=True)[1].reshape(-1)
        meta.insert(0, "label", labels)
        meta.insert(1, "class_name", meta["alphabet"] + "/character" + meta["character"].map("{:02d}".format))
        splits[which] = Split(labels, meta, images[which][keep], None, size, channels=1)

    train, test = splits["background"], splits["evaluation"]
    return Dataset("omniglot", train, test, {
        "source": {"train": sources["background"], "test": sources["evaluation"]},
        "options": {"image_size": size, "background": background, "alphabets": alphabets, "source": source},
        "counts": _counts(train, test),
        "licence": "MIT; Lake, Salakhutdinov & Tenenbaum (2015), Human-level concept learning "
                   "through probabilistic program induction, Science; github.com/brendenlake/omniglot",
    })


def load_oneshot_runs(
    root: str | os.PathLike | None = None, image_size: int | Sequence[int] = 28, *, download: bool = True
) -> list[OneShotRun]:
    """Lake's 20 within-alphabet 20-way one-shot runs (all_runs.zip), inverted and resized like
    `omniglot`. Their images come from the evaluation set: never train on it to score them."""
    size = _size(image_size)
    folder = data_root(root) / "omniglot"
    path = folder / "all_runs.zip"
    what = "omniglot_oneshot (Lake's 20 one-shot runs)"
    if not path.exists():
        how = f"{_SHARED_HINT}, or use download=True to fetch {_OMNIGLOT_URL}{_OMNIGLOT_URL_PATH['all_runs.zip']}"
        if not download:
            raise _not_found(what, [path], how)
        try:
            _fetch_omniglot(folder, "all_runs.zip")
        except CorruptDataError:
            raise
        except (DataError, OSError) as e:
            raise _not_found(what, [path], f"{how}. Downloading failed: {e}") from e
    # per run: 20 support images (classKK), then the 20 queries (itemKK) in order
    names, answers = [], []
    try:
        with zipfile.ZipFile(path) as z:
            for run in range(1, 21):
                lines = z.read(f"run{run:02d}/class_labels.txt").decode().splitlines()
                pairs = sorted(line.split() for line in lines if line.strip())
                names += [f"run{run:02d}/training/class{k:02d}.png" for k in range(1, 21)]
                names += [item for item, _ in pairs]
                answers.append(np.array([int(re.search(r"class(\d+)\.png$", cls)[1]) - 1 for _, cls in pairs]))
            ink = np.stack([_png_ink(z.read(name)) for name in names])
    except (OSError, KeyError, zipfile.BadZipFile, zlib.error, EOFError, SyntaxError, ValueError) as e:
        raise CorruptDataError(f"{path}: damaged or incomplete ({e}); {_REFETCH}") from e
    images = _resize_ink(ink, size).reshape(20, 2, 20, 1, *size)
    return [OneShotRun(support=images[r, 0], query=images[r, 1], answers=answers[r]) for r in range(20)]


# --------------------------------------------------------------------------- beluga

_BELUGA_ZIP = "beluga_whaledo_max256.zip"
_BELUGA_COLUMNS = ["image_id", "path", "viewpoint", "whale_id", "encounter_id", "date"]
_VIEWPOINT_VALUE = {"left": -1.0, "top": 0.0, "right": 1.0}
# Turn side views to portrait with the head up, as in the top views, assuming a whale shown
# from its left faces left (rotate clockwise) and one shown from its right faces right.
_SIDE_ROTATION = {"left": 270, "right": 90}


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
        try:
            with zipfile.ZipFile(zip_path) as z:
                meta = pd.read_csv(z.open("metadata.csv"), dtype=str)
        except (OSError, KeyError, zipfile.BadZipFile, zlib.error, EOFError, pd.errors.ParserError) as e:
            raise CorruptDataError(f"{zip_path}: damaged zip or metadata.csv ({e}); delete it and copy it again") from e
        fingerprint, source = [_fingerprint(zip_path)], f"zip: {zip_path}"
    elif csv_path.exists() and image_dir.is_dir():
        meta = pd.read_csv(csv_path, dtype=str)
        fingerprint, source = [_fingerprint(csv_path), _fingerprint(image_dir)], f"original layout: {folder}"
    else:
        raise _not_found("beluga", [zip_path, csv_path, image_dir], (
            f"{_SHARED_HINT}, or get the 'Where's Whale-do?' training data (LILA BC data set "
            f"beluga-id-2022) and put its metadata.csv and images/ into {folder}"))
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


# --------------------------------------------------------------------------- file-based sets


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


def _read_table(path: Path, columns: list[str]) -> pd.DataFrame:
    """One of CUB's space-separated index files."""
    return pd.read_csv(path, sep=" ", names=columns)


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
                download(_CUB_URL, archive, sha256=None)
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
        mat = loadmat(folder / "cars_annos.mat", squeeze_me=True)
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
        df = pd.read_csv(folder / f"Ebay_{part}.txt", sep=r"\s+")
        paths = [folder / p for p in df["path"]]
        _check_files("sop", paths, f"unzip Stanford_Online_Products.zip again into {folder.parent}")
        names = [f"{p.split('/')[0]}/{c}" for p, c in zip(df["path"], df["class_id"])]
        splits.append(_file_split(paths, df["class_id"], size, resize,
                                  class_name=names, super_class_id=df["super_class_id"].to_numpy()))
    return _file_dataset("sop", *splits, folder, {"image_size": size, "resize": resize},
                         "Stanford Online Products, Oh Song et al. (2016); for non-commercial research")


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
    df = pd.read_csv(csv_path, dtype={"label": str})
    if not {"path", "label"} <= set(df.columns):
        raise ValueError(f"{csv_path}: needs columns path,label; found {', '.join(df.columns)}")
    paths = [csv_path.parent / p for p in df["path"]]
    _check_files("csv", paths, f"fix the paths in {csv_path} (relative paths are read from its folder)")
    return _own_dataset("csv", paths, df["label"].tolist(), csv_path, size=size, resize=resize,
                        test_fraction=test_fraction, split_seed=split_seed)


# --------------------------------------------------------------------------- registry

DATASETS: dict[str, Callable[..., Dataset]] = {
    "omniglot": _load_omniglot,
    "beluga": _load_beluga,
    "cub200": _load_cub200,
    "cars196": _load_cars196,
    "sop": _load_sop,
    "folder": _load_folder,
    "csv": _load_csv,
}


def load_dataset(
    name: str, *, root: str | os.PathLike | None = None, image_size: int | Sequence[int] | None = None,
    **options: Any,
) -> Dataset | list[OneShotRun]:
    """The data set `name` from `data_root(root)`; `image_size` None means its default.

    'omniglot_oneshot' is not a train/test set: it returns `load_oneshot_runs(...)`'s list.
    """
    loader = load_oneshot_runs if name == "omniglot_oneshot" else DATASETS.get(name)
    if loader is None:
        raise ValueError(f"unknown data set {name!r}; valid: {', '.join([*DATASETS, 'omniglot_oneshot'])}")
    valid = [p for p in inspect.signature(loader).parameters if p not in ("root", "image_size")]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TypeError(
            f"{name}: unknown option(s) {', '.join(unknown)}; valid options: image_size, {', '.join(valid)}"
        )
    if image_size is not None:
        options["image_size"] = _size(image_size)
    return loader(data_root(root), **options)
