"""Shared test fixtures."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def _shared_root() -> Path:
    """$METRIC_DATA (relative to the repo root), else ../shared/data beside the repo."""
    root = Path(os.environ.get("METRIC_DATA") or "../shared/data")
    return (root if root.is_absolute() else REPO_ROOT / root).resolve()


@pytest.fixture(scope="session", autouse=True)
def _data_environment(tmp_path_factory: pytest.TempPathFactory):
    """Code under test that loads data with no root finds the shared folder (not ./data),
    and caches decoded arrays in a session tmp folder, never in the repo."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("METRIC_DATA", str(_shared_root()))
        mp.setenv("METRIC_CACHE", str(tmp_path_factory.mktemp("data_cache")))
        yield


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only shared data folder.

    Missing data fails the test under CI (where it must be present) and skips it elsewhere.
    """
    root = _shared_root()
    if not (root / "omniglot").is_dir() or not (root / "beluga").is_dir():
        message = f"shared data not found in {root}; set METRIC_DATA"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return root
