"""What a chapter derives from a finished run (a t-SNE map, re-identification scores, a gradient
measurement, test-time views), kept by the run's key so that it outlives the run's files.

    scores = derived.of_run(run, "reid-scores", lambda: reid.run_metrics(run.arrays[...], ...),
                            params={"k": 20}, modules=("reid", "evaluate"))

The entry's digest hashes its name, the run's key, `params` and the code of the lib `modules` that
compute it. It is looked up in the run cache (runs/derived/), then in the committed results stores
(results/*/derived.parquet, `lib.runs.store`); only when neither has it is `compute()` called, which
needs the run's embeddings or checkpoint on this machine. A run served from the store has neither,
so a missing entry there is one clear error, never a number made up from nothing.
`python -m lib.runs store` packs the entries of the plan's runs into the profile's store.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import numpy as np

from lib.cache import code_fingerprint, save_arrays
from lib.paths import read_json, results_dir, runs_dir, write_json
from lib.runs.store import Store


class NotDerived(LookupError):
    """A derived entry that is neither kept nor computable here (the run was served from the store)."""


def digest(name: str, run_key: str, params: dict, modules: tuple[str, ...]) -> str:
    payload = {"name": name, "run": run_key, "params": params, "code": {m: code_fingerprint(m) for m in modules}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


def of_run(run, name: str, compute: Callable[[], dict], *, params: dict | None = None,
           modules: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The entry `name` of `run` (a RunResult) with `params`: kept, stored, or computed and kept."""
    params = params or {}
    key = digest(name, run.key, params, modules)
    path = runs_dir() / "derived" / f"{name}-{key}.npz"
    if path.exists():
        try:
            with np.load(path) as kept:
                return {k: kept[k] for k in kept.files}
        except (OSError, ValueError, EOFError):
            pass  # a damaged file: look further, or compute again
    for store in _stores():
        found = store.derived(key)
        if found is not None:
            return found
    if run.path is None:
        raise NotDerived(f"run {run.key} is served from the results store, which has no '{name}' entry for it "
                         f"with these settings ({params}); train the run here (python -m lib.runs train) to derive it")
    result = {k: np.asarray(v) for k, v in compute().items()}
    save_arrays(path, **result)
    write_json(path.with_suffix(".json"), {"name": name, "digest": key, "run": run.key, "params": params})
    return result


def entries_for(run_keys: set[str]) -> list[dict]:
    """The kept entries (runs/derived/) of `run_keys`, as store rows (name, digest, runs, arrays)."""
    out = []
    for meta_path in sorted((runs_dir() / "derived").glob("*.json")):
        try:
            meta = read_json(meta_path)
            data = meta_path.with_suffix(".npz").read_bytes()
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and meta.get("run") in run_keys:
            out.append({"name": meta["name"], "digest": meta["digest"], "runs": meta["run"], "arrays": data})
    return out


def _stores() -> list[Store]:
    root = results_dir()
    if not root.is_dir():
        return []
    return [Store(p.name) for p in sorted(root.iterdir()) if (p / "derived.parquet").exists()]

