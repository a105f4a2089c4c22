"""Result cache: one folder per run under runs/, keyed by configuration and code.

A run's key hashes its fully resolved configuration and the code (comments and
docstrings stripped) of the lib modules that train and evaluate, not the plotting
code: an edit that can change a number invalidates the cache, while an edit to a
figure, a comment or a docstring does not.
Every file is written to a temporary name and renamed into place; `complete.json`
is written last, so a folder without it is never mistaken for a finished run.
"""
from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lib.config import REPO_ROOT

# The modules whose code decides a run's numbers.
CODE_MODULES = ("augment", "cache", "components", "config", "data", "divide", "evaluate", "miners", "models",
                "train")


def runs_dir() -> Path:
    return Path(os.environ.get("METRIC_RUNS", REPO_ROOT / "runs"))


def normalized_source(source: str) -> str:
    """The code of a module without its comments, docstrings and layout, so an edit that
    only rewords or reformats does not invalidate hours of cached runs."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False)


@lru_cache(maxsize=1)
def code_hash() -> str:
    h = hashlib.sha256()
    lib_dir = Path(__file__).resolve().parent
    for module in CODE_MODULES:
        path = lib_dir / f"{module}.py"
        h.update(module.encode())
        h.update(normalized_source(path.read_text()).encode() if path.exists() else b"")
    return h.hexdigest()[:12]


def run_key(config: dict) -> str:
    payload = json.dumps(config, sort_keys=True, default=str) + code_hash()
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    _atomic_write_bytes(path, json.dumps(obj, indent=1, default=_json_default).encode())


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def save_torch(path: Path, obj: Any) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    _atomic_write_bytes(path, buffer.getvalue())


def save_arrays(path: Path, **arrays: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    _atomic_write_bytes(path, buffer.getvalue())


class RunDir:
    """The folder of one run: config.json, history.jsonl, checkpoint.pt, embeddings.npz,
    metrics.json and, last, complete.json."""

    def __init__(self, config: dict):
        self.config = config
        self.key = run_key(config)
        self.path = runs_dir() / self.key

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def complete(self) -> bool:
        return self.file("complete.json").exists()

    def start(self) -> None:
        write_json(self.file("config.json"), {"config": self.config, "code_hash": code_hash()})
        self.file("failed.json").unlink(missing_ok=True)

    def load_checkpoint(self) -> dict | None:
        path = self.file("checkpoint.pt")
        if not path.exists():
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception:  # a checkpoint that cannot be read is recomputed, not trusted
            path.unlink(missing_ok=True)
            return None

    def save_checkpoint(self, state: dict) -> None:
        save_torch(self.file("checkpoint.pt"), state)

    def finish(self, metrics: dict, history: list[dict], arrays: dict[str, np.ndarray]) -> None:
        if arrays:
            save_arrays(self.file("embeddings.npz"), **arrays)
        write_json(self.file("history.json"), history)
        write_json(self.file("metrics.json"), metrics)
        write_json(self.file("complete.json"), {"key": self.key, "code_hash": code_hash()})

    def fail(self, record: dict) -> None:
        write_json(self.file("failed.json"), record)
