"""Divide and Conquer the Embedding Space (Sanakoyeu, Tschernezki, Büchler, Ommer, CVPR 2019).

The training data is split into K clusters with k-means; the embedding's last layer is
split into K contiguous slices of d/K dimensions (`lib.models.SlicedHead`); learner k sees
batches drawn from cluster k only and its loss sees only slice k, each slice L2-normalised
on its own. Every M epochs the data are re-clustered and the new clusters are matched to
the learners with the Hungarian algorithm, so each learner keeps most of its data. The
last `finetune_epochs` train the whole embedding as a single learner, and so do the first
`warmup_epochs` (none in the paper, whose first clustering sees the pretrained network). The trainer
(`lib.trainer.Trainer`) calls these functions; evaluation always uses the full embedding.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
from scipy.optimize import linear_sum_assignment

from lib.config import ConfigError, RunConfig
from lib.evaluate import kmeans

DROPPED = -1  # assignment of an image whose class has a single image in its cluster


def check(cfg: RunConfig) -> None:
    """The configurations D&C cannot run, with how to fix them."""
    k = cfg.divide.clusters
    if k < 1:
        raise ConfigError(f"divide.clusters must be at least 1, got {k}")
    if k == 1:
        return
    d = cfg.model.embedding_dim
    if not d or d % k:
        raise ConfigError(f"divide.clusters ({k}) must divide model.embedding_dim ({d}): each learner owns d/K dimensions")
    if cfg.model.projector:
        raise ConfigError("divide.clusters > 1 splits the embedding layer; it cannot be combined with model.projector")
    if cfg.divide.features not in ("embedding", "backbone"):
        raise ConfigError(f"divide.features must be 'embedding' or 'backbone', got {cfg.divide.features!r}")
    if cfg.divide.recluster_every < 1:
        raise ConfigError(f"divide.recluster_every must be at least 1, got {cfg.divide.recluster_every}")
    if not 0 <= cfg.divide.finetune_epochs <= cfg.train.epochs:
        raise ConfigError(f"divide.finetune_epochs must be in [0, train.epochs={cfg.train.epochs}]")
    whole = cfg.divide.warmup_epochs + cfg.divide.finetune_epochs
    if whole > cfg.train.epochs:
        raise ConfigError(f"divide.warmup_epochs + divide.finetune_epochs ({whole}) exceed train.epochs "
                          f"({cfg.train.epochs}): no epoch would be left to divide")


def divides_at(cfg: RunConfig, epoch: int) -> bool:
    """Whether epoch `epoch` trains K learners: after the warm-up, before the fine-tuning; the
    other epochs train the whole embedding."""
    d = cfg.divide
    return d.clusters > 1 and d.warmup_epochs <= epoch < cfg.train.epochs - d.finetune_epochs


def divided_epochs(cfg: RunConfig) -> int:
    """Epochs trained with K learners."""
    return sum(divides_at(cfg, epoch) for epoch in range(cfg.train.epochs))


def reclusters_at(cfg: RunConfig, epoch: int) -> bool:
    return divides_at(cfg, epoch) and (epoch - cfg.divide.warmup_epochs) % cfg.divide.recluster_every == 0


def cluster(features: np.ndarray, k: int, *, restarts: int, iterations: int, seed: int) -> np.ndarray:
    """k-means cluster of every image (all points used, best of `restarts`)."""
    assignment, _ = kmeans(features, k, restarts=restarts, iterations=iterations, seed=seed)
    return assignment


def contingency(previous: np.ndarray, new: np.ndarray, k: int) -> np.ndarray:
    """counts[i, j]: images in previous cluster i and new cluster j (dropped images left out)."""
    keep = (previous >= 0) & (new >= 0)
    return np.bincount(previous[keep] * k + new[keep], minlength=k * k).reshape(k, k)


def match_to_learners(previous: np.ndarray | None, new: np.ndarray, k: int) -> np.ndarray:
    """Relabel `new` clusters so that learner i gets the new cluster sharing most images with
    its previous cluster (Hungarian algorithm on the contingency table)."""
    if previous is None:
        return new
    counts = contingency(previous, new, k)
    learners, clusters = linear_sum_assignment(counts, maximize=True)
    relabel = np.empty(k, dtype=np.int64)
    relabel[clusters] = learners
    out = new.copy()
    out[new >= 0] = relabel[new[new >= 0]]
    return out


def drop_singletons(assignment: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Images whose class has a single image inside their cluster cannot form a positive pair there."""
    out = assignment.copy()
    pairs = np.stack([assignment, labels], axis=1)
    _, inverse, counts = np.unique(pairs, axis=0, return_inverse=True, return_counts=True)
    out[counts[inverse.ravel()] < 2] = DROPPED
    return out


def kept_fraction(previous: np.ndarray, new: np.ndarray) -> float:
    """Share of images that stay with the same learner across a re-clustering."""
    both = (previous >= 0) & (new >= 0)
    return float((previous[both] == new[both]).mean()) if both.any() else math.nan


def learner_batches(cfg: RunConfig, labels: np.ndarray, assignment: np.ndarray, steps: int,
                    make_batches: Callable[[RunConfig, np.ndarray, int], list[np.ndarray]]) -> list[tuple[int, np.ndarray]]:
    """One epoch of (learner, batch indices): each step's learner is drawn in proportion to
    its cluster's size, and its batch is drawn from that cluster by the run's sampler
    (`make_batches`, lib.batching's). Uses numpy's global RNG, which the trainer seeds per
    epoch, so a resumed run is identical."""
    k = cfg.divide.clusters
    sizes = np.bincount(assignment[assignment >= 0], minlength=k).astype(float)
    if sizes.sum() == 0:
        raise RuntimeError("every cluster is empty after dropping single-image classes; use fewer clusters")
    learners = np.random.choice(k, size=steps, p=sizes / sizes.sum())
    batches: list[tuple[int, np.ndarray]] = [None] * steps  # type: ignore[list-item]
    for learner in range(k):
        slots = np.flatnonzero(learners == learner)
        if not len(slots):
            continue
        members = np.flatnonzero(assignment == learner)
        for slot, batch in zip(slots, make_batches(cfg, labels[members], len(slots))):
            batches[slot] = (learner, members[batch])
    return batches
