"""A finished run as the notebooks read it: its config, metrics, epoch history and saved arrays."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lib.cache import RunDir, read_json
from lib.config import RunConfig


@dataclass
class RunResult:
    config: RunConfig
    key: str
    path: Path | None  # the run's folder in the run cache; None when served from the results store
    metrics: dict
    history: pd.DataFrame
    _arrays: dict | None = field(default=None, repr=False)
    provenance: dict = field(default_factory=dict)  # device, threads, libraries, commit (lib.cache.provenance)

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """Saved held-out embeddings ('test_embeddings', 'test_labels', ...), loaded on first use.
        A run served from the results store (no `path`) has none: what a chapter derives from them
        must come from the store's derived entries, never silently from nothing."""
        if self._arrays is None:
            if self.path is None:
                raise LookupError(f"run {self.key} is served from the results store, which keeps no embeddings; "
                                  "what this analysis derives from them is not stored yet: train the run "
                                  "(python -m lib.runs train) to compute it")
            path = self.path / "embeddings.npz"
            self._arrays = dict(np.load(path)) if path.exists() else {}
        return self._arrays

    @classmethod
    def load(cls, config: RunConfig, run_dir: RunDir) -> "RunResult":
        history = pd.DataFrame(read_json(run_dir.file("history.json")))
        return cls(config, run_dir.key, run_dir.path, read_json(run_dir.file("metrics.json")), history)
