"""Checksums of the source files: `SHA256SUMS` files beside the data, and a store of the
sha256 of every file hashed so far, keyed by its fingerprint (path, size, mtime_ns), so that a
file of 100+ MB is hashed once, not at every load.

`verify_source(path)` checks a file against the `SHA256SUMS` of its folder (and, for a link,
of its target's folder) when one lists it; `source_sha256(paths)` gives the sha256 of files
for `data_fingerprint`. Both read and extend the store `cache_dir()/source_sha256.json`.
A file changed in place without a change of size or mtime is not seen: the store trusts the
fingerprint, as the decoded-array cache does.
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
from lib.data.locations import cache_dir

_STORE_NAME = "source_sha256.json"
_STORE_VERSION = 1
_SUMS_NAME = "SHA256SUMS"
_SUMS_LINE = re.compile(r"^(?P<sha>[0-9a-fA-F]{64}) [ *](?P<name>.+)$")
# fingerprint -> sha256 of the files hashed (or found in the store) by this process
_known: dict[tuple[str, int, int], str] = {}
# SHA256SUMS fingerprint -> {file name: sha256}
_sums: dict[tuple[str, int, int], dict[str, str]] = {}


def _fingerprint(path: Path) -> list:
    path = path.resolve()  # a linked copy of a file shares its cache entry
    stat = path.stat()
    return [str(path), stat.st_size, stat.st_mtime_ns]


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
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
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
    """The sha256 of each file, from memory or the store when its fingerprint is unchanged,
    else read and hashed (and recorded)."""
    prints = [tuple(_fingerprint(Path(p))) for p in paths]
    if any(fp not in _known for fp in prints):
        stored = _read_store()
        new = {}
        for fp in prints:
            if fp in _known:
                continue
            entry = stored.get(fp[0])
            if entry is not None and list(entry[:2]) == [fp[1], fp[2]]:
                _known[fp] = entry[2]
            else:
                _known[fp] = _hash_file(fp[0])
                new[fp[0]] = [fp[1], fp[2], _known[fp]]
        if new:
            _write_store(new)
    return [_known[fp] for fp in prints]


def _read_sums(sums: Path) -> dict[str, str]:
    """{file name: sha256} of a SHA256SUMS file (`sha256  name` or `sha256 *name` lines)."""
    stat = sums.stat()
    key = (str(sums), stat.st_size, stat.st_mtime_ns)
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
