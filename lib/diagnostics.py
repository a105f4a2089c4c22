"""Per-step diagnostics of training: what the miner picked and what the loss made of it.

They tell a collapsing run from a learning one: the loss relative to the margin, the share of
tuples with a non-zero loss, the distances of mined positives and negatives, the gradient norm.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

HIST_BINS = 40


class EpochStats:
    """Accumulates the per-step diagnostics of one epoch.

    Values arrive as tensors and are read to Python once, in `summary`, so the training step
    never waits for a device-to-host copy."""

    def __init__(self, hist_max: float):
        self.hist_edges = np.linspace(0.0, hist_max, HIST_BINS + 1)
        self.sums: dict[str, list] = {}
        self.dap: list[torch.Tensor] = []
        self.dan: list[torch.Tensor] = []

    def add(self, **values) -> None:
        for k, v in values.items():
            self.sums.setdefault(k, []).append(v.detach() if torch.is_tensor(v) else float(v))

    def add_distances(self, distance, embeddings: torch.Tensor, labels: torch.Tensor, tuples) -> None:
        with torch.no_grad():
            emb = embeddings.detach().float()
            pairs = lmu.convert_to_pairs(tuples, labels) if tuples is not None else lmu.get_all_pairs_indices(labels)
            a1, p, a2, n = pairs
            mat = distance(emb)
            self.dap.append(mat[a1, p])
            self.dan.append(mat[a2, n])

    def summary(self) -> dict:
        out = {k: float(np.mean([float(x) for x in v])) for k, v in self.sums.items()}
        for name, chunks in (("d_ap", self.dap), ("d_an", self.dan)):
            values = torch.cat(chunks).cpu().numpy() if chunks else np.array([])
            out[f"{name}_mean"] = float(values.mean()) if values.size else math.nan
            out[f"{name}_std"] = float(values.std()) if values.size else math.nan
            if name == "d_an":
                hist = np.histogram(np.clip(values, 0, self.hist_edges[-1]), bins=self.hist_edges)[0]
        out["d_an_hist"] = hist.astype(float).tolist()
        out["d_an_hist_edges"] = self.hist_edges.tolist()
        return out


class Recorder:
    """Forward hooks that copy what the miner mined and the per-tuple losses of the reducer."""

    def __init__(self, loss_fns, miner):
        self.tuples = None
        self.per_tuple: list[torch.Tensor] = []
        self.handles = [fn.reducer.register_forward_pre_hook(self._on_reduce) for fn in loss_fns]
        if miner is not None:
            self.handles.append(miner.register_forward_hook(self._on_mine))
        self.mined_embeddings = self.mined_labels = None

    def _on_reduce(self, module, args):
        loss_dict = args[0]
        self.per_tuple = [v["losses"].detach() for v in loss_dict.values()
                          if torch.is_tensor(v.get("losses")) and v["losses"].ndim > 0]

    def _on_mine(self, module, args, output):
        self.mined_embeddings, self.mined_labels = args[0], args[1]
        self.tuples = output

    def reset(self):
        self.tuples = self.mined_embeddings = self.mined_labels = None
        self.per_tuple = []


def count_tuples(tuples) -> float:
    return float(len(tuples[0])) if tuples is not None and len(tuples) else 0.0
