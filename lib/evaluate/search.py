"""Exact neighbour search, pairwise distances and k-means: in faiss on a CPU, in torch on a CUDA
device or where faiss is not installed (`backend`, `METRIC_NEIGHBOURS`)."""
from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

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
