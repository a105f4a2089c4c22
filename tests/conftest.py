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


def write_cub200(root: Path, class_ids: dict[int, str], per_class: int, size: tuple[int, int] = (12, 10)) -> Path:
    """CUB-200-2011 in its real layout under root/CUB_200_2011 (images/, images.txt,
    image_class_labels.txt, classes.txt): `per_class` random JPEGs of `size` (W, H) per class.
    Classes 1-100 are CUB's training side, 101-200 its test side. Returns `root`."""
    import numpy as np
    from PIL import Image

    folder = root / "CUB_200_2011"
    lines, labels = [], []
    for class_id, name in class_ids.items():
        for k in range(per_class):
            image_id = len(lines) + 1
            path = folder / "images" / name / f"{name}_{k}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            pixels = np.random.default_rng(image_id).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(path)
            lines.append(f"{image_id} {name}/{name}_{k}.jpg")
            labels.append(f"{image_id} {class_id}")
    (folder / "images.txt").write_text("\n".join(lines) + "\n")
    (folder / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (folder / "classes.txt").write_text("\n".join(f"{c} {n}" for c, n in class_ids.items()) + "\n")
    return root


@pytest.fixture(scope="session")
def make_cub200():
    """The builder `write_cub200(root, class_ids, per_class, size)`, for tests that need CUB's layout."""
    return write_cub200
