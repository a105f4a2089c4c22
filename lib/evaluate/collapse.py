"""How spread out or collapsed an embedding is: the spread ratio, distance contrast, effective rank,
chance precision@1, and the collapse rule that combines them."""
from __future__ import annotations

import numpy as np
from scipy.spatial.distance import pdist

COLLAPSE_RULE = (
    "collapsed = in the evaluated space, nearest-neighbour retrieval is no better than twice chance "
    "(precision@1 <= 2 x the precision@1 of a random ranking) or the centred held-out embeddings "
    "span less than 1.5 effective dimensions (exp of the entropy of their singular values). Both are "
    "unchanged by rescaling the embedding or shifting it by a common offset. `contracted` keeps the "
    "older, scale-dependent flag under an honest name: the spread ratio (mean pairwise distance / "
    "(2 x RMS norm)) below eval.contraction_threshold, i.e. the points sit close together relative to "
    "their distance from the origin, which a well-trained embedding can also do."
)
CHANCE_FACTOR = 2.0
MIN_EFFECTIVE_RANK = 1.5


def embedding_spread(embeddings: np.ndarray, max_points: int = 2000, seed: int = 0) -> dict[str, float]:
    """How spread out (or collapsed) an embedding is.

    ``mean_pairwise_distance`` over distinct pairs, ``rms_norm``, ``spread_ratio`` = mean_pairwise_distance /
    (2 rms_norm), which lies in [0, 1] (about 0.71 for random unit vectors in high dimension, 0 for a single
    point repeated), and ``dim_variance_mean`` (per-dimension population variance averaged over dimensions).
    All four use the same deterministic random subset of ``max_points`` rows when N is larger.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"embeddings must have shape (N, d) with N >= 1, got {x.shape}")
    if len(x) > max_points:
        x = x[np.sort(np.random.default_rng(seed).choice(len(x), max_points, replace=False))]
    # pdist takes differences directly, so coincident points give exactly 0 (the |x|^2 + |y|^2 - 2<x, y> form does not).
    mean_pairwise = float(pdist(x).mean()) if len(x) > 1 else 0.0
    rms_norm = float(np.sqrt(np.mean(np.sum(x * x, axis=1))))
    return {
        "mean_pairwise_distance": mean_pairwise,
        "rms_norm": rms_norm,
        "spread_ratio": mean_pairwise / (2 * rms_norm) if rms_norm > 0 else 0.0,
        "dim_variance_mean": float(np.var(x, axis=0).mean()),
    }


def distance_contrast(embeddings: np.ndarray, n_queries: int = 500, seed: int = 0) -> float:
    """Median over sampled queries of (farthest distance / nearest distance) to the other points.

    The "curse of dimensionality" argument (Beyer et al. 1999): for i.i.d. random vectors this
    ratio tends to 1 as the dimension grows, so nearest neighbours stop meaning anything. A
    trained embedding can be tested against the same yardstick. The median, not the mean: a
    query with a near-duplicate has a huge ratio (infinite for an exact one), and a few of those
    would otherwise decide the average.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    rng = np.random.default_rng(seed)
    queries = rng.choice(len(x), size=min(n_queries, len(x)), replace=False)
    d = _distances(x, queries)
    d[np.arange(len(queries)), queries] = np.nan
    nearest, farthest = np.nanmin(d, axis=1), np.nanmax(d, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.median(farthest / nearest))


def _distances(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    sq = (x**2).sum(1)
    return np.sqrt(np.maximum(sq[rows, None] + sq[None, :] - 2 * x[rows] @ x.T, 0.0))


def effective_rank(embeddings: np.ndarray, max_points: int = 2000, seed: int = 0) -> float:
    """exp(entropy) of the normalised singular values of the centred embedding (Roy & Vetterli 2007).

    Between 1 (every point on one line through the mean, or all identical: 1 by convention) and
    min(N, d) (variance spread evenly over every direction). Scaling the embedding or adding a common
    offset does not change it, unlike the spread ratio, so it tells collapse (no directions left)
    from mere contraction (a small but full-dimensional cloud).
    """
    x = np.asarray(embeddings, dtype=np.float64)
    if len(x) > max_points:
        x = x[np.sort(np.random.default_rng(seed).choice(len(x), max_points, replace=False))]
    x = x - x.mean(axis=0)
    s = np.linalg.svd(x, compute_uv=False)
    total = s.sum()
    if not np.isfinite(total) or total <= 1e-12 * max(1.0, float(np.abs(x).max(initial=0.0))) * len(x):
        return 1.0
    p = s[s > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def chance_precision_at_1(labels: np.ndarray) -> float:
    """Precision@1 (= Recall@1) of a random ranking: the chance that a random other item shares the
    query's label, averaged over the queries that have a same-label item (as `retrieval_metrics`)."""
    _, lab, counts = np.unique(np.asarray(labels), return_inverse=True, return_counts=True)
    n_other = counts[lab.reshape(-1)] - 1
    valid = n_other > 0
    if not valid.any() or len(lab) < 2:
        return float("nan")
    return float((n_other[valid] / (len(lab) - 1)).mean())


def collapse_geometry(emb: np.ndarray, labels: np.ndarray, precision_at_1: float, contraction_threshold: float) -> dict:
    """The collapse test (`COLLAPSE_RULE`) and the quantities it reads, for one space."""
    out = embedding_spread(emb)
    out["effective_rank"] = effective_rank(emb)
    out["chance_precision@1"] = chance_precision_at_1(labels)
    out["collapsed"] = bool(precision_at_1 <= CHANCE_FACTOR * out["chance_precision@1"]
                            or out["effective_rank"] < MIN_EFFECTIVE_RANK)
    out["contracted"] = bool(out["spread_ratio"] < contraction_threshold)
    return out
