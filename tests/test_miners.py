"""The study's distance-weighted miner against pml's: same sampling, but anchors whose
negatives all have zero weight fall back to a uniform negative (Wu et al.'s code)."""
import torch
import torch.nn.functional as F
from pytorch_metric_learning.miners import DistanceWeightedMiner

from lib.miners import WuDistanceWeightedMiner


def far_apart_batch():
    """Two classes at opposite poles: every negative is at distance ~2, beyond the 1.4 cutoff."""
    base = F.normalize(torch.tensor([[1.0, 0, 0, 0]]), dim=1)
    noise = 0.01 * torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    emb = F.normalize(torch.cat([base.repeat(4, 1), -base.repeat(4, 1)]) + noise, dim=1)
    return emb, torch.tensor([0] * 4 + [1] * 4)


def test_pml_drops_anchors_whose_negatives_all_have_zero_weight():
    emb, labels = far_apart_batch()
    a, p, n = DistanceWeightedMiner()(emb, labels)
    assert len(a) == 0
    drop = WuDistanceWeightedMiner(fallback="drop")
    assert len(drop(emb, labels)[0]) == 0
    assert drop.zero_weight_fraction == 1.0


def test_uniform_fallback_keeps_every_anchor_with_a_true_negative():
    emb, labels = far_apart_batch()
    miner = WuDistanceWeightedMiner(fallback="uniform")
    a, p, n = miner(emb, labels)
    assert len(a) == 8 * 4  # pml draws as many (random) positives per anchor as the class has images
    assert (labels[a] == labels[p]).all() and (labels[a] != labels[n]).all()
    assert miner.zero_weight_fraction == 1.0


def test_same_triplet_count_as_pml_when_weights_are_usable():
    torch.manual_seed(0)
    emb = F.normalize(torch.randn(64, 16), dim=1)
    labels = torch.arange(16).repeat_interleave(4)
    ours = WuDistanceWeightedMiner(fallback="drop")
    assert len(ours(emb, labels)[0]) == len(DistanceWeightedMiner()(emb, labels)[0]) == 64 * 4
    assert ours.zero_weight_fraction == 0.0


def test_negatives_follow_inverse_density():
    """In 16-d, random pairs concentrate near sqrt(2); weighting by 1/q(d) favours the rare close
    negatives, which uniform sampling almost never picks."""
    torch.manual_seed(0)
    emb = F.normalize(torch.randn(128, 16), dim=1)
    labels = torch.arange(32).repeat_interleave(4)
    a, _, n = WuDistanceWeightedMiner()(emb, labels)
    d = (emb[a] - emb[n]).norm(dim=1)
    all_d = torch.cdist(emb, emb)[labels[:, None] != labels[None]]
    assert (d < 1.0).float().mean() > 5 * (all_d < 1.0).float().mean()
