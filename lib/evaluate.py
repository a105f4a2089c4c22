"""Retrieval metrics from embeddings: exact k-NN (faiss), Recall@K, MAP@R, NMI, re-id mAP@k, one-shot accuracy.

Embeddings are float arrays of shape (N, d) and labels integer arrays of shape (N,). Distances are Euclidean.

The neighbour search, pairwise distances and k-means run in faiss on a CPU, and in torch on a
CUDA device, where faiss-cpu would make scoring CPU-bound (measured on an H200: 8 s of scoring
for 3 s of training); also in torch where faiss is not installed (a bare GPU machine, lent with at
most 64 MiB of carried wheels, of which faiss-cpu alone is 18.8 MB). `METRIC_NEIGHBOURS=torch` or
`faiss` picks one. The k-NN is exact in both; k-means is Lloyd's algorithm from random points in
both, best of `restarts`, but not the same draws, so a clustering (divide and conquer, NMI) made on
a GPU is another draw than the CPU's, as a run's other numbers are (README: threads).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np
from scipy.spatial.distance import pdist

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

sop_recall_ks = (1, 10, 100, 1000)

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

# Bounds the (rows x columns) blocks held at once, so memory stays flat whatever N and k are;
# 4096 query rows is also faiss's own BLAS block size, so smaller batches would only add overhead.
_MAX_BLOCK_ENTRIES = 1 << 22
_MAX_BATCH_ROWS = 4096
_KMEANS_NITER = 20
_KMEANS_NREDO = 5


def _as_f32(x: np.ndarray, name: str) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (N, d), got {x.shape}")
    return x


def _batch_rows(columns: int) -> int:
    return max(1, min(_MAX_BATCH_ROWS, _MAX_BLOCK_ENTRIES // max(columns, 1)))


def _drop_self(sq: np.ndarray, idx: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray]:
    is_self = idx == np.arange(start, start + len(idx))[:, None]
    # With more than k exact duplicates of a point, faiss may rank all of them before the point itself,
    # which then is not in its own list: drop the extra (k+1-th) neighbour instead.
    is_self[~is_self.any(axis=1), -1] = True
    n, k1 = idx.shape
    return sq[~is_self].reshape(n, k1 - 1), idx[~is_self].reshape(n, k1 - 1)


def backend() -> str:
    """"torch" (on the CUDA device when there is one) or "faiss", as the module docstring says."""
    chosen = os.environ.get("METRIC_NEIGHBOURS")
    if chosen in ("torch", "faiss"):
        return chosen
    import torch

    if torch.cuda.is_available():
        return "torch"
    try:
        import faiss  # noqa: F401
    except ImportError:
        return "torch"
    return "faiss"


def _torch_device():
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def squared_distances(query: np.ndarray, database: np.ndarray) -> np.ndarray:
    """(len(query), len(database)) squared Euclidean distances, float32, as faiss computes them
    (|x|^2 + |y|^2 - 2<x, y>, which can dip just below zero)."""
    query, database = _as_f32(query, "query"), _as_f32(database, "database")
    if backend() == "faiss":
        import faiss

        return faiss.pairwise_distances(query, database)
    import torch

    device = _torch_device()
    q, d = torch.from_numpy(query).to(device), torch.from_numpy(database).to(device)
    return ((q * q).sum(1, keepdim=True) + (d * d).sum(1) - 2 * q @ d.T).cpu().numpy()


def _knn_batches(
    query: np.ndarray, database: np.ndarray, k: int, exclude_self: bool
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield (first query row, squared distances, indices) for consecutive batches of query rows."""
    if backend() == "torch":
        yield from _knn_batches_torch(query, database, k, exclude_self)
        return
    import faiss

    index = faiss.IndexFlatL2(database.shape[1])
    if _gpu_resources() is not None:
        index = faiss.index_cpu_to_gpu(_gpu_resources(), 0, index)
    index.add(database)
    k_search = int(k) + 1 if exclude_self else int(k)
    step = _batch_rows(k_search)
    for start in range(0, len(query), step):
        sq, idx = index.search(query[start : start + step], k_search)
        if exclude_self:
            sq, idx = _drop_self(sq, idx, start)
        yield start, sq, idx


def _knn_batches_torch(query: np.ndarray, database: np.ndarray, k: int,
                       exclude_self: bool) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    import torch

    device = _torch_device()
    db = torch.from_numpy(database).to(device)
    db_sq = (db * db).sum(1)
    k_search = int(k) + 1 if exclude_self else int(k)
    step = _batch_rows(len(database))
    for start in range(0, len(query), step):
        q = torch.from_numpy(query[start: start + step]).to(device)
        sq = (q * q).sum(1, keepdim=True) + db_sq - 2 * q @ db.T
        values, idx = torch.topk(sq, k_search, dim=1, largest=False, sorted=True)
        values, idx = values.cpu().numpy(), idx.cpu().numpy()
        if exclude_self:
            values, idx = _drop_self(values, idx, start)
        yield start, values, idx


def knn(
    query: np.ndarray, database: np.ndarray, k: int, *, exclude_self: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest database neighbours of every query row (faiss IndexFlatL2, float32).

    Returns (distances, indices), both (len(query), k), nearest first; distances are Euclidean.
    With ``exclude_self`` query and database are the same set and row i never lists index i, even when
    it has exact duplicates (removal is by index, not by zero distance).
    """
    query, database = _as_f32(query, "query"), _as_f32(database, "database")
    if exclude_self and query.shape != database.shape:
        raise ValueError("exclude_self needs query and database to be the same set")
    available = len(database) - int(exclude_self)
    if not 0 < k <= available:
        raise ValueError(f"k must be in [1, {available}], got {k}")
    sq_parts, idx_parts = [], []
    for _, sq, idx in _knn_batches(query, database, k, exclude_self):
        sq_parts.append(sq)
        idx_parts.append(idx)
    # faiss computes |x|^2 + |y|^2 - 2<x, y> in float32, which can dip just below zero.
    distances = np.sqrt(np.maximum(np.concatenate(sq_parts), 0.0))
    return distances, np.concatenate(idx_parts)


def _gpu_resources():
    """faiss's GPU resources when a faiss-gpu build and a GPU are present (paper scale), else None."""
    import faiss

    global _GPU_RESOURCES
    if _GPU_RESOURCES is None and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        _GPU_RESOURCES = faiss.StandardGpuResources()
    return _GPU_RESOURCES


_GPU_RESOURCES = None


def kmeans(x: np.ndarray, n_clusters: int, *, restarts: int = _KMEANS_NREDO, iterations: int = _KMEANS_NITER,
           seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """k-means on every point (no sub-sampling), best of `restarts`: (assignment, centroids)."""
    x = _as_f32(x, "features")
    if not 1 <= n_clusters <= len(x):
        raise ValueError(f"cannot make {n_clusters} clusters of {len(x)} points")
    if backend() == "torch":
        return _kmeans_torch(x, n_clusters, restarts, iterations, seed)
    import faiss

    km = faiss.Kmeans(
        x.shape[1],
        n_clusters,
        niter=iterations,
        nredo=restarts,
        seed=seed,
        # faiss otherwise trains on a random subset of 256 points per centroid and warns below 39.
        max_points_per_centroid=len(x),
        min_points_per_centroid=1,
        gpu=_gpu_resources() is not None,
        verbose=False,
    )
    km.train(x)
    _, assignment = km.index.search(x, 1)
    return assignment[:, 0].astype(np.int64), km.centroids.copy()


def _kmeans_torch(x: np.ndarray, n_clusters: int, restarts: int, iterations: int,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means in torch, as faiss.Kmeans does it: centroids start at random distinct points,
    an emptied cluster takes the point farthest from its centroid, the lowest inertia of `restarts`."""
    import torch

    device = _torch_device()
    points = torch.from_numpy(x).to(device)
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    best = (float("inf"), None, None)
    for _ in range(max(1, restarts)):
        centroids = points[torch.randperm(len(points), generator=generator)[:n_clusters].to(device)].clone()
        for _ in range(max(1, iterations)):
            sq = (points * points).sum(1, keepdim=True) + (centroids * centroids).sum(1) - 2 * points @ centroids.T
            assignment = sq.argmin(1)
            for c in range(n_clusters):
                members = assignment == c
                if members.any():
                    centroids[c] = points[members].mean(0)
                else:  # faiss splits a large cluster; the farthest point is the simplest stand-in
                    centroids[c] = points[sq.min(1).values.argmax()]
        sq = (points * points).sum(1, keepdim=True) + (centroids * centroids).sum(1) - 2 * points @ centroids.T
        inertia, assignment = sq.min(1)
        if float(inertia.sum()) < best[0]:
            best = (float(inertia.sum()), assignment.cpu().numpy().astype(np.int64), centroids.cpu().numpy())
    return best[1], best[2]


def _nmi(x: np.ndarray, labels: np.ndarray, n_clusters: int, seed: int) -> float:
    from sklearn.metrics import normalized_mutual_info_score  # scikit-learn's import is slow; rarely needed

    assignment, _ = kmeans(x, n_clusters, seed=seed)
    return float(normalized_mutual_info_score(labels, assignment))


def retrieval_metrics(
    embeddings: np.ndarray,
    labels: np.ndarray,
    *,
    recall_ks: Sequence[int] = (1, 2, 4, 8),
    nmi: bool = True,
    seed: int = 0,
) -> dict[str, float]:
    """Leave-one-out retrieval on one set: every item queries all the others.

    Keys: ``recall@K`` for each K (1 if any of the K nearest neighbours shares the query's label),
    ``precision@1``, ``r_precision``, ``map@r`` (Musgrave et al. 2020, R = other items of the query's
    class) and, if ``nmi``, ``nmi`` (faiss k-means with one cluster per class, best of several restarts).
    Queries whose class has no other member are excluded from every retrieval metric (as in
    pytorch-metric-learning) but still act as distractors in the database; the metrics are NaN if no
    query remains. K larger than N - 1 is clipped to N - 1 (the key keeps the requested K).
    """
    x = _as_f32(embeddings, "embeddings")
    labels = np.asarray(labels)
    if labels.shape != (len(x),):
        raise ValueError(f"labels must have shape ({len(x)},), got {labels.shape}")
    if len(x) < 2:
        raise ValueError("retrieval needs at least two embeddings")
    _, lab, counts = np.unique(labels, return_inverse=True, return_counts=True)
    lab = lab.reshape(-1)
    n_other = counts[lab] - 1
    ks = {K: min(K, len(x) - 1) for K in recall_ks}
    # One search deep enough for both the largest K and the largest R; every metric is read off it.
    # Not pml's AccuracyCalculator: it keeps the whole (N, k) neighbour table, loops in Python over classes
    # (1.3x slower at N=50k, see bench/bench_metrics.py) and casts labels to float32, so labels above 2**24 collide.
    k = min(len(x) - 1, max(max(ks.values()), int(counts.max()) - 1))
    cols = np.arange(k)

    first_hit_parts, r_precision_sum, map_r_sum = [], 0.0, 0.0
    for start, _, idx in _knn_batches(x, x, k, exclude_self=True):
        rows = slice(start, start + len(idx))
        valid = n_other[rows] > 0
        hits = lab[idx[valid]] == lab[rows][valid, None]
        r = n_other[rows][valid]
        first_hit_parts.append(np.where(hits.any(axis=1), hits.argmax(axis=1), k))
        hits &= cols < r[:, None]
        r_precision_sum += float((hits.sum(axis=1) / r).sum())
        precision_at_hits = np.cumsum(hits, axis=1) * hits / (cols + 1.0)
        map_r_sum += float((precision_at_hits.sum(axis=1) / r).sum())

    first_hit = np.concatenate(first_hit_parts)
    n_queries = len(first_hit)

    def mean_over_queries(total: float) -> float:
        return float(total) / n_queries if n_queries else float("nan")

    out = {f"recall@{K}": mean_over_queries(np.count_nonzero(first_hit < kk)) for K, kk in ks.items()}
    out["precision@1"] = mean_over_queries(np.count_nonzero(first_hit == 0))
    out["r_precision"] = mean_over_queries(r_precision_sum)
    out["map@r"] = mean_over_queries(map_r_sum)
    if nmi:
        out["nmi"] = _nmi(x, lab, len(counts), seed)
    return out


def _db_count(db_labels: np.ndarray, query_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position of each query label among the sorted distinct database labels (-1 if absent) and its count."""
    ids, counts = np.unique(db_labels, return_counts=True)
    pos = np.minimum(np.searchsorted(ids, query_labels), len(ids) - 1)
    found = ids[pos] == query_labels
    return np.where(found, pos, -1), np.where(found, counts[pos], 0)


def _check_labelled(emb: np.ndarray, labels: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    emb, labels = _as_f32(emb, f"{name}_emb"), np.asarray(labels)
    if labels.shape != (len(emb),):
        raise ValueError(f"{name}_labels must have shape ({len(emb)},), got {labels.shape}")
    return emb, labels


def map_at_k(
    query_emb: np.ndarray,
    query_labels: np.ndarray,
    db_emb: np.ndarray,
    db_labels: np.ndarray,
    k: int = 5,
) -> float:
    """Re-identification mAP@k as scored in the Where's Whale-do competition.

    Each query ranks its k nearest database images; AP@k = sum_{i<=k} P@i * rel(i) / min(k, n_relevant),
    n_relevant being the number of database images with the query's label. Queries with no relevant
    database image score 0 (they still count in the mean). Query and database must be disjoint sets,
    otherwise a query finds itself.
    """
    query_emb, query_labels = _check_labelled(query_emb, query_labels, "query")
    db_emb, db_labels = _check_labelled(db_emb, db_labels, "db")
    k_eff = min(k, len(db_emb))
    _, n_relevant = _db_count(db_labels, query_labels)
    # n_relevant <= len(db), so min(k, n_relevant) is the same whether or not k was clipped.
    denominator = np.maximum(np.minimum(k, n_relevant), 1)
    ranks = np.arange(1, k_eff + 1)
    total = 0.0
    for start, _, idx in _knn_batches(query_emb, db_emb, k_eff, exclude_self=False):
        rows = slice(start, start + len(idx))
        rel = db_labels[idx] == query_labels[rows, None]
        precision_at_hits = np.cumsum(rel, axis=1) * rel / ranks
        total += float((precision_at_hits.sum(axis=1) / denominator[rows]).sum())
    return total / len(query_emb)


def map_at_k_per_identity(
    query_emb: np.ndarray,
    query_labels: np.ndarray,
    db_emb: np.ndarray,
    db_labels: np.ndarray,
    k: int = 5,
) -> float:
    """mAP@k over ranked identities, as in the Kaggle humpback-whale competition.

    Identities are ranked by their closest database image; a query scores 1/rank of its true identity if
    that rank is <= k, else 0 (also 0 when the identity is absent from the database). Identities tied
    with the true one in distance do not push it down.
    """
    query_emb, query_labels = _check_labelled(query_emb, query_labels, "query")
    db_emb, db_labels = _check_labelled(db_emb, db_labels, "db")
    true_id, _ = _db_count(db_labels, query_labels)
    ids, id_of_db = np.unique(db_labels, return_inverse=True)
    by_id = np.argsort(id_of_db.reshape(-1), kind="stable")
    id_starts = np.searchsorted(id_of_db.reshape(-1)[by_id], np.arange(len(ids)))
    step = _batch_rows(len(db_emb))
    total = 0.0
    for start in range(0, len(query_emb), step):
        rows = slice(start, start + step)
        sq = squared_distances(query_emb[rows], db_emb)
        closest = np.minimum.reduceat(sq[:, by_id], id_starts, axis=1)
        t = true_id[rows]
        true_dist = closest[np.arange(len(t)), t]
        rank = 1 + np.count_nonzero(closest < true_dist[:, None], axis=1)
        total += float(np.where((t >= 0) & (rank <= k), 1.0 / rank, 0.0).sum())
    return total / len(query_emb)


def oneshot_accuracy(
    support_emb: Sequence[np.ndarray],
    query_emb: Sequence[np.ndarray],
    answers: Sequence[np.ndarray],
    *,
    per_run: bool = False,
) -> float | tuple[float, np.ndarray]:
    """Accuracy of N-way one-shot runs (Lake's Omniglot protocol): each query takes its nearest support.

    One (support, query, answers) triple per run; answers[j] is the index of the support image matching
    query j. Returns the accuracy over all queries of all runs, and with ``per_run`` also each run's.
    """
    correct, n_queries = [], []
    for support, query, answer in zip(support_emb, query_emb, answers, strict=True):
        _, idx = knn(query, support, 1)
        answer = np.asarray(answer)
        if answer.shape != (len(idx),):
            raise ValueError(f"answers must have shape ({len(idx)},), got {answer.shape}")
        correct.append(np.count_nonzero(idx[:, 0] == answer))
        n_queries.append(len(answer))
    correct_arr, n_arr = np.asarray(correct), np.asarray(n_queries)
    mean = float(correct_arr.sum() / n_arr.sum())
    return (mean, correct_arr / n_arr) if per_run else mean


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
