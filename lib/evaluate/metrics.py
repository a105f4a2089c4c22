"""Retrieval metrics of labelled embeddings: Recall@K, MAP@R, R-precision, NMI, re-id mAP@k and
one-shot accuracy."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lib.evaluate.search import _as_f32, _batch_rows, _knn_batches, kmeans, knn, squared_distances

sop_recall_ks = (1, 10, 100, 1000)


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
