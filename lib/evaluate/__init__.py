"""Retrieval metrics from embeddings: exact k-NN (faiss), Recall@K, MAP@R, NMI, re-id mAP@k, one-shot accuracy.

Embeddings are float arrays of shape (N, d) and labels integer arrays of shape (N,). Distances are Euclidean.

The neighbour search, pairwise distances and k-means run in faiss on a CPU, and in torch on a
CUDA device, where faiss-cpu would make scoring CPU-bound (measured on an H200: 8 s of scoring
for 3 s of training); also in torch where faiss is not installed (a bare GPU machine, lent with at
most 64 MiB of carried wheels, of which faiss-cpu alone is 18.8 MB). `METRIC_NEIGHBOURS=torch` or
`faiss` picks one. The k-NN is exact in both; k-means is Lloyd's algorithm from random points in
both, best of `restarts`, but not the same draws, so a clustering (divide and conquer, NMI) made on
a GPU is another draw than the CPU's, as a run's other numbers are (README: threads).

The package: `search` (k-NN, distances, k-means and their backend), `metrics` (retrieval metrics),
`collapse` (spread, effective rank and the collapse rule).
"""

from __future__ import annotations

from lib.evaluate.collapse import (
    CHANCE_FACTOR,
    COLLAPSE_RULE,
    MIN_EFFECTIVE_RANK,
    chance_precision_at_1,
    collapse_geometry,
    distance_contrast,
    effective_rank,
    embedding_spread,
)
from lib.evaluate.metrics import (
    map_at_k,
    map_at_k_per_identity,
    oneshot_accuracy,
    retrieval_metrics,
    sop_recall_ks,
)
from lib.evaluate.search import backend, kmeans, knn, squared_distances

__all__ = [
    "chance_precision_at_1",
    "collapse_geometry",
    "distance_contrast",
    "effective_rank",
    "embedding_spread",
    "kmeans",
    "knn",
    "map_at_k",
    "map_at_k_per_identity",
    "oneshot_accuracy",
    "retrieval_metrics",
    "sop_recall_ks",
]
