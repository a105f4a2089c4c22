"""The lib.data package (issue 16): one job per module, no import cycles, every name the rest
of the project uses still importable from `lib.data`, and decoded images bit-identical to
those of the single-module lib/data.py it replaced."""
from __future__ import annotations

import ast
import graphlib
import hashlib
from pathlib import Path

import numpy as np

from lib import data

PACKAGE = Path(data.__file__).resolve().parent


def digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def test_names_used_elsewhere_are_importable_from_lib_data():
    used = ["load_dataset", "load_oneshot_runs", "check_oneshot_runs", "data_fingerprint", "DATASETS", "Split",
            "Dataset", "OneShotRun", "class_disjoint_split", "DataError", "DataNotFoundError", "CorruptDataError",
            "UnsafeArchiveError", "download", "extract", "cache_dir", "data_root"]
    missing = [name for name in used if not hasattr(data, name)]
    assert not missing
    assert callable(data.download) and callable(data.extract)  # the functions, not submodules
    assert issubclass(data.DataNotFoundError, FileNotFoundError)
    assert issubclass(data.UnsafeArchiveError, data.CorruptDataError)


def test_modules_form_no_cycle_and_import_nothing_else_of_lib():
    graph = {}
    for path in PACKAGE.glob("*.py"):
        if path.stem == "__init__":
            continue
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
        own = {m for m in imported if m == "lib" or m.startswith("lib.")}
        assert all(m.startswith("lib.data.") for m in own), f"{path.name} imports {own}"
        graph[path.stem] = {m.removeprefix("lib.data.") for m in own}
    assert {"errors", "datasets", "archives", "array_cache", "checksums", "omniglot", "beluga", "benchmarks",
            "folders", "registry"} <= set(graph)
    list(graphlib.TopologicalSorter(graph).static_order())  # raises CycleError on a cycle


def test_decoded_images_are_bit_identical_to_before_the_split(shared_data):
    """Digests recorded with the single-module lib/data.py (decoded from an empty cache)."""
    omniglot = data.load_dataset("omniglot", root=shared_data, image_size=28)
    assert digest(omniglot.train.images[:500]) == "7240e1f68e2de1f2"
    assert digest(omniglot.test.images) == "e1edfccf9a4a5376"
    beluga = data.load_dataset("beluga", root=shared_data)
    assert digest(beluga.train.images) == "2093acc98be50f57"
    assert digest(beluga.test.images[:300]) == "ca34bb98ac17ac27"
    assert digest(beluga.train.labels) + digest(beluga.test.labels) == "33ec322ba93ceb085409968c5f9d2bb4"
