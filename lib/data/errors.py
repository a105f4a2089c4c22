"""The data layer's exceptions, and the one way to say that a data set was not found."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

_SHARED_HINT = "run with METRIC_DATA=../shared/data (the project's shared copy)"


class DataError(RuntimeError):
    """Base class of the data layer's errors."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A data set (or one of its files) is not where we looked."""


class CorruptDataError(DataError):
    """A file exists but cannot be trusted: bad archive, checksum mismatch, unreadable image."""


class UnsafeArchiveError(CorruptDataError):
    """An archive holds a member that would be written outside the folder it is extracted
    into (or a device, a link out of it): it was not made by the data set's publisher."""


class UnknownDatasetError(DataError, ValueError):
    """`load_dataset` was given a name that is not in the registry."""


def _not_found(what: str, looked: Sequence[Path], how: str) -> DataNotFoundError:
    places = "\n".join(f"  - {p}" for p in dict.fromkeys(looked))
    return DataNotFoundError(f"{what}: data not found. Looked for:\n{places}\nHow to get it: {how}")
