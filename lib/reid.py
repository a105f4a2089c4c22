"""Re-identification as the whale competitions scored it.

Two competitions frame the protocol. *Where's Whale-do?* (belugas, 2022) ranked database
images for each query photo and scored mAP@20 over images. The Kaggle *Humpback Whale
Identification* (2019) ranked individuals, allowed a "new whale" answer, and scored mAP@5
over identities. Neither competition's hidden test set is available, so the scenarios are
built from the held-out whales of our whale-disjoint split:

* `top, later encounter`: each whale's latest top-view encounter is the query set, every
  other top-view encounter of the held-out whales the catalogue. No photo of the query's own
  encounter (taken seconds apart) is in the catalogue, so a match is a real re-sighting.
* `top, same encounter allowed`: one photo per encounter is a query, every other top view
  the catalogue, near-duplicates from the same encounter included (what a random split of
  photos, such as the blog's, measures).
* `side, same side`: the same for lateral views, left against left and right against right.
  Few whales were photographed from the side at two encounters, so these are mostly
  same-encounter matches.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lib.evaluate import map_at_k, map_at_k_per_identity, squared_distances

NEW = -1  # label of a query whose individual is not in the catalogue


@dataclass
class Scenario:
    name: str
    query: np.ndarray  # row indices into the held-out split
    catalogue: np.ndarray


def _later_encounter(meta: pd.DataFrame, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Queries: each whale's latest encounter among `rows`, for whales seen at two or more."""
    part = meta.iloc[rows]
    last = part.sort_values(["date", "encounter_id"]).groupby("whale_id")["encounter_id"].last()
    encounters = part.groupby("whale_id")["encounter_id"].nunique()
    query_encounters = set(last[encounters[encounters >= 2].index])
    is_query = part["encounter_id"].isin(query_encounters).to_numpy()
    return rows[is_query], rows[~is_query]


def _one_per_encounter(meta: pd.DataFrame, rows: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Queries: one random photo of every encounter that has at least two photos among `rows`."""
    part = meta.iloc[rows].assign(row=rows)
    sizes = part.groupby("encounter_id")["row"].transform("size")
    chosen = part[sizes >= 2].sample(frac=1.0, random_state=seed).groupby("encounter_id")["row"].first()
    is_query = np.isin(rows, chosen.to_numpy())
    return rows[is_query], rows[~is_query]


def scenarios(meta: pd.DataFrame, seed: int = 0) -> dict[str, Scenario]:
    """The three query/catalogue scenarios of the module docstring, over the rows of `meta`
    (a held-out split's table: whale_id, viewpoint, encounter_id, date)."""
    view = meta["viewpoint"].to_numpy()
    top = np.flatnonzero(view == "top")
    out = {"top, later encounter": Scenario("top, later encounter", *_later_encounter(meta, top)),
           "top, same encounter allowed": Scenario("top, same encounter allowed", *_one_per_encounter(meta, top, seed))}
    side_q, side_c = [], []
    for side in ("left", "right"):
        q, c = _one_per_encounter(meta, np.flatnonzero(view == side), seed)
        side_q.append(q)
        side_c.append(c)
    # left and right are searched separately, then pooled: a left view is never matched to a right one
    out["side, same side"] = Scenario("side, same side", np.concatenate(side_q), np.concatenate(side_c))
    return out


def scenario_map(emb: np.ndarray, labels: np.ndarray, meta: pd.DataFrame, scenario: Scenario, k: int) -> float:
    """Image-level mAP@k over the scenario's queries that have a match in the catalogue."""
    view = meta["viewpoint"].to_numpy()
    scores, counts = [], []
    for v in np.unique(view[scenario.query]):
        q = scenario.query[view[scenario.query] == v]
        c = scenario.catalogue[view[scenario.catalogue] == v]
        q = q[np.isin(labels[q], labels[c])]
        if len(q) and len(c):
            scores.append(map_at_k(emb[q], labels[q], emb[c], labels[c], k))
            counts.append(len(q))
    return float(np.average(scores, weights=counts)) if counts else float("nan")


# ------------------------------------------------------------------ ranking individuals


def limit_photos(labels: np.ndarray, rows: np.ndarray, photos: int | None, seed: int) -> np.ndarray:
    """At most `photos` random catalogue rows per individual (None: all)."""
    if photos is None:
        return rows
    order = np.random.default_rng(seed).permutation(rows)
    keep = pd.Series(labels[order]).groupby(labels[order]).cumcount().to_numpy() < photos
    return np.sort(order[keep])


def identities(emb: np.ndarray, labels: np.ndarray, average: bool) -> tuple[np.ndarray, np.ndarray]:
    """The catalogue as (embeddings, labels): every photo, or one L2-normalised mean per
    individual (the humpback teams' trick)."""
    if not average:
        return emb, labels
    ids, inverse = np.unique(labels, return_inverse=True)
    sums = np.zeros((len(ids), emb.shape[1]))
    np.add.at(sums, inverse.reshape(-1), emb)
    means = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return means.astype(np.float32), ids


def identity_distances(query: np.ndarray, catalogue: np.ndarray, catalogue_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(individuals, distances (n_query, n_individuals)): each individual's closest catalogue photo."""
    ids, inverse = np.unique(catalogue_labels, return_inverse=True)
    order = np.argsort(inverse.reshape(-1), kind="stable")
    starts = np.searchsorted(inverse.reshape(-1)[order], np.arange(len(ids)))
    sq = squared_distances(query, catalogue)
    return ids, np.sqrt(np.maximum(np.minimum.reduceat(sq[:, order], starts, axis=1), 0.0))


def closed_map5(query, query_labels, catalogue, catalogue_labels, average: bool = False, k: int = 5) -> float:
    """Humpback mAP@k over identities, every query's individual in the catalogue."""
    cat, cat_labels = identities(catalogue, catalogue_labels, average)
    return map_at_k_per_identity(query, query_labels, cat, cat_labels, k)


def open_set_map5(ids: np.ndarray, distances: np.ndarray, query_labels: np.ndarray, threshold: float, k: int = 5) -> float:
    """Humpback mAP@k with a "new individual" answer: individuals ranked by distance, "new"
    inserted before the first one farther than `threshold`; unknown queries (label NEW) are right
    when "new" is, and a query scores 1/rank of its right answer if that rank is at most k."""
    closest = np.sort(distances, axis=1)
    new_rank = 1 + np.count_nonzero(closest <= threshold, axis=1)
    pos = np.searchsorted(ids, query_labels)
    known = (query_labels != NEW) & (pos < len(ids)) & (ids[np.minimum(pos, len(ids) - 1)] == query_labels)
    true_dist = np.where(known, distances[np.arange(len(pos)), np.minimum(pos, len(ids) - 1)], np.inf)
    rank = 1 + np.count_nonzero(distances < true_dist[:, None], axis=1)
    rank = np.where(known, rank + (new_rank <= rank), new_rank)  # "new" ahead pushes the true one down
    right = known | (query_labels == NEW)
    return float(np.where(right & (rank <= k), 1.0 / rank, 0.0).mean())


# ------------------------------------------------------------------ "new individual" decisions


@dataclass
class OpenSet:
    """One half of the held-out whales: a catalogue, queries of catalogued whales from a later
    encounter, and queries of whales the catalogue lacks."""

    catalogue: np.ndarray
    known_queries: np.ndarray
    new_queries: np.ndarray


def open_set_halves(meta: pd.DataFrame, seed: int = 0, new_fraction: float = 0.5) -> dict[str, OpenSet]:
    """Split the held-out whales in two whale-disjoint halves, `validation` (where the "new"
    threshold is chosen) and `test` (where it is judged). Top views only. In each half the
    catalogue is every encounter but a whale's latest; the latest encounters of whales seen
    twice are the known queries; `new_fraction` of the whales seen once are left out of the
    catalogue and become the new-individual queries."""
    rng = np.random.default_rng(seed)
    top = meta[meta["viewpoint"] == "top"]
    whales = rng.permutation(top["whale_id"].unique())
    halves = {"validation": set(whales[: len(whales) // 2]), "test": set(whales[len(whales) // 2:])}
    out = {}
    for name, members in halves.items():
        rows = np.flatnonzero((meta["viewpoint"] == "top") & meta["whale_id"].isin(members))
        known_q, catalogue = _later_encounter(meta, rows)
        encounters = meta.iloc[rows].groupby("whale_id")["encounter_id"].nunique()
        once = rng.permutation(encounters[encounters == 1].index.to_numpy().copy())  # pandas hands out read-only arrays
        new_whales = set(once[: int(round(new_fraction * len(once)))])
        is_new = meta.iloc[catalogue]["whale_id"].isin(new_whales).to_numpy()
        out[name] = OpenSet(catalogue[~is_new], known_q, catalogue[is_new])
    return out


def new_scores(emb: np.ndarray, labels: np.ndarray, part: OpenSet, average: bool) -> dict:
    """For every query of `part`: distance to the closest catalogued individual (the "new" score)
    and the ranking inputs of open_set_map5."""
    queries = np.concatenate([part.known_queries, part.new_queries])
    cat, cat_labels = identities(emb[part.catalogue], labels[part.catalogue], average)
    ids, dist = identity_distances(emb[queries], cat, cat_labels)
    query_labels = np.concatenate([labels[part.known_queries], np.full(len(part.new_queries), NEW)])
    return {"ids": ids, "distances": dist, "labels": query_labels, "score": dist.min(axis=1),
            "is_new": query_labels == NEW}


def choose_threshold(scored: dict, k: int = 5) -> float:
    """The distance threshold that maximises open-set mAP@k (how the humpback teams tuned it)."""
    candidates = np.unique(np.quantile(scored["score"], np.linspace(0, 1, 101)))
    values = [open_set_map5(scored["ids"], scored["distances"], scored["labels"], t, k) for t in candidates]
    return float(candidates[int(np.argmax(values))])


def new_decision_quality(scored: dict, threshold: float) -> dict:
    """Precision and recall of answering "new" when the closest individual is farther than `threshold`."""
    said_new, is_new = scored["score"] > threshold, scored["is_new"]
    hits = np.count_nonzero(said_new & is_new)
    return {"new precision": hits / said_new.sum() if said_new.any() else float("nan"),
            "new recall": hits / is_new.sum() if is_new.any() else float("nan")}


# ------------------------------------------------------------------ everything, for one trained run


def run_metrics(emb: np.ndarray, labels: np.ndarray, meta: pd.DataFrame, *, competition_k: int = 20,
                humpback_k: int = 5, catalogue_photos=(1, 2, None), new_fraction: float = 0.5, seed: int = 0) -> dict:
    """Every number chapter 5 reports for one run's held-out embeddings (NaN where the held-out
    split is too small for a scenario, as in the smoke profile)."""
    from sklearn.metrics import roc_auc_score

    out = {}
    for name, scenario in scenarios(meta, seed).items():
        out[f"mAP@{competition_k} {name}"] = scenario_map(emb, labels, meta, scenario, competition_k)
    later = scenarios(meta, seed)["top, later encounter"]
    query = later.query[np.isin(labels[later.query], labels[later.catalogue])]
    for photos in catalogue_photos:
        catalogue = limit_photos(labels, later.catalogue, photos, seed)
        for average in (False, True):
            key = f"mAP@{humpback_k} {photos or 'all'} photo(s), {'averaged' if average else 'per image'}"
            out[key] = (closed_map5(emb[query], labels[query], emb[catalogue], labels[catalogue], average, humpback_k)
                        if len(query) else float("nan"))
    halves = open_set_halves(meta, seed, new_fraction)
    validation, test = (new_scores(emb, labels, halves[h], average=False) for h in ("validation", "test"))
    if validation["is_new"].any() and (~validation["is_new"]).any() and test["is_new"].any() and (~test["is_new"]).any():
        threshold = choose_threshold(validation, humpback_k)
        out["open-set threshold"] = threshold
        out[f"open-set mAP@{humpback_k}"] = open_set_map5(test["ids"], test["distances"], test["labels"], threshold, humpback_k)
        # The humpback leaderboard's trivial baseline: "new" first for every query, the model's ranking after it.
        out[f"open-set mAP@{humpback_k}, 'new' first"] = open_set_map5(test["ids"], test["distances"], test["labels"],
                                                                        -np.inf, humpback_k)
        out["new AUC"] = float(roc_auc_score(test["is_new"], test["score"]))
        out.update(new_decision_quality(test, threshold))
    else:
        out.update({"open-set threshold": float("nan"), f"open-set mAP@{humpback_k}": float("nan"),
                    f"open-set mAP@{humpback_k}, 'new' first": float("nan"),
                    "new AUC": float("nan"), "new precision": float("nan"), "new recall": float("nan")})
    return out
