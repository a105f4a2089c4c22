"""Omniglot (Lake, Salakhutdinov & Tenenbaum 2015) as npz or canonical PNG zips, and Lake's
20 within-alphabet one-shot runs (all_runs.zip)."""
from __future__ import annotations

import os
import re
import zipfile
import zlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from lib.data.array_cache import _cached
from lib.data.checksums import _fingerprint, verify_source
from lib.data.datasets import Dataset, OneShotRun, Split, _counts
from lib.data.decode import _png_ink, _resize_ink
from lib.data.archives import download
from lib.data.errors import _SHARED_HINT, CorruptDataError, DataError, _not_found
from lib.data.locations import data_root
from lib.data.options import _choice, _size

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
    verify_source(path)
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
        verify_source(path)
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
    table = pd.read_csv(verify_source(table_path)) if table_path.exists() else None

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


_ONESHOT_WHAT = "omniglot_oneshot (Lake's 20 one-shot runs)"


def _oneshot_zip(root: str | os.PathLike | None, download_ok: bool) -> Path:
    """all_runs.zip in the data root's omniglot folder (fetched if absent and `download_ok`),
    checked against its SHA256SUMS entry."""
    folder = data_root(root) / "omniglot"
    path = folder / "all_runs.zip"
    what = _ONESHOT_WHAT
    if not path.exists():
        how = f"{_SHARED_HINT}, or use download=True to fetch {_OMNIGLOT_URL}{_OMNIGLOT_URL_PATH['all_runs.zip']}"
        if not download_ok:
            raise _not_found(what, [path], how)
        try:
            _fetch_omniglot(folder, "all_runs.zip")
        except CorruptDataError:
            raise
        except (DataError, OSError) as e:
            raise _not_found(what, [path], f"{how}. Downloading failed: {e}") from e
    return verify_source(path)


def _run_names(z: zipfile.ZipFile) -> tuple[list[str], list[np.ndarray]]:
    """The 800 image names of all_runs.zip, per run 20 support images (classKK) then the 20
    queries (itemKK) in order, and each run's answers (support index of each query)."""
    names, answers = [], []
    for run in range(1, 21):
        lines = z.read(f"run{run:02d}/class_labels.txt").decode().splitlines()
        pairs = sorted(line.split() for line in lines if line.strip())
        names += [f"run{run:02d}/training/class{k:02d}.png" for k in range(1, 21)]
        names += [item for item, _ in pairs]
        answers.append(np.array([int(re.search(r"class(\d+)\.png$", cls)[1]) - 1 for _, cls in pairs]))
    return names, answers


def check_oneshot_runs(root: str | os.PathLike | None = None, *, download: bool = True) -> Path:
    """Check, without decoding its images, that Lake's all_runs.zip (what `load_oneshot_runs`
    reads) is present (fetched if absent and `download`), matches its SHA256SUMS entry, and
    lists all 800 images of its 20 runs. Returns its path; raises DataNotFoundError (with how
    to get it) or CorruptDataError, as `load_oneshot_runs` would, so a trainer can call it
    before training rather than fail after."""
    path = _oneshot_zip(root, download)
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            missing = [n for n in _run_names(z)[0] if n not in names]
    except (OSError, KeyError, zipfile.BadZipFile, zlib.error, EOFError, ValueError, TypeError) as e:
        raise CorruptDataError(f"{path}: damaged or incomplete ({e}); {_REFETCH}") from e
    if missing:
        raise CorruptDataError(
            f"{path}: damaged or incomplete ({len(missing)} of 800 images missing, e.g. {missing[0]}); {_REFETCH}"
        )
    return path


def load_oneshot_runs(
    root: str | os.PathLike | None = None, image_size: int | Sequence[int] = 28, *, download: bool = True
) -> list[OneShotRun]:
    """Lake's 20 within-alphabet 20-way one-shot runs (all_runs.zip), inverted and resized like
    `omniglot`. Their images come from the evaluation set: never train on it to score them."""
    size = _size(image_size)
    path = _oneshot_zip(root, download)
    # per run: 20 support images (classKK), then the 20 queries (itemKK) in order
    try:
        with zipfile.ZipFile(path) as z:
            names, answers = _run_names(z)
            ink = np.stack([_png_ink(z.read(name)) for name in names])
    except (OSError, KeyError, zipfile.BadZipFile, zlib.error, EOFError, SyntaxError, ValueError) as e:
        raise CorruptDataError(f"{path}: damaged or incomplete ({e}); {_REFETCH}") from e
    images = _resize_ink(ink, size).reshape(20, 2, 20, 1, *size)
    return [OneShotRun(support=images[r, 0], query=images[r, 1], answers=answers[r]) for r in range(20)]


def _omniglot_sources(root: Path, *, background: str = "full", source: str = "auto", **_: Any) -> list[Path]:
    """The files `omniglot` with these options reads (never downloads), for data_fingerprint."""
    _choice("background", background, ("full", "small1", "small2", "minimal"))
    _choice("source", source, ("auto", "npz", "zip"))
    folder = root / "omniglot"
    files = [p for which in ("background", "evaluation")
             for p in _omniglot_files(folder, which, background, source, download_ok=False)[1]]
    table = folder / "alphabets.csv"
    return files + [table] if table.exists() else files


def _oneshot_sources(root: Path, **_: Any) -> list[Path]:
    return [_oneshot_zip(root, download_ok=False)]
