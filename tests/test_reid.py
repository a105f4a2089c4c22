"""Chapter 5's re-identification protocol: scenarios, humpback mAP@5 with "new", thresholds."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lib import reid
from lib.evaluate import map_at_k_per_identity


def _meta() -> pd.DataFrame:
    """Six whales: w0-w2 seen at two or three top-view encounters, w3-w5 at one; w0 also from the side."""
    rows = []
    encounters = {"w0": 3, "w1": 2, "w2": 2, "w3": 1, "w4": 1, "w5": 1}
    for w, n in encounters.items():
        for e in range(n):
            for photo in range(3):
                rows.append({"whale_id": w, "encounter_id": f"{w}-{e}", "date": f"2020-0{e + 1}-01", "viewpoint": "top"})
    for side in ("left", "right"):
        for photo in range(2):
            rows.append({"whale_id": "w0", "encounter_id": f"w0-{side}", "date": "2020-05-01", "viewpoint": side})
    meta = pd.DataFrame(rows)
    meta["label"] = np.unique(meta.whale_id, return_inverse=True)[1]
    return meta


def _perfect(meta: pd.DataFrame) -> np.ndarray:
    """Each whale at its own corner of the sphere: every ranking is right."""
    return np.eye(8, dtype=np.float32)[meta.label.to_numpy()]


def test_later_encounter_queries_are_each_whales_last_encounter() -> None:
    meta = _meta()
    s = reid.scenarios(meta)["top, later encounter"]
    queried = set(meta.encounter_id[s.query])
    assert queried == {"w0-2", "w1-1", "w2-1"}
    assert not queried & set(meta.encounter_id[s.catalogue])  # no near-duplicates of a query's own encounter
    assert set(meta.viewpoint[np.concatenate([s.query, s.catalogue])]) == {"top"}


def test_same_encounter_and_side_scenarios() -> None:
    meta = _meta()
    sc = reid.scenarios(meta, seed=3)
    same = sc["top, same encounter allowed"]
    assert len(same.query) == meta[meta.viewpoint == "top"].encounter_id.nunique()  # one per encounter
    assert not set(same.query) & set(same.catalogue)
    side = sc["side, same side"]
    assert sorted(meta.viewpoint[side.query]) == ["left", "right"]
    # a left view searched among left views only: perfect embeddings put both sides of w0 together,
    # so mixing the sides could not be seen in the score, but the per-side catalogue can
    emb, labels = _perfect(meta), meta.label.to_numpy()
    assert reid.scenario_map(emb, labels, meta, side, 20) == pytest.approx(1.0)
    assert reid.scenario_map(emb, labels, meta, sc["top, later encounter"], 20) == pytest.approx(1.0)


def test_closed_map5_matches_the_evaluate_module_and_averaging() -> None:
    rng = np.random.default_rng(0)
    cat_labels = np.repeat(np.arange(10), 3)
    cat = rng.normal(size=(30, 16)).astype(np.float32)
    query_labels = rng.integers(0, 10, size=25)
    query = rng.normal(size=(25, 16)).astype(np.float32)
    assert reid.closed_map5(query, query_labels, cat, cat_labels) == pytest.approx(
        map_at_k_per_identity(query, query_labels, cat, cat_labels, 5))
    means, ids = reid.identities(cat, cat_labels, average=True)
    assert list(ids) == list(range(10)) and np.allclose(np.linalg.norm(means, axis=1), 1)
    one = np.arange(0, 30, 3)  # one photo each: averaging changes nothing
    assert reid.closed_map5(query, query_labels, cat[one] / np.linalg.norm(cat[one], axis=1, keepdims=True), cat_labels[one], True) \
        == pytest.approx(reid.closed_map5(query, query_labels, cat[one] / np.linalg.norm(cat[one], axis=1, keepdims=True), cat_labels[one]))


def test_open_set_map5_by_hand() -> None:
    ids = np.array([10, 11, 12])
    distances = np.array([[0.1, 0.5, 0.9],   # known 10, closest, under the threshold: rank 1
                          [0.6, 0.7, 0.9],   # known 10, but farther than the threshold: "new" comes first, rank 2
                          [0.6, 0.7, 0.9],   # new whale, nothing under the threshold: "new" at rank 1
                          [0.1, 0.2, 0.9],   # new whale, two whales under the threshold: "new" at rank 3
                          [0.2, 0.1, 0.3]])  # known 12, third and under the threshold: rank 3
    labels = np.array([10, 10, reid.NEW, reid.NEW, 12])
    expected = np.mean([1, 1 / 2, 1, 1 / 3, 1 / 3])
    assert reid.open_set_map5(ids, distances, labels, threshold=0.4) == pytest.approx(expected)
    # a whale missing from the catalogue that is not labelled new is never right
    assert reid.open_set_map5(ids, distances[:1], np.array([99]), threshold=0.4) == 0.0


def test_open_set_halves_and_threshold() -> None:
    meta = pd.concat([_meta().assign(whale_id=lambda m, i=i: m.whale_id + f"-{i}",
                                     encounter_id=lambda m, i=i: m.encounter_id + f"-{i}") for i in range(4)],
                     ignore_index=True)
    meta["label"] = np.unique(meta.whale_id, return_inverse=True)[1]
    halves = reid.open_set_halves(meta, seed=1, new_fraction=0.5)
    whales = {h: set(meta.whale_id[np.concatenate([p.catalogue, p.known_queries, p.new_queries])]) for h, p in halves.items()}
    assert not whales["validation"] & whales["test"]
    emb, labels = np.eye(32, dtype=np.float32)[meta.label.to_numpy()], meta.label.to_numpy()
    for part in halves.values():
        catalogued = set(labels[part.catalogue])
        assert set(labels[part.known_queries]) <= catalogued
        assert not set(labels[part.new_queries]) & catalogued
        assert len(part.new_queries) > 0 and len(part.known_queries) > 0
        scored = reid.new_scores(emb, labels, part, average=False)
        threshold = reid.choose_threshold(scored)
        assert reid.open_set_map5(scored["ids"], scored["distances"], scored["labels"], threshold) == pytest.approx(1.0)
        assert reid.new_decision_quality(scored, threshold) == {"new precision": 1.0, "new recall": 1.0}


def test_limit_photos() -> None:
    labels = np.array([0, 0, 0, 1, 1, 2])
    kept = reid.limit_photos(labels, np.arange(6), 2, seed=0)
    assert np.bincount(labels[kept]).tolist() == [2, 2, 1]
    assert reid.limit_photos(labels, np.arange(6), None, seed=0).tolist() == list(range(6))


def test_run_metrics_perfect_and_tiny() -> None:
    meta = pd.concat([_meta().assign(whale_id=lambda m, i=i: m.whale_id + f"-{i}",
                                     encounter_id=lambda m, i=i: m.encounter_id + f"-{i}") for i in range(4)],
                     ignore_index=True)
    meta["label"] = np.unique(meta.whale_id, return_inverse=True)[1]
    m = reid.run_metrics(np.eye(32, dtype=np.float32)[meta.label], meta.label.to_numpy(), meta, catalogue_photos=(1, None))
    assert m["mAP@20 top, later encounter"] == pytest.approx(1.0)
    assert m["mAP@5 1 photo(s), averaged"] == pytest.approx(1.0) and m["new AUC"] == pytest.approx(1.0)
    # "new" first for everyone: new whales score 1, known ones 1/2 (their whale comes second)
    halves = reid.open_set_halves(meta, 0, 0.5)
    share_new = len(halves["test"].new_queries) / (len(halves["test"].new_queries) + len(halves["test"].known_queries))
    assert m["open-set mAP@5, 'new' first"] == pytest.approx(share_new + (1 - share_new) / 2)
    # a held-out set too small for a "new" decision gives NaN, not an error
    small = _meta()[lambda m: m.whale_id.isin(["w0", "w1"])].reset_index(drop=True)
    tiny = reid.run_metrics(np.eye(8, dtype=np.float32)[small.label], small.label.to_numpy(), small)
    assert np.isnan(tiny["new AUC"]) and tiny["mAP@20 top, later encounter"] == pytest.approx(1.0)
