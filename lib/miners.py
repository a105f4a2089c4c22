"""Miners the study needs that pytorch-metric-learning does not have as the papers had them.

`WuDistanceWeightedMiner` is pml's `DistanceWeightedMiner` with one difference that the
paper's code has and pml does not: an anchor whose negatives all get weight zero (every
negative closer than the cutoff or beyond the non-zero-loss cutoff) keeps a negative drawn
uniformly, where pml silently drops the anchor. It also records how often that happens
(`zero_weight_fraction`), so chapter 3 can say whether the difference matters.
"""
from __future__ import annotations

import torch
from pytorch_metric_learning.miners import DistanceWeightedMiner
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu


class WuDistanceWeightedMiner(DistanceWeightedMiner):
    """fallback: "uniform" (Wu et al.'s code) or "drop" (pml's behaviour, for comparison)."""

    def __init__(self, cutoff: float = 0.5, nonzero_loss_cutoff: float = 1.4, fallback: str = "uniform", **kwargs):
        super().__init__(cutoff=cutoff, nonzero_loss_cutoff=nonzero_loss_cutoff, **kwargs)
        if fallback not in ("uniform", "drop"):
            raise ValueError(f"fallback must be 'uniform' or 'drop', got {fallback!r}")
        self.fallback = fallback
        self.zero_weight_fraction = 0.0
        self.add_to_recordable_attributes(name="zero_weight_fraction", is_stat=True)

    def mine(self, embeddings, labels, ref_emb, ref_labels):
        d = float(embeddings.size(1))
        mat = self.distance(embeddings, ref_emb).clamp(min=self.cutoff)
        # log of 1/q(d), q the density of distances between uniform points on the sphere (Wu et al., Sec. 4)
        log_weights = (2.0 - d) * torch.log(mat) - ((d - 3) / 2) * torch.log(1.0 - 0.25 * mat**2)
        bad = torch.isinf(log_weights) | torch.isnan(log_weights)
        negative = labels.unsqueeze(1) != ref_labels.unsqueeze(0)
        usable = negative & ~bad
        shift = log_weights[usable].max() if usable.any() else log_weights.new_tensor(0.0)
        weights = torch.exp(log_weights - shift) * (negative & (mat < self.nonzero_loss_cutoff) & ~bad)
        empty = weights.sum(dim=1) == 0
        anchors_with_negatives = negative.any(dim=1)
        self.zero_weight_fraction = float((empty & anchors_with_negatives).sum() / anchors_with_negatives.sum().clamp(min=1))
        if self.fallback == "uniform":
            weights[empty] = negative[empty].to(weights.dtype)
        weights = weights / weights.sum(dim=1, keepdim=True).clamp(min=torch.finfo(weights.dtype).tiny)
        return lmu.get_random_triplet_indices(labels, ref_labels=ref_labels, weights=weights)


STUDY_MINERS = {"WuDistanceWeightedMiner": WuDistanceWeightedMiner}
