"""Tests for lib.evaluate: brute-force numpy references, hand-computed cases, and pml cross-checks."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

from lib import evaluate as ev

SEEDS = (0, 1, 2, 3)


# ---------------------------------------------------------------- brute-force references (plain numpy, float64)


def bf_distances(query, database):
    diff = np.asarray(query, np.float64)[:, None, :] - np.asarray(database, np.float64)[None, :, :]
    return np.sqrt((diff**2).sum(-1))


def bf_knn(query, database, k, exclude_self=False):
    dist = bf_distances(query, database)
    if exclude_self:
        np.fill_diagonal(dist, np.inf)
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(dist, order, axis=1), order


def bf_retrieval(x, labels, recall_ks):
    dist = bf_distances(x, x)
    n = len(x)
    sums = dict.fromkeys([*(f"recall@{k}" for k in recall_ks), "precision@1", "r_precision", "map@r"], 0.0)
    n_queries = 0
    for i in range(n):
        others = [j for j in np.argsort(dist[i], kind="stable") if j != i]
        rel = labels[others] == labels[i]
        r = int(rel.sum())
        if r == 0:
            continue
        n_queries += 1
        for k in recall_ks:
            sums[f"recall@{k}"] += float(rel[: min(k, n - 1)].any())
        sums["precision@1"] += float(rel[0])
        sums["r_precision"] += rel[:r].sum() / r
        sums["map@r"] += sum(rel[:j + 1].sum() / (j + 1) for j in range(r) if rel[j]) / r
    return {key: value / n_queries for key, value in sums.items()}


def bf_map_at_k(q, ql, db, dbl, k):
    dist = bf_distances(q, db)
    aps = []
    for i in range(len(q)):
        rel = dbl[np.argsort(dist[i], kind="stable")[:k]] == ql[i]
        n_rel = int((dbl == ql[i]).sum())
        if n_rel == 0:
            aps.append(0.0)
            continue
        aps.append(sum(rel[:j + 1].sum() / (j + 1) for j in range(len(rel)) if rel[j]) / min(k, n_rel))
    return float(np.mean(aps))


def bf_map_per_identity(q, ql, db, dbl, k):
    dist = bf_distances(q, db)
    ids = np.unique(dbl)
    aps = []
    for i in range(len(q)):
        closest = np.array([dist[i, dbl == ident].min() for ident in ids])
        ranked = ids[np.argsort(closest, kind="stable")][:k]
        hit = np.nonzero(ranked == ql[i])[0]
        aps.append(1.0 / (hit[0] + 1) if len(hit) else 0.0)
    return float(np.mean(aps))


def bf_oneshot(supports, queries, answers):
    per_run = np.array([np.mean(bf_distances(q, s).argmin(axis=1) == a) for s, q, a in zip(supports, queries, answers)])
    return per_run.mean(), per_run


def bf_spread(x):
    x = np.asarray(x, np.float64)
    dist = bf_distances(x, x)
    pairs = dist[np.triu_indices(len(x), 1)]
    rms = np.sqrt((x**2).sum(1).mean())
    return {
        "mean_pairwise_distance": pairs.mean(),
        "rms_norm": rms,
        "spread_ratio": pairs.mean() / (2 * rms),
        "dim_variance_mean": x.var(axis=0).mean(),
    }


def bf_nmi(a, b):
    """Normalised mutual information with the arithmetic-mean normalisation (sklearn's default)."""
    _, a = np.unique(a, return_inverse=True)
    _, b = np.unique(b, return_inverse=True)
    joint = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(joint, (a, b), 1)
    joint /= joint.sum()
    pa, pb = joint.sum(1), joint.sum(0)
    nz = joint > 0
    mi = (joint[nz] * np.log(joint[nz] / np.outer(pa, pb)[nz])).sum()
    entropy = lambda p: -(p[p > 0] * np.log(p[p > 0])).sum()  # noqa: E731
    return mi / ((entropy(pa) + entropy(pb)) / 2)


# ---------------------------------------------------------------- data


def clustered(seed, n=300, d=16, n_classes=40, sigma=1.2):
    """Noisy classes of very unequal sizes (lognormal), including singletons, in float32."""
    rng = np.random.default_rng(seed)
    weights = rng.lognormal(0.0, 1.0, n_classes)
    labels = rng.choice(n_classes, n, p=weights / weights.sum())
    labels[:5] = n_classes + np.arange(5)  # guaranteed singletons
    centres = rng.normal(size=(labels.max() + 1, d))
    x = centres[labels] + sigma * rng.normal(size=(n, d))
    return x.astype(np.float32), labels


def test_clustered_data_has_singletons_and_big_classes():
    _, labels = clustered(0)
    counts = np.bincount(labels)
    assert (counts == 1).sum() >= 5 and counts.max() >= 20


# ---------------------------------------------------------------- knn


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("exclude_self", [False, True])
def test_knn_matches_bruteforce(seed, exclude_self):
    x, _ = clustered(seed)
    query = x if exclude_self else x[:50] + 0.1
    dist, idx = ev.knn(query, x, 7, exclude_self=exclude_self)
    bf_dist, bf_idx = bf_knn(query, x, 7, exclude_self=exclude_self)
    np.testing.assert_array_equal(idx, bf_idx)
    np.testing.assert_allclose(dist, bf_dist, rtol=1e-5, atol=1e-5)
    assert dist.dtype == np.float32 and idx.shape == (len(query), 7)


def test_knn_batched_equals_unbatched(monkeypatch):
    x, _ = clustered(0)
    full = ev.knn(x, x, 5, exclude_self=True)
    monkeypatch.setattr(ev.search, "_MAX_BATCH_ROWS", 7)  # the row offset of each batch matters for exclude_self
    batched = ev.knn(x, x, 5, exclude_self=True)
    np.testing.assert_array_equal(full[1], batched[1])
    np.testing.assert_array_equal(full[0], batched[0])


def test_knn_exclude_self_with_duplicates():
    # Five copies of one point plus two far points. With k=2 each copy has 4 neighbours at distance 0,
    # so faiss may rank other copies before the point itself; self must still be gone, by index.
    x = np.array([[1.0, 2.0]] * 5 + [[10.0, 0.0], [0.0, 10.0]], np.float32)
    for k in (1, 2, 4, 6):
        dist, idx = ev.knn(x, x, k, exclude_self=True)
        assert not (idx == np.arange(len(x))[:, None]).any()
        assert all(len(set(row)) == k for row in idx)
        np.testing.assert_array_equal(dist[:5, : min(k, 4)], 0.0)
        assert set(idx[:5, : min(k, 4)].ravel()) <= set(range(5))


def test_knn_distances_are_euclidean_and_never_negative():
    # Large, nearly equal vectors: faiss's |x|^2 + |y|^2 - 2<x, y> can come out slightly negative.
    rng = np.random.default_rng(0)
    x = (1000.0 + 1e-4 * rng.normal(size=(50, 8))).astype(np.float32)
    dist, _ = ev.knn(x, x, 3, exclude_self=True)
    assert (dist >= 0).all() and np.isfinite(dist).all()
    dist, _ = ev.knn(np.zeros((1, 2), np.float32), np.array([[3.0, 4.0]], np.float32), 1)
    assert dist[0, 0] == pytest.approx(5.0)


def test_knn_rejects_bad_k():
    x = np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError):
        ev.knn(x, x, 4, exclude_self=True)
    with pytest.raises(ValueError):
        ev.knn(x, x, 0)
    with pytest.raises(ValueError):
        ev.knn(x, x[:3], 2, exclude_self=True)


# ---------------------------------------------------------------- retrieval_metrics


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("recall_ks", [(1, 2, 4, 8), ev.sop_recall_ks])
def test_retrieval_metrics_match_bruteforce(seed, recall_ks):
    x, labels = clustered(seed)
    got = ev.retrieval_metrics(x, labels, recall_ks=recall_ks, nmi=False)
    want = bf_retrieval(x, labels, recall_ks)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-6), key


def test_retrieval_metrics_small_batches(monkeypatch):
    x, labels = clustered(1)
    want = ev.retrieval_metrics(x, labels, nmi=False)
    monkeypatch.setattr(ev.search, "_MAX_BLOCK_ENTRIES", 200)  # a handful of rows per batch
    assert ev.retrieval_metrics(x, labels, nmi=False) == pytest.approx(want, abs=1e-12)


def test_retrieval_metrics_hand_case_four_points():
    # Points on a line: 0 (A), 1 (A), 1.6 (B), 2.5 (B).
    # Nearest neighbours: 0 -> 1 (A, hit); 1 -> 1.6 (B, miss); 1.6 -> 1 (A, miss); 2.5 -> 1.6 (B, hit).
    # recall@1 = precision@1 = 2/4; R = 1 for every query, so R-precision = MAP@R = precision@1 = 0.5.
    # The second neighbours of the two misses are their classmates: recall@2 = 1.
    x = np.array([[0.0], [1.0], [1.6], [2.5]], np.float32)
    got = ev.retrieval_metrics(x, np.array([0, 0, 1, 1]), recall_ks=(1, 2), nmi=False)
    assert got == pytest.approx({"recall@1": 0.5, "recall@2": 1.0, "precision@1": 0.5, "r_precision": 0.5, "map@r": 0.5})


def test_retrieval_metrics_hand_case_map_at_r():
    # Points on a line: A at 0, 2, 3, 10.5; B at 0.8, 5; C (singleton, excluded as a query) at 100.
    # Relevance of each query's ranked neighbours (C is always last, beyond R):
    #   q=0    (A, R=3): 0.8B 2A 3A 5B 10.5A   -> [0,1,1,0,1]  R-prec 2/3  AP@R (1/2 + 2/3)/3 = 7/18
    #   q=0.8  (B, R=1): 0A 2A 3A 5B 10.5A     -> [0,0,0,1,0]  R-prec 0    AP@R 0
    #   q=2    (A, R=3): 3A 0.8B 0A 5B 10.5A   -> [1,0,1,0,1]  R-prec 2/3  AP@R (1 + 2/3)/3 = 5/9
    #   q=3    (A, R=3): 2A 5B 0.8B 0A 10.5A   -> [1,0,0,1,1]  R-prec 1/3  AP@R 1/3
    #   q=5    (B, R=1): 3A 2A 0.8B 0A 10.5A   -> [0,0,1,0,0]  R-prec 0    AP@R 0
    #   q=10.5 (A, R=3): 5B 3A 2A 0.8B 0A      -> [0,1,1,0,1]  R-prec 2/3  AP@R 7/18
    # recall@1 = 2/6, recall@2 = 4/6, recall@4 = 6/6; R-precision = (7/3)/6 = 7/18; MAP@R = (30/18)/6 = 5/18.
    x = np.array([[0.0], [0.8], [2.0], [3.0], [5.0], [10.5], [100.0]], np.float32)
    labels = np.array([0, 1, 0, 0, 1, 0, 2])
    got = ev.retrieval_metrics(x, labels, recall_ks=(1, 2, 4), nmi=False)
    want = {"recall@1": 1 / 3, "recall@2": 2 / 3, "recall@4": 1.0, "precision@1": 1 / 3}
    want |= {"r_precision": 7 / 18, "map@r": 5 / 18}
    assert got == pytest.approx(want, abs=1e-12)
    assert bf_retrieval(x, labels, (1, 2, 4)) == pytest.approx(want, abs=1e-12)


def test_retrieval_metrics_recall_k_clipped_to_n_minus_1():
    x, labels = clustered(0, n=60, n_classes=6)
    got = ev.retrieval_metrics(x, labels, recall_ks=ev.sop_recall_ks, nmi=False)
    assert list(got)[:4] == ["recall@1", "recall@10", "recall@100", "recall@1000"]
    assert got["recall@100"] == got["recall@1000"] == 1.0  # every counted query has a classmate somewhere


def test_retrieval_metrics_large_labels_do_not_collide():
    # 2**24 and 2**24 + 1 are the same float32 (pml's AccuracyCalculator scores this set as precision@1 = 1).
    # Each point's nearest neighbour is its pair partner, which has the other label: precision@1 = 0.
    x = np.array([[0.0], [0.1], [5.0], [5.1]], np.float32)
    labels = np.array([2**24, 2**24 + 1, 2**24, 2**24 + 1])
    assert ev.retrieval_metrics(x, labels, recall_ks=(1,), nmi=False)["precision@1"] == 0.0


def test_retrieval_metrics_all_singletons_is_nan():
    got = ev.retrieval_metrics(np.eye(4, dtype=np.float32), np.arange(4), nmi=False)
    assert all(np.isnan(v) for v in got.values())


@pytest.mark.parametrize("seed", SEEDS)
def test_retrieval_metrics_agree_with_pml(seed):
    x, labels = clustered(seed)
    calc = AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
        k="max_bin_count",  # MAP@R and R-precision are only right when k covers the largest class
        device=torch.device("cpu"),
    )
    pml = calc.get_accuracy(torch.from_numpy(x), torch.from_numpy(labels))
    got = ev.retrieval_metrics(x, labels, nmi=False)
    assert got["precision@1"] == pytest.approx(pml["precision_at_1"], abs=1e-9)
    assert got["r_precision"] == pytest.approx(pml["r_precision"], abs=1e-9)
    assert got["map@r"] == pytest.approx(pml["mean_average_precision_at_r"], abs=1e-9)


def test_pml_map_at_r_is_wrong_when_k_misses_the_largest_class():
    # Why AccuracyCalculator must be given k="max_bin_count": with a smaller k it truncates R.
    x, labels = clustered(0)
    small_k = AccuracyCalculator(include=("mean_average_precision_at_r",), k=3, device=torch.device("cpu"))
    truncated = small_k.get_accuracy(torch.from_numpy(x), torch.from_numpy(labels))["mean_average_precision_at_r"]
    assert abs(truncated - ev.retrieval_metrics(x, labels, nmi=False)["map@r"]) > 1e-3


# ---------------------------------------------------------------- NMI


def blobs(sizes, d=8, seed=0):
    """Tight, far-apart blobs: any sensible k-means with one centroid per blob finds them exactly."""
    rng = np.random.default_rng(seed)
    blob = np.repeat(np.arange(len(sizes)), sizes)
    x = 100.0 * rng.normal(size=(len(sizes), d))[blob] + 0.01 * rng.normal(size=(len(blob), d))
    return x.astype(np.float32), blob


def test_nmi_is_one_for_perfectly_separated_clusters():
    x, blob = blobs([5, 17, 40, 3, 60])
    assert ev.retrieval_metrics(x, blob + 7)["nmi"] == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_nmi_matches_bruteforce_when_clusters_are_known(seed):
    # Labels disagree with the blobs for a third of the points; k-means still recovers the blobs,
    # so NMI must equal the plain-numpy NMI of (labels, blob).
    x, blob = blobs([30, 50, 20, 40], seed=seed)
    rng = np.random.default_rng(seed)
    labels = np.where(rng.random(len(blob)) < 1 / 3, rng.integers(0, 4, len(blob)), blob)
    assert len(np.unique(labels)) == 4
    assert ev.retrieval_metrics(x, labels, recall_ks=(1,))["nmi"] == pytest.approx(bf_nmi(labels, blob), abs=1e-6)


def test_nmi_kmeans_uses_every_point_with_restarts(monkeypatch):
    # faiss trains on at most 256 points per centroid unless told otherwise; 600 points in 2 clusters exceeds that.
    made = []
    real_kmeans = faiss.Kmeans

    def spy(*args, **kwargs):
        made.append(real_kmeans(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(faiss, "Kmeans", spy)
    x, blob = blobs([300, 300])
    assert ev.retrieval_metrics(x, blob, recall_ks=(1,))["nmi"] == pytest.approx(1.0, abs=1e-12)
    (kmeans,) = made
    assert kmeans.k == 2 and kmeans.cp.max_points_per_centroid * kmeans.k >= len(x) and kmeans.cp.nredo > 1


# ---------------------------------------------------------------- re-identification mAP@k


def reid_data(seed):
    rng = np.random.default_rng(seed)
    db = rng.normal(size=(120, 8)).astype(np.float32)
    db_labels = rng.integers(0, 30, 120)
    q = rng.normal(size=(40, 8)).astype(np.float32)
    q_labels = rng.integers(0, 35, 40)  # some identities are absent from the database
    return q, q_labels, db, db_labels


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("k", [1, 5, 20])
def test_map_at_k_matches_bruteforce(seed, k):
    q, ql, db, dbl = reid_data(seed)
    assert not np.isin(ql, dbl).all()
    assert ev.map_at_k(q, ql, db, dbl, k=k) == pytest.approx(bf_map_at_k(q, ql, db, dbl, k), abs=1e-6)
    assert ev.map_at_k_per_identity(q, ql, db, dbl, k=k) == pytest.approx(bf_map_per_identity(q, ql, db, dbl, k), abs=1e-6)


def test_map_at_k_per_identity_small_batches(monkeypatch):
    q, ql, db, dbl = reid_data(0)
    want = ev.map_at_k_per_identity(q, ql, db, dbl)
    monkeypatch.setattr(ev.search, "_MAX_BLOCK_ENTRIES", 500)
    assert ev.map_at_k_per_identity(q, ql, db, dbl) == pytest.approx(want, abs=1e-12)


# Database on a line: 1 (B), 2 (A), 3 (C), 4 (A), 5 (B), 6 (A).
REID_DB = np.arange(1.0, 7.0, dtype=np.float32)[:, None]
REID_DB_LABELS = np.array([1, 0, 2, 0, 1, 0])


def test_map_at_k_hand_case():
    # q=0 (A): top 5 = 1B 2A 3C 4A 5B -> rel [0,1,0,1,0], 3 A's in the db: AP = (1/2 + 2/4) / min(5, 3) = 1/3.
    # q=20 (D): D is not in the database -> 0.
    # q=10 (B): top 5 = 6A 5B 4A 3C 2A -> rel [0,1,0,0,0], 2 B's: AP = (1/2) / 2 = 1/4.
    # mAP@5 = (1/3 + 0 + 1/4) / 3 = 7/36.
    q = np.array([[0.0], [20.0], [10.0]], np.float32)
    assert ev.map_at_k(q, np.array([0, 3, 1]), REID_DB, REID_DB_LABELS, k=5) == pytest.approx(7 / 36)
    # k=1: nobody's nearest image is right -> 0; k larger than the database is clipped.
    assert ev.map_at_k(q, np.array([0, 3, 1]), REID_DB, REID_DB_LABELS, k=1) == 0.0
    assert ev.map_at_k(q, np.array([0, 3, 1]), REID_DB, REID_DB_LABELS, k=50) == pytest.approx(
        bf_map_at_k(q, np.array([0, 3, 1]), REID_DB, REID_DB_LABELS, 50)
    )


def test_map_at_k_per_identity_hand_case():
    # Identities ranked by their closest image:
    #   q=0   (A): B@1, A@2, C@3  -> A at rank 2 -> 1/2
    #   q=20  (D): absent          -> 0
    #   q=10  (B): A@4, B@5, C@7  -> rank 2 -> 1/2
    #   q=3.4 (C): C@0.4          -> rank 1 -> 1
    # mAP@5 = (1/2 + 0 + 1/2 + 1) / 4 = 1/2; with k=1 only the last counts: 1/4.
    q = np.array([[0.0], [20.0], [10.0], [3.4]], np.float32)
    ql = np.array([0, 3, 1, 2])
    assert ev.map_at_k_per_identity(q, ql, REID_DB, REID_DB_LABELS, k=5) == pytest.approx(0.5)
    assert ev.map_at_k_per_identity(q, ql, REID_DB, REID_DB_LABELS, k=1) == pytest.approx(0.25)


# ---------------------------------------------------------------- one-shot


@pytest.mark.parametrize("seed", SEEDS)
def test_oneshot_matches_bruteforce(seed):
    rng = np.random.default_rng(seed)
    supports = [rng.normal(size=(20, 12)).astype(np.float32) for _ in range(20)]
    answers = [rng.permutation(20) for _ in range(20)]
    queries = [s[a] + 0.9 * rng.normal(size=s.shape).astype(np.float32) for s, a in zip(supports, answers)]
    mean, per_run = ev.oneshot_accuracy(supports, queries, answers, per_run=True)
    bf_mean, bf_per_run = bf_oneshot(supports, queries, answers)
    assert 0.0 < mean < 1.0
    assert mean == pytest.approx(bf_mean, abs=1e-12)
    np.testing.assert_allclose(per_run, bf_per_run, atol=1e-12)
    assert ev.oneshot_accuracy(supports, queries, answers) == mean


def test_oneshot_hand_case():
    # Run 1: supports at 0, 10, 20; queries at 1, 19, 12 pick supports 0, 2, 1; answers 0, 1, 1 -> 2/3.
    # Run 2: same supports, queries at 9, 21, -5 pick 1, 2, 0 = answers -> 1.
    # Over all 6 queries: 5/6.
    supports = [np.array([[0.0], [10.0], [20.0]], np.float32)] * 2
    queries = [np.array([[1.0], [19.0], [12.0]], np.float32), np.array([[9.0], [21.0], [-5.0]], np.float32)]
    answers = [np.array([0, 1, 1]), np.array([1, 2, 0])]
    mean, per_run = ev.oneshot_accuracy(supports, queries, answers, per_run=True)
    assert mean == pytest.approx(5 / 6)
    np.testing.assert_allclose(per_run, [2 / 3, 1.0])


# ---------------------------------------------------------------- embedding_spread


@pytest.mark.parametrize("seed", SEEDS)
def test_embedding_spread_matches_bruteforce(seed):
    x, _ = clustered(seed, n=150)
    got = ev.embedding_spread(x)
    want = bf_spread(x)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-6, abs=1e-12), key


def test_embedding_spread_hand_cases():
    # (0, 0) and (3, 4): one pair at distance 5; rms norm sqrt((0 + 25) / 2); per-dimension variances 2.25 and 4.
    got = ev.embedding_spread(np.array([[0.0, 0.0], [3.0, 4.0]]))
    assert got == pytest.approx(
        {
            "mean_pairwise_distance": 5.0,
            "rms_norm": np.sqrt(12.5),
            "spread_ratio": 5.0 / (2 * np.sqrt(12.5)),
            "dim_variance_mean": 3.125,
        }
    )
    collapsed = ev.embedding_spread(np.tile(np.array([[0.3, -1.2, 5.0]], np.float32), (50, 1)))
    assert collapsed["mean_pairwise_distance"] == 0.0 and collapsed["spread_ratio"] == 0.0
    assert collapsed["dim_variance_mean"] == pytest.approx(0.0, abs=1e-12)


def test_embedding_spread_random_unit_vectors_and_subsampling():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 256))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    got = ev.embedding_spread(x, max_points=500)
    assert got["spread_ratio"] == pytest.approx(np.sqrt(2) / 2, abs=0.01)
    assert got["rms_norm"] == pytest.approx(1.0)
    assert ev.embedding_spread(x, max_points=500) == got  # deterministic
    assert ev.embedding_spread(x, max_points=500, seed=1) != got


def test_distance_contrast_hand_case_and_concentration():
    from lib.evaluate import distance_contrast

    # Points 0, 1, 3 on a line: ratios 3/1, 2/1, 3/2 -> median 2.
    x = np.array([[0.0], [1.0], [3.0]])
    assert distance_contrast(x) == pytest.approx(2.0)
    # A near-duplicate pair has an enormous ratio; the median is not moved by it.
    assert distance_contrast(np.array([[0.0], [1e-9], [1.0], [3.0], [4.5]])) < 10
    rng = np.random.default_rng(0)
    low, high = (distance_contrast(rng.normal(size=(400, d))) for d in (2, 512))
    assert high < 1.5 < low


def test_effective_rank_ignores_scale_and_offset_and_sees_collapse():
    from lib.evaluate import effective_rank

    rng = np.random.default_rng(0)
    cloud = rng.normal(size=(500, 16))
    full = effective_rank(cloud)
    assert 14 < full <= 16
    assert effective_rank(cloud * 1e-4 + 7.0) == pytest.approx(full, rel=1e-6)
    line = np.outer(rng.normal(size=500), rng.normal(size=16)) + rng.normal(size=16)
    assert effective_rank(line) == pytest.approx(1.0, abs=1e-6)
    assert effective_rank(np.ones((50, 8))) == 1.0
    # Two equal directions: rank 2 exactly (entropy of (1/2, 1/2) is log 2).
    two = np.concatenate([np.eye(2), -np.eye(2)]).repeat(10, axis=0)
    assert effective_rank(two) == pytest.approx(2.0)


def test_chance_precision_at_1_matches_random_rankings():
    from lib.evaluate import chance_precision_at_1, retrieval_metrics

    labels = np.repeat(np.arange(40), [2, 5] * 20)
    expected = np.mean([(c - 1) / (len(labels) - 1) for c in np.repeat([2, 5] * 20, [2, 5] * 20)])
    assert chance_precision_at_1(labels) == pytest.approx(expected)
    rng = np.random.default_rng(0)
    observed = np.mean([retrieval_metrics(rng.normal(size=(len(labels), 32)), labels, nmi=False)["precision@1"]
                        for _ in range(30)])
    assert observed == pytest.approx(expected, abs=0.02)


def test_collapse_test_is_scale_free_and_tells_contraction_from_collapse():
    from lib.evaluate import collapse_geometry, retrieval_metrics

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(50), 4)
    centres = rng.normal(size=(50, 16))
    good = centres[labels] + 0.1 * rng.normal(size=(200, 16))

    def flags(x):
        p1 = retrieval_metrics(x, labels, nmi=False)["precision@1"]
        g = collapse_geometry(x, labels, p1, contraction_threshold=0.05)
        return g["collapsed"], g["contracted"]

    assert flags(good) == (False, False)
    # The same embedding shrunk towards a far-away point: contracted, yet retrieval is untouched.
    assert flags(good * 1e-3 + 10.0) == (False, True)
    # Identity information gone (labels shuffled against the points): collapsed at any scale.
    assert flags(rng.normal(size=(200, 16)))[0]
    assert flags(np.outer(rng.normal(size=200), np.ones(16)))[0]  # one direction left


# ---------------------------------------------------------------- the torch backend (CUDA, or no faiss)
@pytest.mark.parametrize("exclude_self", [False, True])
def test_the_torch_neighbour_search_is_faiss_s_exact_search(monkeypatch, exclude_self):
    """On a GPU, or without faiss, k-NN runs in torch: the same neighbours, the same distances."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(700, 24)).astype(np.float32)
    monkeypatch.setenv("METRIC_NEIGHBOURS", "faiss")
    want = ev.knn(x, x, 9, exclude_self=exclude_self)
    monkeypatch.setenv("METRIC_NEIGHBOURS", "torch")
    got = ev.knn(x, x, 9, exclude_self=exclude_self)
    np.testing.assert_array_equal(got[1], want[1])
    # a float32 |x|^2 + |y|^2 - 2<x, y> near zero leaves a few 1e-3 after the square root
    np.testing.assert_allclose(got[0], want[0], rtol=1e-4, atol=1e-2)
    monkeypatch.setenv("METRIC_NEIGHBOURS", "torch")
    torch_sq = ev.squared_distances(x[:50], x)
    monkeypatch.setenv("METRIC_NEIGHBOURS", "faiss")
    np.testing.assert_allclose(torch_sq, ev.squared_distances(x[:50], x), rtol=1e-4, atol=1e-3)


def test_the_torch_k_means_finds_separated_clusters_and_faiss_s_inertia(monkeypatch):
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=20, size=(5, 8))
    labels = np.repeat(np.arange(5), 80)
    x = (centres[labels] + rng.normal(size=(400, 8))).astype(np.float32)
    inertia = {}
    for name in ("torch", "faiss"):
        monkeypatch.setenv("METRIC_NEIGHBOURS", name)
        assignment, centroids = ev.kmeans(x, 5, seed=1)
        assert assignment.shape == (400,) and centroids.shape == (5, 8)
        from sklearn.metrics import normalized_mutual_info_score
        assert normalized_mutual_info_score(labels, assignment) == pytest.approx(1.0)
        inertia[name] = float(((x - centroids[assignment]) ** 2).sum())
    assert inertia["torch"] == pytest.approx(inertia["faiss"], rel=1e-3)


def test_without_faiss_the_neighbours_come_from_torch(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_faiss(name, *args, **kwargs):
        if name == "faiss":
            raise ImportError("no faiss here")
        return real_import(name, *args, **kwargs)

    monkeypatch.delenv("METRIC_NEIGHBOURS", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_faiss)
    assert ev.backend() == "torch"
    x = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    assert ev.knn(x, x, 3, exclude_self=True)[1].shape == (50, 3)
