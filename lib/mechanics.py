"""The losses, miners and sampler the study trains with, written out in plain torch.

Chapters 1-3 call pytorch-metric-learning (pml) classes by name from the profiles; this module
spells each one out in a few lines beside its formula, so that a reader sees the mechanism, and
tests/test_mechanics.py checks every piece against pml (and against lib.miners' Wu miner) on a
worked example and on random batches. Nothing here trains: the chapters keep using pml.

Conventions: `x` is an (N, dim) batch of embeddings, `labels` its (N,) classes, and `d` the (N, N)
matrix of Euclidean distances between the L2-normalised rows, D_ij = ||x_i/|x_i| - x_j/|x_j| ||
(pml's `LpDistance(p=2, normalize_embeddings=True)`, the study's distance). A triplet (a, p, n) is
an anchor, a positive of the anchor's class (p != a) and a negative of another class; a miner
returns index tensors (a, p, n), one entry per triplet.
"""
from __future__ import annotations

import torch

__all__ = ["EXAMPLE_NAMES", "EXAMPLE_ANGLES", "EXAMPLE_CLASSES", "example", "distances", "all_triplets",
           "triplet_loss", "negative_bands", "batch_hard", "easy_positive_semihard_negative", "margin_loss",
           "wu_log_inverse_density", "wu_weights", "distance_weighted_triplets"]

# The worked example of chapter 0b: six points on the unit circle (angles in degrees), three classes
# (A has three points, B two, C one). The chord between angles t and u is D = 2 sin(|t - u| / 2),
# so every distance, and so every number below, can be checked by hand.
EXAMPLE_NAMES = ("A1", "A2", "A3", "B1", "B2", "C1")
EXAMPLE_ANGLES = (350.0, 305.0, 40.0, 200.0, 330.0, 45.0)
EXAMPLE_CLASSES = (0, 0, 0, 1, 1, 2)


def example() -> tuple[torch.Tensor, torch.Tensor]:
    """The worked example's six points (float64, on the unit circle) and their classes."""
    theta = torch.deg2rad(torch.tensor(EXAMPLE_ANGLES, dtype=torch.float64))
    return torch.stack([theta.cos(), theta.sin()], dim=1), torch.tensor(EXAMPLE_CLASSES)


def distances(x: torch.Tensor) -> torch.Tensor:
    """D_ij = ||x_i/|x_i| - x_j/|x_j| ||: points on the unit sphere, so 0 <= D_ij <= 2."""
    x = torch.nn.functional.normalize(x, dim=1)
    return torch.cdist(x, x)


def all_triplets(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every (a, p, n) with y_p = y_a, p != a and y_n != y_a, in (a, p, n) order."""
    same = labels[:, None] == labels[None, :]
    positive = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return torch.where(positive[:, :, None] & ~same[:, None, :])


def triplet_loss(d, a, p, n, margin: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """l(a, p, n) = [D_ap - D_an + alpha]_+ (Schroff et al. 2015, without their squares).

    Returns every triplet's loss and the batch loss pml's TripletMarginLoss reports: the mean over
    the triplets whose loss is above zero (its AvgNonZeroReducer), 0 if there is none.
    """
    losses = (d[a, p] - d[a, n] + margin).clamp(min=0)
    return losses, losses.sum() / (losses > 0).sum().clamp(min=1)


def negative_bands(d, a, p, n, margin: float = 0.2) -> dict[str, torch.Tensor]:
    """Where each triplet's negative lies, seen from its anchor, against the anchor-positive distance:

        hard       D_an <= D_ap                    (closer than the positive: l >= alpha)
        semi-hard  D_ap <  D_an <= D_ap + alpha    (beyond the positive, inside the margin: 0 < l <= alpha)
        easy       D_an >  D_ap + alpha            (beyond the margin: l = 0, no gradient)

    pml's TripletMarginMiner(margin, type_of_triplets=hard | semihard | easy) keeps these triplets.
    """
    gap = d[a, n] - d[a, p]
    return {"hard": gap <= 0, "semihard": (gap > 0) & (gap <= margin), "easy": gap > margin}


def _masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    same = labels[:, None] == labels[None, :]
    return same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device), ~same  # positives, negatives


def batch_hard(d, labels) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One triplet per anchor (Hermans et al. 2017): p = argmax_{y_p = y_a} D_ap, n = argmin_{y_n != y_a} D_an."""
    pos, neg = _masks(labels)
    p = d.masked_fill(~pos, float("-inf")).argmax(dim=1)  # the farthest positive
    n = d.masked_fill(~neg, float("inf")).argmin(dim=1)   # the nearest negative
    a = torch.where(pos.any(dim=1) & neg.any(dim=1))[0]   # anchors that have both
    return a, p[a], n[a]


def easy_positive_semihard_negative(d, labels) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One triplet per anchor (Xuan et al., WACV 2020; pml's BatchEasyHardMiner defaults):
    p = argmin_{y_p = y_a} D_ap, the nearest positive; n = argmin {D_an : y_n != y_a, D_an > D_ap},
    the nearest negative beyond it (no margin bounds it). Anchors without such a negative are dropped."""
    pos, neg = _masks(labels)
    p = d.masked_fill(~pos, float("inf")).argmin(dim=1)    # the nearest positive
    beyond = neg & (d > d.gather(1, p[:, None]))           # negatives farther than it
    n = d.masked_fill(~beyond, float("inf")).argmin(dim=1)
    a = torch.where(pos.any(dim=1) & beyond.any(dim=1))[0]
    return a, p[a], n[a]


def margin_loss(d, a, p, n, margin: float = 0.2, beta: float = 1.2) -> tuple[torch.Tensor, torch.Tensor]:
    """Wu et al. 2017: l(i, j) = [alpha + y_ij (D_ij - beta)]_+, with y_ij = +1 if i and j share a class
    (pull them inside beta - alpha) and y_ij = -1 if not (push them beyond beta + alpha); beta is the
    boundary between "same" and "different" (learnable in the paper), alpha the margin around it.

    pml's MarginLoss applies it to both pairs of each triplet, (a, p) with y = +1 and (a, n) with
    y = -1, and divides the sum by the number of non-zero terms (its DivisorReducer).
    """
    pos = (margin + (d[a, p] - beta)).clamp(min=0)  # y = +1
    neg = (margin - (d[a, n] - beta)).clamp(min=0)  # y = -1
    return pos + neg, (pos + neg).sum() / ((pos > 0).sum() + (neg > 0).sum()).clamp(min=1)


def wu_log_inverse_density(d: torch.Tensor, dim: int) -> torch.Tensor:
    """log q(D)^-1, where q(D) ∝ D^(dim-2) (1 - D^2/4)^((dim-3)/2) is the density of the distance
    between two points drawn uniformly on the unit sphere of R^dim (Wu et al. 2017, Sec. 4)."""
    return (2.0 - dim) * torch.log(d) - ((dim - 3) / 2) * torch.log(1.0 - 0.25 * d**2)


def wu_weights(d, labels, dim: int, cutoff: float = 0.5, nonzero_loss_cutoff: float = 1.4,
               fallback: str = "drop") -> torch.Tensor:
    """Row a: the probability of drawing each negative n for anchor a,

        P(n | a) ∝ min(lambda, q(D_an)^-1)  for D_an < nonzero_loss_cutoff,  0 otherwise,

    the clip lambda written, as in Wu et al.'s code, as the distance clamped at `cutoff` (q^-1 falls
    with D there). An anchor whose every negative is beyond the cutoff has no weight: "drop" leaves
    its row 0 (pml drops the anchor), "uniform" spreads it over its negatives (lib.miners, Wu's code).
    """
    neg = labels[:, None] != labels[None, :]
    log_w = wu_log_inverse_density(d.clamp(min=cutoff), dim)
    w = log_w.masked_fill(~(neg & (d < nonzero_loss_cutoff)), float("-inf")).softmax(dim=1).nan_to_num(0.0)
    if fallback == "uniform":
        empty = w.sum(dim=1) == 0
        w[empty] = neg[empty].to(w.dtype) / neg[empty].sum(dim=1, keepdim=True).clamp(min=1)
    return w


def distance_weighted_triplets(d, labels, weights, generator=None):
    """Wu et al.'s sampler: every anchor-positive pair once, with one negative drawn from P(n | a)."""
    pos, _ = _masks(labels)
    a, p = torch.where(pos & (weights.sum(dim=1) > 0)[:, None])
    n = torch.multinomial(weights[a], 1, generator=generator).squeeze(1)
    return a, p, n
