"""Reliability of lib.data (issue 17), one test per probe: a bit-rotted decoded-array cache,
source files checked against SHA256SUMS, the cache's place, unsafe archives, the one-shot
runs' early check, the data fingerprint, unknown data set names."""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lib import data
from lib.data import checksums
from lib.data import (
    CorruptDataError,
    DataError,
    DataNotFoundError,
    UnsafeArchiveError,
    check_oneshot_runs,
    data_fingerprint,
    load_dataset,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch) -> Path:
    """An empty data cache, and no checksum remembered by this process."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("METRIC_CACHE", str(cache))
    monkeypatch.setattr(checksums, "_known", {})
    return cache


@pytest.fixture
def hash_calls(monkeypatch) -> list[str]:
    """The files that checksums hashes (read through), in order."""
    calls = []
    real = checksums._hash_file

    def counting(path: str) -> str:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(checksums, "_hash_file", counting)
    return calls


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def flip_byte(path: Path, offset: int | None = None) -> None:
    """Change one byte in the middle of a file, and move its mtime on (as a copy would), so
    that its fingerprint (path, size, mtime_ns) changes even on a coarse-clock file system."""
    before = path.stat()
    blob = bytearray(path.read_bytes())
    offset = len(blob) // 2 if offset is None else offset
    blob[offset] ^= 0xFF
    path.write_bytes(bytes(blob))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 2_000_000_000))


def oneshot_root(tmp_path: Path, shared_data: Path, sums: bool = True) -> Path:
    """A data root holding a writable copy of all_runs.zip and, if `sums`, a SHA256SUMS for it."""
    folder = tmp_path / "root" / "omniglot"
    folder.mkdir(parents=True)
    shutil.copyfile(shared_data / "omniglot" / "all_runs.zip", folder / "all_runs.zip")
    if sums:
        sha = sha256_of(folder / "all_runs.zip")
        (folder / "SHA256SUMS").write_text(f"{'0' * 64}  other.zip\n{sha}  all_runs.zip\n")
    return folder.parent


# --------------------------------------------------------------------------- a. cache checksums


@pytest.mark.slow
def test_bit_rotted_cache_file_is_rebuilt_never_used(fresh_cache, shared_data):
    first = load_dataset("omniglot", root=shared_data, image_size=20)
    entries = sorted(fresh_cache.glob("omniglot-*.npy"))
    assert len(entries) == 2
    for entry in entries:  # each array carries its checksum
        meta = json.loads(Path(f"{entry}.json").read_text())
        assert len(meta["sha256"]) == 64 and meta["dtype"] == "uint8"

    # 4 KiB in the middle of the background entry overwritten with zeros (where it was not zero)
    victim = next(e for e in entries if "background" in e.name)
    blob = bytearray(victim.read_bytes())
    start = len(blob) // 2
    while not any(blob[start : start + 4096]):
        start += 4096
    blob[start : start + 4096] = bytes(4096)
    victim.write_bytes(bytes(blob))

    with pytest.warns(UserWarning, match="sha256 differs") as caught:
        second = load_dataset("omniglot", root=shared_data, image_size=20)
    assert any(str(victim) in str(w.message) for w in caught)
    assert np.array_equal(second.train.images, first.train.images)  # rebuilt, not the rotten bytes
    assert np.array_equal(second.test.images, first.test.images)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt entry is whole again
        third = load_dataset("omniglot", root=shared_data, image_size=20)
    assert np.array_equal(third.train.images, first.train.images)

    # an entry without its checksum file is not trusted either
    Path(f"{victim}.json").unlink()
    with pytest.warns(UserWarning, match="no checksum"):
        load_dataset("omniglot", root=shared_data, image_size=20)
    assert Path(f"{victim}.json").exists()


# --------------------------------------------------------------------------- b. SHA256SUMS


def test_source_files_are_checked_against_sha256sums_once(fresh_cache, tmp_path, shared_data, hash_calls):
    root = oneshot_root(tmp_path, shared_data)
    path = root / "omniglot" / "all_runs.zip"
    assert check_oneshot_runs(root, download=False) == path
    assert hash_calls == [str(path.resolve())]
    store = json.loads((fresh_cache / "source_sha256.json").read_text())
    assert store["files"][str(path.resolve())][2] == sha256_of(path)

    # another process (nothing in memory) finds the verified fingerprint in the store
    checksums._known.clear()
    assert len(load_dataset("omniglot_oneshot", root=root)) == 20
    assert len(hash_calls) == 1

    flip_byte(path)
    actual = sha256_of(path)
    with pytest.raises(CorruptDataError) as err:
        load_dataset("omniglot_oneshot", root=root)
    message = str(err.value)
    expected = (root / "omniglot" / "SHA256SUMS").read_text().split()[2]
    assert str(path) in message and expected in message and actual in message
    assert "copy it again" in message and "download it again" in message
    with pytest.raises(CorruptDataError, match="checksum mismatch"):
        check_oneshot_runs(root, download=False)
    assert len(hash_calls) == 2  # the changed file once, not at every use


def test_shared_sha256sums_are_read(shared_data):
    expected = data.expected_sha256(shared_data / "omniglot" / "all_runs.zip")
    assert expected == ("437c1eeab0af8484112e1b4cc0f3d541ec727f7c47b9b202da738af9dfd6c325",
                        shared_data / "omniglot" / "SHA256SUMS")
    assert data.expected_sha256(shared_data / "beluga" / "beluga_whaledo_max256.zip")[0].startswith("50e28de1")
    assert data.expected_sha256(shared_data / "omniglot" / "alphabets.csv") is None  # not listed


# --------------------------------------------------------------------------- c. cache location


def test_cache_dir_does_not_follow_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("METRIC_CACHE", raising=False)
    monkeypatch.delenv("METRIC_RUNS", raising=False)
    here = data.cache_dir()
    assert here == REPO_ROOT / "runs" / "data_cache"
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")  # as when a notebook runs
    assert data.cache_dir() == here
    monkeypatch.setenv("METRIC_RUNS", str(tmp_path / "runs_elsewhere"))  # as lib.cache.runs_dir()
    assert data.cache_dir() == tmp_path / "runs_elsewhere" / "data_cache"
    monkeypatch.setenv("METRIC_CACHE", str(tmp_path / "explicit"))
    assert data.cache_dir() == tmp_path / "explicit"


# --------------------------------------------------------------------------- d. unsafe archives


def test_archive_members_outside_the_target_are_refused(tmp_path):
    payload = io.BytesIO(b"owned")
    crafted = tmp_path / "crafted.tgz"
    with tarfile.open(crafted, "w:gz") as tar:
        info = tarfile.TarInfo("set/ok.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"fine!"))
        info = tarfile.TarInfo("../escaped.txt")
        info.size = len(payload.getvalue())
        tar.addfile(info, payload)
    out = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError) as err:
        data.extract(crafted, out / "set")
    assert isinstance(err.value, CorruptDataError)
    message = str(err.value)
    assert "unsafe member path '../escaped.txt'" in message
    assert "refusing to extract outside the target folder" in message
    assert "not made by the data set's publisher" in message and "damaged" not in message
    assert not (tmp_path / "escaped.txt").exists() and not (out / "escaped.txt").exists()
    assert os.listdir(out) == []  # no partial extraction left

    zipped = tmp_path / "crafted.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("set/ok.txt", "fine")
        z.writestr("../../escaped.txt", "owned")
    with pytest.raises(UnsafeArchiveError, match=r"unsafe member path '\.\./\.\./escaped\.txt'"):
        data.extract(zipped, out / "zip")
    assert os.listdir(out) == []


# --------------------------------------------------------------------------- e. early one-shot check


def test_check_oneshot_runs(tmp_path, shared_data, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataNotFoundError) as err:
        check_oneshot_runs(empty, download=False)
    message = str(err.value)
    assert message.startswith("omniglot_oneshot") and "How to get it" in message
    assert str(empty / "omniglot" / "all_runs.zip") in message and "METRIC_DATA=../shared/data" in message
    assert "one-shot-classification/all_runs.zip" in message

    # the check decodes no image
    monkeypatch.setattr("lib.data.omniglot._png_ink", lambda blob: pytest.fail("decoded an image"))
    assert check_oneshot_runs(shared_data, download=False) == shared_data / "omniglot" / "all_runs.zip"

    # a readable zip that lacks one of the runs' images
    broken = tmp_path / "broken" / "omniglot"
    broken.mkdir(parents=True)
    with zipfile.ZipFile(shared_data / "omniglot" / "all_runs.zip") as src, \
            zipfile.ZipFile(broken / "all_runs.zip", "w") as dst:
        for name in src.namelist():
            if name != "run07/test/item03.png":
                dst.writestr(name, src.read(name))
    with pytest.raises(CorruptDataError, match="run07/test/item03.png"):
        check_oneshot_runs(broken.parent, download=False)


# --------------------------------------------------------------------------- f. data fingerprint


def write_csv_set(folder: Path) -> None:
    rows = []
    for identity in range(3):
        for k in range(2):
            rel = f"id{identity}/img{k}.png"
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            pixels = np.random.default_rng(identity * 10 + k).integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / rel)
            rows.append((rel, f"id{identity}"))
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(folder / "labels.csv", index=False)


def test_data_fingerprint(fresh_cache, tmp_path, shared_data, hash_calls):
    root = oneshot_root(tmp_path, shared_data, sums=False)
    first = data_fingerprint("omniglot_oneshot", root)
    assert len(first) == 16 and int(first, 16) >= 0
    assert len(hash_calls) == 1
    checksums._known.clear()  # as in a new process: the store answers
    assert data_fingerprint("omniglot_oneshot", root) == first
    assert len(hash_calls) == 1
    # the same bytes under another root are the same data
    assert data_fingerprint("omniglot_oneshot", shared_data) == first

    flip_byte(root / "omniglot" / "all_runs.zip")
    changed = data_fingerprint("omniglot_oneshot", root)
    assert changed != first and data_fingerprint("omniglot_oneshot", root) == changed

    # a file-based set: its index and every image count
    mine = tmp_path / "mine"
    write_csv_set(mine)
    csv_print = data_fingerprint("csv", mine, image_size=16)
    assert csv_print == data_fingerprint("csv", mine, test_fraction=0.5)  # options that pick no file
    flip_byte(mine / "id1" / "img0.png", offset=60)
    assert data_fingerprint("csv", mine) != csv_print
    assert data_fingerprint("folder", mine) != data_fingerprint("csv", mine)  # no labels.csv in 'folder'

    # the shared sets
    for name in ("omniglot", "beluga"):
        assert len(data_fingerprint(name, shared_data)) == 16

    empty = tmp_path / "empty"
    empty.mkdir()
    for name in data.DATASETS:
        with pytest.raises(DataNotFoundError):
            data_fingerprint(name, empty)


# --------------------------------------------------------------------------- g. unknown names


def test_unknown_data_set_name_lists_the_valid_ones():
    assert isinstance(data.DATASETS, tuple) and "omniglot" in data.DATASETS and "omniglot_oneshot" in data.DATASETS
    for call in (lambda: load_dataset("imagenet"), lambda: data_fingerprint("imagenet")):
        with pytest.raises(DataError) as err:
            call()
        assert isinstance(err.value, ValueError)  # as before the split
        assert "imagenet" in str(err.value)
        for name in data.DATASETS:
            assert name in str(err.value)


# --------------------------------------------------------------------------- h. reliability 2


def _damage_keeping_mtime(path: Path) -> None:
    """One byte changed, the mtime put back: what `cp -p` of a damaged copy, or a tool that keeps
    times, leaves. Size and mtime are those of the original."""
    before = path.stat()
    time.sleep(0.02)  # past a coarse clock's tick: the change gets its own ctime
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    path.write_bytes(bytes(blob))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def _cp_p(source: Path, dest: Path) -> None:
    time.sleep(0.02)
    subprocess.run(["cp", "-p", str(source), str(dest)], check=True)


def test_a_byte_changed_then_restored_with_cp_p_gives_the_right_fingerprint(fresh_cache, tmp_path, shared_data):
    """Probe: one byte of `alphabets.csv` changed, then the original restored with `cp -p`: the
    damaged version's run was served after the restore (the fingerprint was checked by path,
    size and mtime)."""
    folder = tmp_path / "root" / "omniglot"
    folder.mkdir(parents=True)
    for name in ("images_background.npz", "images_evaluation.npz"):
        (folder / name).symlink_to(shared_data / "omniglot" / name)
    table = folder / "alphabets.csv"
    shutil.copy2(shared_data / "omniglot" / "alphabets.csv", table)
    backup = tmp_path / "alphabets.csv.orig"
    original = data_fingerprint("omniglot", folder.parent)
    _cp_p(table, backup)
    _damage_keeping_mtime(table)
    damaged = data_fingerprint("omniglot", folder.parent)
    assert damaged != original, "a changed alphabets.csv kept the fingerprint of the original"
    checksums._known.clear()  # another process: only the store remembers
    assert data_fingerprint("omniglot", folder.parent) == damaged
    _cp_p(backup, table)
    assert data_fingerprint("omniglot", folder.parent) == original, "the restored file kept the damaged fingerprint"
    checksums._known.clear()
    assert data_fingerprint("omniglot", folder.parent) == original

    # a large file, hashed once and then known by path, size, mtime, inode and ctime, is not fooled either
    root = oneshot_root(tmp_path / "big", shared_data, sums=False)
    runs = root / "omniglot" / "all_runs.zip"
    first = data_fingerprint("omniglot_oneshot", root)
    _cp_p(runs, tmp_path / "all_runs.zip.orig")
    _damage_keeping_mtime(runs)
    assert data_fingerprint("omniglot_oneshot", root) != first
    _cp_p(tmp_path / "all_runs.zip.orig", runs)
    checksums._known.clear()
    assert data_fingerprint("omniglot_oneshot", root) == first


def test_a_tar_member_with_an_absolute_path_is_refused(tmp_path):
    """Probe: a tar member with an absolute path was extracted inside the folder (tarfile's data
    filter strips the slash) instead of being refused, as extract's docstring says."""
    crafted = tmp_path / "crafted.tar"
    with tarfile.open(crafted, "w") as tar:
        for name, blob in (("set/ok.txt", b"fine!"), ("/abs/escaped.txt", b"owned")):
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    out = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError) as err:
        data.extract(crafted, out / "set")
    assert str(err.value).startswith(f"{crafted}: unsafe member path '/abs/escaped.txt': refusing to extract "
                                     "outside the target folder")
    assert "\n" not in str(err.value)
    assert os.listdir(out) == []
