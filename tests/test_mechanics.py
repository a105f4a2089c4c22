"""lib.mechanics, the losses, miners and Wu's sampler written out in plain torch, against
pytorch-metric-learning's classes (and lib.miners' Wu miner): on chapter 0b's worked example and on
random batches. Where pml and Wu et al.'s code part (anchors without weight, positives drawn with
replacement), the tests pin down the difference."""
import math

import pytest
import torch
from pytorch_metric_learning import losses, miners
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from lib import mechanics as M
from lib.config.chapters import MechanicsChapter
from lib.miners import WuDistanceWeightedMiner

MARGIN, BETA = 0.2, 1.2
SEEDS = [0, 1, 2, 3, 4]
BANDS = ["hard", "semihard", "easy"]


def batch(seed: int, dim: int = 8, dtype=torch.float64):
    """Six classes of four points around random centres, and a one-point class (never an anchor)."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.cat([torch.arange(6).repeat_interleave(4), torch.tensor([6])])
    centres = torch.randn(7, dim, generator=gen, dtype=dtype)
    return centres[y] + 0.8 * torch.randn(len(y), dim, generator=gen, dtype=dtype), y


def as_set(indices) -> set:
    return set(zip(*[t.tolist() for t in indices]))


def pml_weights(monkeypatch, miner, x, y) -> torch.Tensor:
    """The weights a distance-weighted miner hands to lmu.get_random_triplet_indices."""
    seen = []
    original = lmu.get_random_triplet_indices

    def spy(labels, ref_labels=None, t_per_anchor=None, weights=None):
        seen.append(weights.clone())
        return original(labels, ref_labels=ref_labels, t_per_anchor=t_per_anchor, weights=weights)

    monkeypatch.setattr(lmu, "get_random_triplet_indices", spy)
    miner(x, y)
    monkeypatch.setattr(lmu, "get_random_triplet_indices", original)
    return seen[0].nan_to_num(0.0)


@pytest.fixture
def chapter():
    """The chapter's module, imported when a test asks for it (lib.chapters imports every chapter)."""
    from lib.chapters import mechanics
    return mechanics


CASES = [pytest.param(*M.example(), id="worked example")] + \
        [pytest.param(*batch(s), id=f"seed {s}") for s in SEEDS] + \
        [pytest.param(*batch(s, dim=32, dtype=torch.float32), id=f"seed {s}, float32, 32-d") for s in SEEDS[:2]]


# ----------------------------------------------------------------------------- the worked example
def test_worked_example_by_hand():
    x, y = M.example()
    d = M.distances(x)
    a1, a2, b2 = (M.EXAMPLE_NAMES.index(n) for n in ("A1", "A2", "B2"))
    assert float(d[a1, a2]) == pytest.approx(2 * math.sin(math.radians(45 / 2)))  # the chord 2 sin(Δθ/2)
    assert float(d[a1, b2]) == pytest.approx(2 * math.sin(math.radians(10)))
    a, p, n = M.all_triplets(y)
    assert len(a) == 3 * 2 * 3 + 2 * 1 * 4 == 26  # C1 (one point) is never an anchor
    loss, _ = M.triplet_loss(d, a, p, n, MARGIN)
    row = ((a == a1) & (p == a2) & (n == b2)).nonzero().item()
    assert float(loss[row]) == pytest.approx(0.765367 - 0.347296 + MARGIN, abs=1e-6)
    bands = M.negative_bands(d, a, p, n, MARGIN)
    assert bool(bands["hard"][row]) and {b: int(m.sum()) for b, m in bands.items()} == \
        {"hard": 12, "semihard": 7, "easy": 7}


def test_worked_example_table(chapter):
    table = chapter.triplet_table()
    assert len(table) == 26 and (table["band (by hand)"] == table["band (pml)"]).all()
    row = table[(table.anchor == "A1") & (table.positive == "A2") & (table.negative == "B2")].iloc[0]
    assert row["band (pml)"] == "hard" and row["triplet loss"] == pytest.approx(0.618071, abs=1e-6)


def test_worked_example_one_per_anchor_and_drops(chapter):
    table = chapter.one_per_anchor_table()
    for kind in ("batch-hard", "easy-positive, semi-hard negative"):
        assert (table[(kind, "by hand")] == table[(kind, "pml")]).all()
    assert table.loc["A1", ("batch-hard", "by hand")] == "A3, B2"  # farthest positive, nearest negative
    assert table.loc["A1", ("easy-positive, semi-hard negative", "by hand")] == "A2, C1"
    assert table.loc["B2", ("easy-positive, semi-hard negative", "by hand")] == "(none)"  # no negative beyond B1
    assert table.loc["C1"].eq("(none)").all()


def test_chapter_checks_agree_and_name_the_dropped_anchor(chapter):
    class Stub:
        settings = MechanicsChapter(random_batches=2)

    checks = chapter.random_checks(Stub())
    assert list(checks.columns) == ["worked example", "random batch, seed 0", "random batch, seed 1", "worst"]
    assert chapter.agrees(checks)
    text = chapter.conclusion(checks, chapter.wu_table())
    assert "anchor B1" in text and "disagree" not in text


def test_figures_are_saved_through_the_chapter(chapter):
    saved = []

    class Stub:
        def save(self, fig, name, caption=""):
            saved.append((name, caption))

    chapter.bands_figure(Stub())
    chapter.wu_figure(Stub())
    assert [name for name, _ in saved] == ["bands", "wu-weights"] and all(caption for _, caption in saved)


# ----------------------------------------------------------------------------- each piece against pml
@pytest.mark.parametrize("band", BANDS)
@pytest.mark.parametrize("x, y", CASES)
def test_bands_are_triplet_margin_miner(x, y, band):
    d = M.distances(x)
    a, p, n = M.all_triplets(y)
    assert as_set((a, p, n)) == as_set(lmu.get_all_triplets_indices(y))
    mask = M.negative_bands(d, a, p, n, MARGIN)
    assert sum(m.long() for m in mask.values()).eq(1).all()  # every triplet in exactly one band
    pml = miners.TripletMarginMiner(margin=MARGIN, type_of_triplets=band)(x, y)
    assert as_set((a[mask[band]], p[mask[band]], n[mask[band]])) == as_set(pml)


@pytest.mark.parametrize("x, y", CASES)
def test_one_triplet_per_anchor_miners(x, y):
    d = M.distances(x)
    assert as_set(M.batch_hard(d, y)) == as_set(miners.BatchHardMiner()(x, y))
    a1, p, a2, n = miners.BatchEasyHardMiner()(x, y)  # pos_strategy=easy, neg_strategy=semihard
    assert torch.equal(a1, a2)
    assert as_set(M.easy_positive_semihard_negative(d, y)) == as_set((a1, p, n))


@pytest.mark.parametrize("x, y", CASES)
def test_losses_after_every_miner(x, y):
    d = M.distances(x)
    a, p, n = M.all_triplets(y)
    bands = M.negative_bands(d, a, p, n, MARGIN)
    chosen = [(a, p, n), M.batch_hard(d, y), M.easy_positive_semihard_negative(d, y)]
    chosen += [(a[bands[b]], p[bands[b]], n[bands[b]]) for b in BANDS]
    tol = 1e-5 if x.dtype == torch.float32 else 1e-12
    for t in chosen:
        _, hand = M.triplet_loss(d, *t, MARGIN)
        assert float(hand) == pytest.approx(float(losses.TripletMarginLoss(margin=MARGIN)(x, y, t)), abs=tol)
        # beta 1.25 is exact in float32, where pml keeps beta: 1.2 would be 1.2000000477
        _, hand = M.margin_loss(d, *t, MARGIN, 1.25)
        assert float(hand) == pytest.approx(float(losses.MarginLoss(margin=MARGIN, beta=1.25)(x, y, t)), abs=tol)
        _, hand = M.margin_loss(d, *t, MARGIN, BETA)
        assert float(hand) == pytest.approx(float(losses.MarginLoss(margin=MARGIN, beta=BETA)(x, y, t)), abs=1e-6)
    # without a miner, both losses take every triplet
    assert float(M.triplet_loss(d, a, p, n, MARGIN)[1]) == pytest.approx(
        float(losses.TripletMarginLoss(margin=MARGIN)(x, y)), abs=tol)


@pytest.mark.parametrize("x, y", CASES)
def test_wu_weights(monkeypatch, x, y):
    d = M.distances(x)
    pml = pml_weights(monkeypatch, miners.DistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=1.4), x, y)
    ours = pml_weights(monkeypatch, WuDistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=1.4), x, y)
    tol = 1e-5 if x.dtype == torch.float32 else 1e-12
    torch.testing.assert_close(M.wu_weights(d, y, x.shape[1]), pml, atol=tol, rtol=0)
    torch.testing.assert_close(M.wu_weights(d, y, x.shape[1], fallback="uniform"), ours, atol=tol, rtol=0)
    assert (M.wu_weights(d, y, x.shape[1])[y[:, None] == y[None, :]] == 0).all()  # negatives only


def test_wu_weights_in_two_dimensions_are_the_chord_formula():
    """In 2-D, q(D)^-1 ∝ sqrt(1 - D^2/4): A1's two negatives under 1.4 weigh in that ratio."""
    x, y = M.example()
    d = M.distances(x)
    w = M.wu_weights(d, y, 2)
    a1, b2, c1 = (M.EXAMPLE_NAMES.index(n) for n in ("A1", "B2", "C1"))
    q_inv = [math.sqrt(1 - max(float(d[a1, j]), 0.5) ** 2 / 4) for j in (b2, c1)]
    assert float(w[a1, b2]) == pytest.approx(q_inv[0] / sum(q_inv))
    assert float(w[a1, c1]) == pytest.approx(q_inv[1] / sum(q_inv))


# ----------------------------------------------------------------------------- where pml parts from Wu's code
def test_pml_drops_an_anchor_without_weight_and_lib_miners_keeps_it():
    x, y = M.example()
    b1 = M.EXAMPLE_NAMES.index("B1")  # every negative of B1 is 1.4 or more away
    assert (M.distances(x)[b1][y != y[b1]] >= 1.4).all()
    torch.manual_seed(0)
    for _ in range(20):
        a, _, _ = miners.DistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=1.4)(x, y)
        assert b1 not in a.tolist()
        a, _, n = WuDistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=1.4)(x, y)
        assert b1 in a.tolist() and (y[n[a == b1]] != y[b1]).all()


def test_pml_draws_positives_with_replacement_wu_takes_each_once():
    x, y = M.example()
    d = M.distances(x)
    w = M.wu_weights(d, y, 2)
    a, p, _ = M.distance_weighted_triplets(d, y, w, torch.Generator().manual_seed(0))
    a1 = M.EXAMPLE_NAMES.index("A1")
    assert sorted(p[a == a1].tolist()) == [1, 2]  # A2 and A3, once each
    torch.manual_seed(0)
    counts = set()
    for _ in range(30):
        a, p, _ = miners.DistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=1.4)(x, y)
        assert (a == a1).sum() == 3  # as many draws as class A has members
        counts.add(tuple(sorted(p[a == a1].tolist())))
    assert any(len(set(c)) < len(c) for c in counts)  # some draw repeats a positive


def test_sampled_negatives_follow_the_weights():
    """pml's draws and the hand sampler's land on each negative as often as its weight says."""
    x, y = M.example()
    d = M.distances(x)
    w = M.wu_weights(d, y, 2)
    torch.manual_seed(0)
    draws = [miners.DistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=1.4)(x, y) for _ in range(1500)]
    gen = torch.Generator().manual_seed(0)
    draws_by_hand = [M.distance_weighted_triplets(d, y, w, gen) for _ in range(1500)]
    for sampled in (draws, draws_by_hand):
        a, n = torch.cat([t[0] for t in sampled]), torch.cat([t[2] for t in sampled])
        assert (w[a, n] > 0).all()
        for anchor in torch.unique(a).tolist():
            freq = torch.bincount(n[a == anchor], minlength=len(y)).double() / (a == anchor).sum()
            torch.testing.assert_close(freq, w[anchor], atol=0.03, rtol=0)
