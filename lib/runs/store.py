"""The committed results store: every finished run of a profile, kept in git so that the study's
compute accumulates across sittings and machines.

    results/<profile>/runs.parquet     one row per run: its identity, every metric, its epoch
                                       history and its provenance
    results/<profile>/derived.parquet  what chapters derive from finished runs (t-SNE maps, the
                                       gradient-variance measurement, ...), content-addressed
    results/<profile>/runs.jsonl       the runs as JSON lines (`python -m lib.runs export`), read
                                       when there is no runs.parquet: a machine without pyarrow

A row's identity is its key config (the resolved configuration, `train.precision` included), its
data fingerprint and the behaviour versions it was made under; its key is the hash of these
(`lib.cache.run_key`). Provenance (device, threads, library versions, commit, seconds) is stored
beside it and shown in each chapter's header, never hashed. A row is served only when it proves it
belongs to its key: the key is re-derived from the row's own identity columns, its metrics name the
same key, its configuration gives the same key config, and its history is not empty. Anything else
is refused with one line naming the row and what disagrees.

Writes go to a temporary file renamed into place, so a killed writer leaves the old store whole.
"""
from __future__ import annotations

import contextlib
import fcntl
import gzip
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lib.cache import run_key
from lib.config import RunConfig
from lib.paths import atomic_write_bytes, json_default, read_json, results_dir

RUN_COLUMNS = ["key", "dataset", "seed", "precision", "config", "key_config", "data_fingerprint", "behaviour",
               "metrics", "history", "provenance"]
DERIVED_COLUMNS = ["name", "digest", "runs", "arrays"]


class StoreError(RuntimeError):
    """A store that cannot be trusted: a row that does not prove its key, a run counted twice."""


def store_dir(profile: str) -> Path:
    return results_dir() / profile


@dataclass(frozen=True)
class StoredRun:
    key: str
    config: RunConfig
    metrics: dict
    history: pd.DataFrame
    provenance: dict


def _json(obj) -> str:
    return json.dumps(obj, sort_keys=True, default=json_default)


def row_from_run_dir(run_dir: Path) -> dict:
    """A finished run folder of the run cache as a store row (its files were checked by RunDir);
    a run stopped by a NaN loss (failed.json) is a row too, with `diverged` as its only metric."""
    written = read_json(run_dir / "config.json")
    if (run_dir / "complete.json").exists():
        stamp, metrics = read_json(run_dir / "complete.json"), read_json(run_dir / "metrics.json")
        history = read_json(run_dir / "history.json")
    else:
        failed = read_json(run_dir / "failed.json")
        stamp = {"key": failed["key"], "provenance": failed.get("provenance", {})}
        metrics = {"diverged": True, "error": failed.get("error", ""), "key": failed["key"]}
        history = failed.get("history", [])
    cfg = written["config"]
    return {"key": stamp["key"], "dataset": cfg["data"]["name"], "seed": int(cfg["train"]["seed"]),
            "precision": cfg["train"]["precision"], "config": _json(cfg),
            "key_config": _json(written.get("key_config", cfg)), "data_fingerprint": written["data_fingerprint"],
            "behaviour": _json({m: e["version"] for m, e in written["behaviour"].items()}),
            "metrics": _json(metrics), "history": _json(history),
            "provenance": _json(stamp.get("provenance", {}))}


def verify(row: dict) -> StoredRun:
    """The row as a StoredRun, or StoreError when it does not prove it belongs to its key."""
    key = row.get("key", "?")
    try:
        key_config, behaviour = json.loads(row["key_config"]), json.loads(row["behaviour"])
        config = RunConfig.validate_dict(json.loads(row["config"]))
        metrics, history = json.loads(row["metrics"]), json.loads(row["history"])
        provenance = json.loads(row["provenance"])
    except Exception as exc:  # a damaged or hand-edited row: one line, never a traceback
        raise StoreError(f"results store: run {key} cannot be read ({type(exc).__name__}: {exc})") from None
    problems = []
    if run_key(key_config, row["data_fingerprint"], behaviour) != key:
        problems.append("its key is not the hash of its identity")
    if config.key_dict() != key_config:
        problems.append("its configuration does not give its key config")
    if config.train.precision != row["precision"]:
        problems.append(f"it says precision {row['precision']} but its configuration {config.train.precision}")
    if not isinstance(metrics, dict) or metrics.get("key") != key:
        problems.append("its metrics name another run")
    if not isinstance(history, list) or not (history or metrics.get("diverged")):
        problems.append("its epoch history is empty")
    if not provenance.get("device") or not provenance.get("libraries"):
        problems.append("it has no provenance (device, libraries)")
    if problems:
        raise StoreError(f"results store: run {key} refused: {'; '.join(problems)}")
    return StoredRun(key, config, metrics, pd.DataFrame(history), provenance)


class Store:
    """One profile's committed results (read once, checked, then served by key)."""

    def __init__(self, profile: str):
        self.profile = profile
        self.path = store_dir(profile)
        self._rows: dict[str, dict] | None = None
        self._derived: dict[str, dict] | None = None

    # ---------------------------------------------------------------- reading
    @property
    def rows(self) -> dict[str, dict]:
        if self._rows is None:
            self._rows = _by_key(_read(self.path / "runs.parquet", RUN_COLUMNS), "key", self.path / "runs.parquet")
        return self._rows

    def get(self, key: str) -> StoredRun | None:
        row = self.rows.get(key)
        return None if row is None else verify(row)

    def derived(self, digest: str) -> dict[str, np.ndarray] | None:
        if self._derived is None:
            self._derived = _by_key(_read(self.path / "derived.parquet", DERIVED_COLUMNS), "digest",
                                    self.path / "derived.parquet")
        row = self._derived.get(digest)
        if row is None:
            return None
        with np.load(io.BytesIO(row["arrays"])) as stored:
            return {k: stored[k] for k in stored.files}

    # ---------------------------------------------------------------- writing
    def merge(self, new_rows: list[dict], derived: list[dict] | None = None) -> dict[str, int]:
        """Add runs (store rows: `row_from_run_dir`, or what a training task sent back) and
        `derived` entries to the store, and write it.

        Every row, old and new, is verified first, and a run given twice fails: nothing is written
        then. A key already stored is replaced (the same identity, trained again). Two processes
        that merge at once (training, and a render's `lib.runs store`) take turns: each reads the
        store afresh under the lock, so neither writes over what the other added. Returns counts."""
        given = [row["key"] for row in new_rows]
        twice = sorted({k for k in given if given.count(k) > 1})
        if twice:
            raise StoreError(f"results store: run {twice[0]} given twice in one merge")
        with self._locked():
            return self._merge(new_rows, derived)

    @contextlib.contextmanager
    def _locked(self):
        """The store for this process alone, read afresh (released by the system if its holder dies)."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                self._rows, self._derived = None, None
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _merge(self, new_rows: list[dict], derived: list[dict] | None) -> dict[str, int]:
        rows = dict(self.rows)
        added = 0
        for row in new_rows:
            verify(row)
            added += row["key"] not in rows
            rows[row["key"]] = row
        for row in rows.values():
            verify(row)
        _write(self.path / "runs.parquet", list(rows.values()), RUN_COLUMNS)
        self._rows = rows
        new_derived = 0
        if derived:
            self.derived("")  # load what is stored
            table = dict(self._derived or {})
            for entry in derived:
                new_derived += entry["digest"] not in table
                table[entry["digest"]] = entry
            _write(self.path / "derived.parquet", list(table.values()), DERIVED_COLUMNS)
            self._derived = table
        return {"runs added": added, "runs stored": len(rows), "derived added": new_derived}

    def check(self, planned: set[str]) -> None:
        """Every row proves its key, and every row is a run of the plan: an orphan (a run no chapter
        reads, say after a behaviour bump) fails loudly, with the command that prunes it."""
        for row in self.rows.values():
            verify(row)
        orphans = sorted(set(self.rows) - planned)
        if orphans:
            raise StoreError(f"results store {self.path}: {len(orphans)} run(s) not in profile '{self.profile}''s "
                             f"plan (e.g. {orphans[0]}): prune them with "
                             f"`python -m lib.runs store --profile {self.profile} --prune`")

    def export(self, path: Path) -> int:
        """Every run row as JSON lines, gzipped when `path` ends in .gz (a store a machine without
        pyarrow can read, as runs.jsonl[.gz] beside where runs.parquet would be); returns the count."""
        text = "".join(json.dumps({c: row[c] for c in RUN_COLUMNS}) + "\n" for row in self.rows.values())
        Path(path).write_bytes(gzip.compress(text.encode()) if str(path).endswith(".gz") else text.encode())
        return len(self.rows)

    def prune(self, planned: set[str]) -> int:
        with self._locked():
            keep = {k: r for k, r in self.rows.items() if k in planned}
            dropped = len(self.rows) - len(keep)
            _write(self.path / "runs.parquet", list(keep.values()), RUN_COLUMNS)
            self._rows = keep
        return dropped


def _read(path: Path, columns: list[str]) -> list[dict]:
    exported = [p for p in (path.with_suffix(".jsonl"), path.with_suffix(".jsonl.gz")) if p.exists()]
    if not path.exists() and exported:  # an exported store, on a machine without pyarrow
        try:
            text = gzip.decompress(exported[0].read_bytes()).decode() if exported[0].suffix == ".gz" else \
                exported[0].read_text()
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        except (json.JSONDecodeError, OSError, EOFError) as exc:
            raise StoreError(f"results store: {exported[0]} is not (gzipped) JSON lines ({exc})") from None
    if not path.exists():
        return []
    import pyarrow.parquet as pq  # here, not above: a bare GPU machine trains without pyarrow

    try:
        table = pq.read_table(path)
    except Exception as exc:
        raise StoreError(f"results store: {path} cannot be read ({type(exc).__name__}: {exc})") from None
    missing = set(columns) - set(table.column_names)
    if missing:
        raise StoreError(f"results store: {path} lacks the column(s) {', '.join(sorted(missing))}")
    return table.select(columns).to_pylist()


def _by_key(rows: list[dict], column: str, path: Path) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for row in rows:
        if row[column] in out:
            raise StoreError(f"results store: {path} holds {column} {row[column]} twice")
        out[row[column]] = row
    return out


def _write(path: Path, rows: list[dict], columns: list[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = sorted(rows, key=lambda r: r[columns[0]] + r.get("key", r.get("digest", "")))
    binary = {"arrays"}
    schema = pa.schema([(c, pa.binary() if c in binary else pa.int64() if c == "seed" else pa.string())
                        for c in columns])
    table = pa.Table.from_pylist([{c: r[c] for c in columns} for r in rows], schema=schema)
    buffer = io.BytesIO()
    # zstd: the JSON columns compress about 10x; one row group keeps the file stable in git
    pq.write_table(table, buffer, compression="zstd", row_group_size=max(len(rows), 1))
    atomic_write_bytes(path, buffer.getvalue())

