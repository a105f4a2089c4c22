"""Result cache: one folder per run under runs/, keyed by what determines its numbers.

A run's key hashes its identity: the fully resolved configuration (its numeric precision
included, `train.precision`), the fingerprint of the data files it reads and the *behaviour
version* of each lib module on a run's path. Where and with what it ran (device, threads, the
versions of torch, pytorch-metric-learning, timm, faiss and numpy, the commit, the seconds) is its
*provenance*: recorded with the result and shown beside its numbers, but not part of the key, so
a run trained on a GPU and one trained on a CPU in the same precision answer the same question
(a cached number is one draw of its seed: see README, "Threads change the numbers"). A refactor
(a rename, a moved function, a comment) keeps every cached run; a change that can alter a
number bumps its module's version in lib/behaviour.json, which changes the key.
tests/test_cache_key.py fails when a module's code changes and its entry was not updated:

    python -m lib.cache record              # a pure refactor: accept the new code as is
    python -m lib.cache record --bump train # a behaviour change: new keys for every run

Every file is written to a temporary name and renamed into place; `complete.json` is written
last, and a folder whose result files cannot all be read counts as not run.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import fcntl
import hashlib
import io
import json
import os
import sys
import time
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

# Where things are kept, and the atomic writes, live in lib.paths; re-exported for this module's callers.
from lib.paths import REPO_ROOT, atomic_write_bytes, read_json, runs_dir, write_json

LIB_DIR = Path(__file__).resolve().parent
BEHAVIOUR_FILE = LIB_DIR / "behaviour.json"
# The libraries whose versions can change a number.
LIBRARIES = ("torch", "pytorch-metric-learning", "timm", "faiss-cpu", "numpy")
# A temporary file in a run's folder older than this belongs to a killed writer. RunDir.start runs
# under the run's lock (lib.train), where no other process writes that folder, so every one is.
STALE_TEMP_SECONDS = 0


def normalized_source(source: str) -> str:
    """The code of a module without its comments, docstrings and layout."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False)


def module_files(module: str) -> list[Path]:
    """A module's source files: lib/<module>.py, or every file of the package lib/<module>/."""
    package = LIB_DIR / module
    return sorted(package.glob("*.py")) if package.is_dir() else [LIB_DIR / f"{module}.py"]


def code_fingerprint(module: str) -> str:
    h = hashlib.sha256()
    for path in module_files(module):
        h.update(path.name.encode())
        h.update(normalized_source(path.read_text()).encode())
    return h.hexdigest()[:12]


def behaviour() -> dict[str, dict]:
    """{module: {"version": n, "code": fingerprint}} for every module on a run's path."""
    return json.loads(BEHAVIOUR_FILE.read_text())


@lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def behaviour_versions() -> dict[str, int]:
    return {m: e["version"] for m, e in sorted(behaviour().items())}


def run_key(config: dict, data_fingerprint: str = "", versions: dict[str, int] | None = None) -> str:
    """The hash of a run's identity: its key config, its data and the behaviour versions
    (this checkout's, or `versions` to re-derive a stored row's key from what it recorded)."""
    payload = json.dumps({"config": config, "data": data_fingerprint,
                          "behaviour": behaviour_versions() if versions is None else dict(sorted(versions.items()))},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@lru_cache(maxsize=1)
def commit() -> str:
    """This checkout's commit (with '+dirty' when it has uncommitted changes), or 'unknown'."""
    import subprocess

    try:
        head = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head + ("+dirty" if dirty else "")) if head else "unknown"


def provenance(device: "torch.device") -> dict:
    """Where and with what a run is made: not part of its key, shown beside its numbers."""
    import platform

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.machine()}, {os.cpu_count()} cores"
    return {"device": f"{device.type}: {name}", "threads": torch.get_num_threads(),
            "libraries": library_versions(), "commit": commit(), "host": platform.node(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def save_torch(path: Path, obj: Any) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def save_arrays(path: Path, **arrays: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def memoized(name: str, compute, *, inputs: dict, arrays: tuple[np.ndarray, ...] = (),
             modules: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """`compute()` (a dict of arrays), kept under runs/derived/ and keyed by everything it reads:
    `inputs` (JSON-able: settings, run keys, library versions), the bytes of `arrays` and the
    code (normalised, as for the behaviour file) of the lib `modules` that compute it. For what
    a chapter derives from finished runs (t-SNE maps, gradient statistics), so a cached
    re-render does not redo it. An unreadable file is recomputed."""
    h = hashlib.sha256(json.dumps({"name": name, "inputs": inputs,
                                   "code": {m: code_fingerprint(m) for m in modules}},
                                  sort_keys=True, default=str).encode())
    for array in arrays:
        array = np.ascontiguousarray(array)
        h.update(f"{array.dtype}{array.shape}".encode())
        h.update(array.tobytes())
    path = runs_dir() / "derived" / f"{name}-{h.hexdigest()[:16]}.npz"
    if path.exists():
        try:
            with np.load(path) as stored:
                return {k: stored[k] for k in stored.files}
        except (OSError, ValueError, EOFError):
            pass  # a damaged file: compute again and overwrite it
    result = {k: np.asarray(v) for k, v in compute().items()}
    save_arrays(path, **result)
    return result


class RunDir:
    """The folder of one run: config.json, checkpoint.pt, embeddings.npz, history.json,
    metrics.json and, last, complete.json."""

    def __init__(self, config: dict, data_fingerprint: str = "", key_config: dict | None = None):
        """`config` is recorded in config.json; the key hashes `key_config` (RunConfig.key_dict),
        or `config` itself when not given."""
        self.config = config
        self.key_config = config if key_config is None else key_config
        self.data_fingerprint = data_fingerprint
        self.key = run_key(self.key_config, data_fingerprint)
        self.path = runs_dir() / self.key

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def complete(self) -> bool:
        return self.load_result() is not None

    def load_result(self) -> tuple[dict, "Any"] | None:
        """(metrics, history DataFrame) of a finished run, or None when the run is not finished
        or any of its result files cannot be read, or they do not name this run's key, or the
        history or metrics are empty: such a run is recomputed, never served."""
        import pandas as pd

        if not self.file("complete.json").exists():
            return None
        try:
            stamp = read_json(self.file("complete.json"))
            metrics = read_json(self.file("metrics.json"))
            history = read_json(self.file("history.json"))
            if not isinstance(stamp, dict) or stamp.get("key") != self.key:
                raise ValueError("complete.json names another run")
            if not isinstance(metrics, dict) or metrics.get("key") != self.key:
                raise ValueError("metrics.json is missing or names another run")
            if not isinstance(history, list) or not history:
                raise ValueError("the epoch history is empty")
            if self.config.get("eval", {}).get("save_embeddings") and not self._arrays_readable():
                raise ValueError("embeddings.npz unreadable")
        except (OSError, ValueError) as exc:
            print(f"cache: run {self.key} has an unreadable result ({exc}); recomputing it", file=sys.stderr)
            self.file("complete.json").unlink(missing_ok=True)
            return None
        return metrics, pd.DataFrame(history)

    def _arrays_readable(self) -> bool:
        path = self.file("embeddings.npz")
        if not path.exists():
            return False
        try:
            with np.load(path) as archive:
                return all(archive[name].size >= 0 for name in archive.files)
        except Exception:  # zipfile.BadZipFile, EOFError, ValueError: a damaged archive
            return False

    @contextlib.contextmanager
    def lock(self):
        """Hold the run for this process: a second process that wants the same run (another lane
        of run_all.sh, say) waits here, then finds it in the cache. The operating system drops the
        lock when its holder dies, so a killed run never blocks the next one."""
        runs_dir().mkdir(parents=True, exist_ok=True)
        with open(runs_dir() / f".{self.key}.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def start(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        now = time.time()
        for tmp in self.path.glob(".*.tmp"):  # left by a writer killed mid-write
            if now - tmp.stat().st_mtime > STALE_TEMP_SECONDS:
                tmp.unlink(missing_ok=True)
        write_json(self.file("config.json"), {"config": self.config, "key_config": self.key_config,
                                              "data_fingerprint": self.data_fingerprint,
                                              "libraries": library_versions(), "behaviour": behaviour()})
        self.file("failed.json").unlink(missing_ok=True)

    def load_checkpoint(self) -> dict | None:
        """The run's last checkpoint, or None (train from the start) when there is none, it cannot
        be read, or it was written for another run (a checkpoint copied in from elsewhere)."""
        path = self.file("checkpoint.pt")
        if not path.exists():
            return None
        try:  # weights_only: a planted or damaged checkpoint cannot run code, only fail to load
            state = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict) or state.get("run_key") != self.key:
                raise ValueError(f"it belongs to run {state.get('run_key') if isinstance(state, dict) else '?'}")
            return state
        except Exception as exc:
            print(f"cache: checkpoint of run {self.key} cannot be used ({type(exc).__name__}: {exc}); "
                  "training from the start", file=sys.stderr)
            path.unlink(missing_ok=True)
            return None

    def save_checkpoint(self, state: dict) -> None:
        save_torch(self.file("checkpoint.pt"), {**state, "run_key": self.key})

    def finish(self, metrics: dict, history: list[dict], arrays: dict[str, np.ndarray],
               made_by: dict | None = None) -> None:
        """Write the result; `complete.json` last, with the key and the run's provenance."""
        if arrays:
            save_arrays(self.file("embeddings.npz"), **arrays)
        write_json(self.file("history.json"), history)
        write_json(self.file("metrics.json"), {**metrics, "key": self.key})
        write_json(self.file("complete.json"), {"key": self.key, "provenance": made_by or {}})

    def provenance(self) -> dict:
        """Where and with what a finished run was made ({} for one finished before this was recorded)."""
        try:
            stamp = read_json(self.file("complete.json"))
        except (OSError, ValueError):
            return {}
        return stamp.get("provenance", {}) if isinstance(stamp, dict) else {}

    def fail(self, record: dict) -> None:
        """A run stopped by a NaN or infinite loss: an outcome, with its diagnostics and key."""
        write_json(self.file("failed.json"), {**record, "key": self.key})


def record_behaviour(bump: list[str]) -> dict[str, dict]:
    """Write the current code fingerprints into lib/behaviour.json, bumping the named modules."""
    entries = behaviour() if BEHAVIOUR_FILE.exists() else {}
    unknown = set(bump) - set(entries)
    if unknown:
        raise SystemExit(f"unknown module(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(entries))}")
    for module, entry in entries.items():
        entry["code"] = code_fingerprint(module)
        if module in bump:
            entry["version"] += 1
    BEHAVIOUR_FILE.write_text(json.dumps(entries, indent=1, sort_keys=True) + "\n")
    return entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.cache", description="Record lib modules' behaviour versions.")
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="accept the current code of every module (pure refactor)")
    rec.add_argument("--bump", nargs="*", default=[], metavar="MODULE",
                     help="modules whose change can alter a number: their version goes up")
    args = parser.parse_args(argv)
    for module, entry in record_behaviour(args.bump).items():
        print(f"{module:12s} version {entry['version']}  code {entry['code']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
