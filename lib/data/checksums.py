"""Checksums of the source files: `SHA256SUMS` files beside the data, and a store of the
sha256 of every file hashed so far, keyed by its fingerprint (path, size, mtime_ns, inode,
ctime_ns), so that a file of 100+ MB is hashed once, not at every load. A file of at most
SMALL_FILE bytes is hashed every time (it costs no more than a look-up).

`verify_source(path)` checks a file against the `SHA256SUMS` of its folder (and, for a link,
of its target's folder) when one lists it; `source_sha256(paths)` gives the sha256 of files
for `data_fingerprint`. Both read and extend the store `cache_dir()/source_sha256.json`.
The mtime alone can be put back (`cp -p`, `touch -r`, an editor that keeps times); the ctime
cannot, since every write and every change of times sets it to the present: a file changed in
place, its size and mtime restored, has a new fingerprint and is hashed again.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Iterable

from lib.data.errors import CorruptDataError
from lib.data.locations import cache_dir, file_mode, sweep_temp_files

_STORE_NAME = "source_sha256.json"
_STORE_VERSION = 2  # 2: entries [size, mtime_ns, sha256, inode, ctime_ns]; 1 lacked inode and ctime
SMALL_FILE = 1 << 16  # bytes: hashed at every call, never taken from the store
_SUMS_NAME = "SHA256SUMS"
_SUMS_LINE = re.compile(r"^(?P<sha>[0-9a-fA-F]{64}) [ *](?P<name>.+)$")
# fingerprint -> sha256 of the files hashed (or found in the store) by this process
_known: dict[tuple[str, int, int, int, int], str] = {}
# SHA256SUMS fingerprint -> {file name: sha256}
_sums: dict[tuple[str, int, int, int, int], dict[str, str]] = {}


def _fingerprint(path: Path) -> list:
    """[resolved path, size, mtime_ns, inode, ctime_ns]: what changes whenever the content can have."""
    path = path.resolve()  # a linked copy of a file shares its cache entry
    stat = path.stat()
    return [str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_ctime_ns]


def _store_path() -> Path:
    return cache_dir() / _STORE_NAME


def _read_store() -> dict[str, list]:
    try:
        store = json.loads(_store_path().read_text())
        if store.get("version") == _STORE_VERSION and isinstance(store.get("files"), dict):
            return store["files"]
    except (OSError, ValueError, AttributeError):
        pass  # missing or damaged: it only saves time, so start again
    return {}


def _write_store(new: dict[str, list]) -> None:
    """Add `new` entries to the store, written through a temporary file and a rename (entries
    another process wrote meanwhile are kept; a lost one is only hashed again)."""
    path = _store_path()
    files = {**_read_store(), **new}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        sweep_temp_files(path.parent)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, file_mode())
            with os.fdopen(fd, "w") as f:
                json.dump({"version": _STORE_VERSION, "files": files}, f, indent=0, sort_keys=True)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as e:
        warnings.warn(f"could not record source checksums in {path} ({e}); the files are hashed again next time")


def _hash_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def source_sha256(paths: Iterable[Path]) -> list[str]:
    """The sha256 of each file: a small one (SMALL_FILE) hashed now; a larger one from memory or
    the store when its fingerprint is unchanged, else read and hashed (and recorded)."""
    prints = [tuple(_fingerprint(Path(p))) for p in paths]
    small = {fp: _hash_file(fp[0]) for fp in prints if fp[1] <= SMALL_FILE}
    if any(fp not in _known for fp in prints if fp not in small):
        stored = _read_store()
        new = {}
        for fp in prints:
            if fp in _known or fp in small:
                continue
            entry = stored.get(fp[0])
            if entry is not None and len(entry) == 5 and [entry[0], entry[1], entry[3], entry[4]] == list(fp[1:]):
                _known[fp] = entry[2]
            else:
                _known[fp] = _hash_file(fp[0])
                new[fp[0]] = [fp[1], fp[2], _known[fp], fp[3], fp[4]]
        if new:
            _write_store(new)
    return [small[fp] if fp in small else _known[fp] for fp in prints]


def _read_sums(sums: Path) -> dict[str, str]:
    """{file name: sha256} of a SHA256SUMS file (`sha256  name` or `sha256 *name` lines)."""
    key = tuple(_fingerprint(sums))
    if key not in _sums:
        table = {}
        for line in sums.read_text(errors="replace").splitlines():
            if m := _SUMS_LINE.match(line.strip()):
                name = m["name"].strip()
                table[name[2:] if name.startswith("./") else name] = m["sha"].lower()
        _sums[key] = table
    return _sums[key]


def expected_sha256(path: Path) -> tuple[str, Path] | None:
    """(sha256, the SHA256SUMS file that lists it) for `path`, looked up in its own folder,
    then (for a link) in its target's folder; None when no SHA256SUMS lists it."""
    path = Path(path)
    for candidate in dict.fromkeys([path.absolute(), path.resolve()]):
        sums = candidate.parent / _SUMS_NAME
        if sums.is_file():
            sha = _read_sums(sums).get(candidate.name)
            if sha is not None:
                return sha, sums
    return None


def verify_source(path: Path) -> Path:
    """`path`, once checked against the SHA256SUMS that lists it (if any); hashed once per
    fingerprint. Raises CorruptDataError naming the file and both checksums on a mismatch."""
    path = Path(path)
    if not path.is_file():
        return path  # the caller says what is missing
    expected = expected_sha256(path)
    if expected is None:
        return path
    sha, sums = expected
    actual = source_sha256([path])[0]
    if actual != sha:
        raise CorruptDataError(
            f"{path}: checksum mismatch: {sums} lists sha256 {sha}, but the file has sha256 {actual}. "
            "The file is damaged or was changed: copy it again from the shared data folder "
            "(or delete it and download it again)."
        )
    return path
