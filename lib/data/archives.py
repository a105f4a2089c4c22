"""Getting archives: `download` (verified, atomic), `extract` (atomic, refusing members that
would land outside the target folder) and the archive's own CRC check."""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath

from lib.data.errors import CorruptDataError, DataError, UnsafeArchiveError
from lib.data.locations import file_mode, folder_mode


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
        os.fchmod(fd, file_mode())  # mkstemp's 0600 is not what the user's umask asks for
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


def _unsafe(archive: Path, member: str, why: str = "refusing to extract outside the target folder"
            ) -> UnsafeArchiveError:
    return UnsafeArchiveError(
        f"{archive}: unsafe member path {member!r}: {why}; the archive was not made by the data set's "
        "publisher. Delete it and get the data set from its publisher's own site."
    )


def _check_names(archive: Path, names: list[str]) -> None:
    """Refuse absolute names and '..' parts (zipfile, and tarfile's data filter, would silently
    strip a leading '/' and extract the member inside the folder)."""
    for name in names:
        for pure in (PurePosixPath(name), PureWindowsPath(name)):
            if pure.is_absolute() or pure.drive or pure.root or ".." in pure.parts:
                raise _unsafe(archive, name)


def extract(archive: Path, dest: Path) -> Path:
    """Unpack a zip or tar archive so that `dest` holds its top-level entries.

    The archive is unpacked into a temporary folder beside `dest` and renamed into place only
    when complete, so an existing `dest` is always a whole extraction. A member that would be
    written outside `dest` (an absolute path, '..', a link out of it) or a device raises
    UnsafeArchiveError, and nothing is kept.
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
                    _check_names(archive, z.namelist())
                    z.extractall(tmp)
            else:
                with tarfile.open(archive) as tar:
                    _check_names(archive, tar.getnames())
                    tar.extractall(tmp, filter="data")
        except tarfile.FilterError as e:
            member = e.tarinfo.name if e.tarinfo is not None else "?"
            if isinstance(e, tarfile.SpecialFileError):
                raise _unsafe(archive, member, "refusing to extract a device or special file") from e
            raise _unsafe(archive, member) from e
        except (zipfile.BadZipFile, tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error) as e:
            raise CorruptDataError(f"{archive}: damaged archive ({e}); delete it and download it again") from e
        os.chmod(tmp, folder_mode())  # mkdtemp's 0700 is not what the user's umask asks for
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
