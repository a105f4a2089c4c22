"""Chapter 0b: the losses, miners and Wu's sampler written out (lib.mechanics), on six points.

The notebook shows each piece's plain-torch source (`source`), its numbers on a worked example of
six points on the unit circle (`example`, `triplet_table`, `one_per_anchor_table`, `loss_table`,
`wu_table`, `sampling_table`), each next to what pytorch-metric-learning's class returns, the
same comparison on random batches (`random_checks`), the easy / semi-hard / hard bands of one
anchor (`bands_figure`) and Wu's weight against distance (`wu_figure`). It trains nothing.
"""
from __future__ import annotations

import contextlib
import inspect
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from pytorch_metric_learning import losses, miners
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from lib import mechanics as M
from lib.miners import WuDistanceWeightedMiner
from lib.study import Chapter

MARGIN = 0.2   # alpha, of the triplet loss, the triplet miner and the margin loss
BETA = 1.2     # the margin loss's boundary (Wu et al.'s initial value)
CUTOFF, NONZERO_LOSS_CUTOFF = 0.5, 1.4  # Wu et al.'s (and pml's) distance-weighted sampling
BANDS = ("hard", "semihard", "easy")
BAND_COLOURS = {"hard": "C3", "semihard": "C1", "easy": "C2"}

NAMES, ANGLES, CLASSES = list(M.EXAMPLE_NAMES), list(M.EXAMPLE_ANGLES), list(M.EXAMPLE_CLASSES)
example = M.example  # six points on the unit circle, three classes: every number checkable by hand


def source(*functions) -> str:
    """The functions' code as a Markdown block, to show in the notebook what the tests check."""
    return "```python\n" + "\n\n".join(inspect.getsource(f).rstrip() for f in functions) + "\n```"


def points_table() -> pd.DataFrame:
    x, y = example()
    return pd.DataFrame({"class": ["ABC"[c] for c in y.tolist()], "angle (deg)": ANGLES,
                         "x": x[:, 0].numpy(), "y": x[:, 1].numpy()}, index=pd.Index(NAMES, name="point"))


def distance_table() -> pd.DataFrame:
    x, _ = example()
    return pd.DataFrame(M.distances(x).numpy(), index=NAMES, columns=NAMES)


def _as_set(indices) -> set[tuple[int, ...]]:
    return set(zip(*[t.tolist() for t in indices]))


def _pml_band(x, y, margin: float = MARGIN) -> dict[tuple, str]:
    """Each triplet's band according to pml: which TripletMarginMiner(type_of_triplets=...) returns it."""
    out = {}
    for band in BANDS:
        for t in _as_set(miners.TripletMarginMiner(margin=margin, type_of_triplets=band)(x, y)):
            out[t] = out.get(t, "") + band
    return out


def triplet_table(margin: float = MARGIN) -> pd.DataFrame:
    """Every triplet of the example: distances, band and loss by hand, and pml's band."""
    x, y = example()
    d = M.distances(x)
    a, p, n = M.all_triplets(y)
    bands = M.negative_bands(d, a, p, n, margin)
    loss, _ = M.triplet_loss(d, a, p, n, margin)
    pml = _pml_band(x, y, margin)
    rows = []
    for i, (ai, pi, ni) in enumerate(zip(a.tolist(), p.tolist(), n.tolist())):
        rows.append({"anchor": NAMES[ai], "positive": NAMES[pi], "negative": NAMES[ni],
                     "D_ap": float(d[ai, pi]), "D_an": float(d[ai, ni]), "D_an - D_ap": float(d[ai, ni] - d[ai, pi]),
                     "band (by hand)": next(b for b in BANDS if bands[b][i]),
                     "band (pml)": pml.get((ai, pi, ni), "none"),
                     "triplet loss": float(loss[i])})
    return pd.DataFrame(rows)


def one_per_anchor_table() -> pd.DataFrame:
    """Batch-hard and easy-positive / semi-hard-negative: each anchor's (positive, negative), by hand and by pml."""
    x, y = example()
    d = M.distances(x)
    picks = {"batch-hard": (M.batch_hard(d, y), miners.BatchHardMiner()(x, y)),
             "easy-positive, semi-hard negative": (M.easy_positive_semihard_negative(d, y),
                                                   _triplets(miners.BatchEasyHardMiner()(x, y)))}
    rows = {}
    for name, (hand, pml) in picks.items():
        for source_name, (a, p, n) in (("by hand", hand), ("pml", pml)):
            for ai, pi, ni in zip(a.tolist(), p.tolist(), n.tolist()):
                rows.setdefault(NAMES[ai], {})[(name, source_name)] = f"{NAMES[pi]}, {NAMES[ni]}"
    table = pd.DataFrame.from_dict(rows, orient="index").reindex(NAMES).fillna("(none)")
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    table.index.name = "anchor"
    return table


def _triplets(pairs):
    """pml's pair miners return (a1, p, a2, n) with a1 == a2 for these miners: as (a, p, n)."""
    a1, p, a2, n = pairs
    assert torch.equal(a1, a2)
    return a1, p, n


def loss_table(x=None, y=None, margin: float = MARGIN, beta: float = BETA) -> pd.DataFrame:
    """Batch losses by hand and by pml, for the triplet loss and the margin loss after each miner."""
    if x is None:
        x, y = example()
    d = M.distances(x)
    chosen = {"all triplets": M.all_triplets(y)}
    a, p, n = chosen["all triplets"]
    bands = M.negative_bands(d, a, p, n, margin)
    for band in ("hard", "semihard"):
        chosen[f"{band} triplets"] = (a[bands[band]], p[bands[band]], n[bands[band]])
    chosen["batch-hard"] = M.batch_hard(d, y)
    chosen["easy-positive, semi-hard negative"] = M.easy_positive_semihard_negative(d, y)
    rows = []
    for name, t in chosen.items():
        rows.append({"loss": "triplet", "triplets": name, "count": len(t[0]),
                     "by hand": float(M.triplet_loss(d, *t, margin)[1]),
                     "pml": float(losses.TripletMarginLoss(margin=margin)(x, y, t))})
        rows.append({"loss": "margin", "triplets": name, "count": len(t[0]),
                     "by hand": float(M.margin_loss(d, *t, margin, beta)[1]),
                     "pml": float(losses.MarginLoss(margin=margin, beta=beta)(x, y, t))})
    table = pd.DataFrame(rows).set_index(["loss", "triplets"])
    table["|difference|"] = (table["by hand"] - table["pml"]).abs()
    return table


@contextlib.contextmanager
def captured_weights():
    """Record the weights pml's DistanceWeightedMiner (and lib.miners' Wu miner) draw negatives from:
    both hand them to lmu.get_random_triplet_indices, which this wraps for the duration."""
    seen: list[torch.Tensor] = []
    original = lmu.get_random_triplet_indices

    def spy(labels, ref_labels=None, t_per_anchor=None, weights=None):
        seen.append(weights.clone())
        return original(labels, ref_labels=ref_labels, t_per_anchor=t_per_anchor, weights=weights)

    lmu.get_random_triplet_indices = spy
    try:
        yield seen
    finally:
        lmu.get_random_triplet_indices = original


def wu_weights_pml(x, y) -> tuple[torch.Tensor, torch.Tensor, tuple]:
    """(pml's weights, lib.miners' weights, pml's triplets) on one batch."""
    with captured_weights() as seen:
        pml_triplets = miners.DistanceWeightedMiner(cutoff=CUTOFF, nonzero_loss_cutoff=NONZERO_LOSS_CUTOFF)(x, y)
        WuDistanceWeightedMiner(cutoff=CUTOFF, nonzero_loss_cutoff=NONZERO_LOSS_CUTOFF)(x, y)
    return seen[0].nan_to_num(0.0), seen[1], pml_triplets


def wu_table() -> pd.DataFrame:
    """P(n | a) for every anchor of the example: by hand, by pml, by hand with the uniform fallback, by lib.miners."""
    x, y = example()
    d = M.distances(x)
    pml, ours, _ = wu_weights_pml(x, y)
    sources = {"by hand": M.wu_weights(d, y, x.shape[1], CUTOFF, NONZERO_LOSS_CUTOFF), "pml": pml,
               "by hand, uniform fallback": M.wu_weights(d, y, x.shape[1], CUTOFF, NONZERO_LOSS_CUTOFF, "uniform"),
               "lib.miners (Wu's code)": ours}
    anchors = [i for i in range(len(y)) if (y == y[i]).sum() > 1]  # C1 has no positive: never an anchor
    frames = {name: pd.DataFrame(w[anchors].numpy(), index=[NAMES[i] for i in anchors], columns=NAMES)
              for name, w in sources.items()}
    table = pd.concat(frames, names=["weights", "anchor"])
    return table.swaplevel().sort_index(level=0, sort_remaining=False)


def sampling_table(seed: int = 0) -> pd.DataFrame:
    """One draw of distance-weighted triplets per anchor: Wu's sampler (by hand), pml's, lib.miners'."""
    x, y = example()
    d = M.distances(x)
    w_drop = M.wu_weights(d, y, x.shape[1], CUTOFF, NONZERO_LOSS_CUTOFF)
    w_uniform = M.wu_weights(d, y, x.shape[1], CUTOFF, NONZERO_LOSS_CUTOFF, "uniform")
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # pml's miners draw from torch's global generator
    cut = dict(cutoff=CUTOFF, nonzero_loss_cutoff=NONZERO_LOSS_CUTOFF)
    draws = {"Wu's sampler, by hand": M.distance_weighted_triplets(d, y, w_drop, gen),
             "Wu's sampler, uniform fallback": M.distance_weighted_triplets(d, y, w_uniform, gen),
             "pml DistanceWeightedMiner": miners.DistanceWeightedMiner(**cut)(x, y),
             "lib.miners WuDistanceWeightedMiner": WuDistanceWeightedMiner(**cut)(x, y)}
    rows = {}
    for name, (a, p, n) in draws.items():
        for ai, pi, ni in sorted(zip(a.tolist(), p.tolist(), n.tolist())):
            cell = rows.setdefault(NAMES[ai], {}).get(name, "")
            rows[NAMES[ai]][name] = (cell + "; " if cell else "") + f"({NAMES[pi]}, {NAMES[ni]})"
    anchors = [name for name, c in zip(NAMES, CLASSES) if CLASSES.count(c) > 1]
    table = pd.DataFrame.from_dict(rows, orient="index").reindex(anchors)
    table.index.name = "anchor"
    return table.fillna("(dropped)")


def random_batch(seed: int, classes: int = 6, per_class: int = 4, dim: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """A float64 batch of `classes` x `per_class` points around random class centres, plus one
    singleton class (a negative that is never an anchor), as an m-per-class sampler gives."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.cat([torch.arange(classes).repeat_interleave(per_class), torch.tensor([classes])])
    centres = torch.randn(classes + 1, dim, generator=gen, dtype=torch.float64)
    return centres[y] + 0.8 * torch.randn(len(y), dim, generator=gen, dtype=torch.float64), y


def compare_batch(x, y, margin: float = MARGIN, beta: float = BETA) -> dict[str, float]:
    """Each piece by hand against pml on one batch: 0 where they agree (triplets: the number of
    triplets in one and not the other; losses and weights: the largest absolute difference)."""
    d = M.distances(x)
    a, p, n = M.all_triplets(y)
    bands = M.negative_bands(d, a, p, n, margin)
    out = {}
    for band in BANDS:
        hand = _as_set((a[bands[band]], p[bands[band]], n[bands[band]]))
        out[f"{band} triplets (TripletMarginMiner)"] = len(hand ^ _as_set(
            miners.TripletMarginMiner(margin=margin, type_of_triplets=band)(x, y)))
    out["batch-hard (BatchHardMiner)"] = len(_as_set(M.batch_hard(d, y)) ^ _as_set(miners.BatchHardMiner()(x, y)))
    out["easy-positive, semi-hard negative (BatchEasyHardMiner)"] = len(
        _as_set(M.easy_positive_semihard_negative(d, y)) ^ _as_set(_triplets(miners.BatchEasyHardMiner()(x, y))))
    losses_here = loss_table(x, y, margin, beta)["|difference|"]
    out["triplet loss (TripletMarginLoss), every miner"] = float(losses_here.loc["triplet"].max())
    out["margin loss (MarginLoss), every miner"] = float(losses_here.loc["margin"].max())
    pml, ours, _ = wu_weights_pml(x, y)
    out["Wu's weights (DistanceWeightedMiner)"] = float(
        (M.wu_weights(d, y, x.shape[1], CUTOFF, NONZERO_LOSS_CUTOFF) - pml).abs().max())
    out["Wu's weights, uniform fallback (lib.miners)"] = float(
        (M.wu_weights(d, y, x.shape[1], CUTOFF, NONZERO_LOSS_CUTOFF, "uniform") - ours).abs().max())
    return out


def random_checks(ch: Chapter) -> pd.DataFrame:
    """`compare_batch` on the example and on the profile's number of random batches (seeds 0, 1, ...)."""
    batches = {"worked example": example()}
    batches.update({f"random batch, seed {s}": random_batch(s) for s in range(ch.settings.random_batches)})
    table = pd.DataFrame({name: compare_batch(*xy) for name, xy in batches.items()})
    table.index.name = "piece (pml class)"
    table["worst"] = table.max(axis=1)
    return table


# Agreement: equal triplets, and numbers within 1e-6 (pml keeps MarginLoss's beta in float32: 1.2 is
# 1.2000000477 there, which moves its loss by ~4e-8; everything else agrees to float64 rounding).
TOLERANCE = 1e-6


def agrees(table: pd.DataFrame, tolerance: float = TOLERANCE) -> bool:
    return bool((table["worst"] <= tolerance).all())


LABEL_NUDGE = {"A3": -9.0, "C1": 9.0}  # degrees: A3 and C1 are 5 degrees apart on the circle


def bands_figure(ch: Chapter, anchor: str = "A1", positive: str = "A2", margin: float = MARGIN) -> plt.Figure:
    """The example on the unit circle, one anchor's circles at D_ap and D_ap + alpha, its negatives by band."""
    from matplotlib.patches import Patch

    x, y = example()
    d = M.distances(x)
    ia, ip = NAMES.index(anchor), NAMES.index(positive)
    d_ap = float(d[ia, ip])
    pts = x.numpy()
    fig, ax = plt.subplots(figsize=(7.2, 5.6))
    ax.add_patch(plt.Circle((0, 0), 1.0, fill=False, color="lightgrey", lw=1))
    ax.add_patch(plt.Circle(pts[ia], d_ap + margin, color=BAND_COLOURS["semihard"], alpha=0.15, lw=0))
    ax.add_patch(plt.Circle(pts[ia], d_ap, color=BAND_COLOURS["hard"], alpha=0.2, lw=0))
    for r, text in ((d_ap, "D = D_ap"), (d_ap + margin, "D = D_ap + α")):
        ax.add_patch(plt.Circle(pts[ia], r, fill=False, ls="--", color="grey", lw=1))
        ax.annotate(text, pts[ia] + r * np.array([0.5, -0.866]), fontsize=9, color="dimgrey", ha="left", va="top")
    for i, name in enumerate(NAMES):
        gap = float(d[ia, i] - d_ap)
        band = "hard" if gap <= 0 else "semihard" if gap <= margin else "easy"
        kind = ("anchor" if i == ia else "positive" if i == ip else "another positive" if y[i] == y[ia]
                else f"{band.replace('semih', 'semi-h')} negative")
        ax.scatter(*pts[i], s=150, marker="os^"[y[i]], zorder=3, edgecolor="white",
                   color="black" if y[i] == y[ia] else BAND_COLOURS[band])
        at = math.radians(ANGLES[i] + LABEL_NUDGE.get(name, 0.0))
        ax.annotate(f"{name}: {kind}", (1.12 * math.cos(at), 1.12 * math.sin(at)), fontsize=9, va="center",
                    ha="left" if math.cos(at) > 0 else "right")
    ax.plot(*zip(pts[ia], pts[ip]), color="black", lw=1)
    ax.legend(handles=[Patch(color=BAND_COLOURS["hard"], alpha=0.35, label="hard: D_an ≤ D_ap"),
                       Patch(color=BAND_COLOURS["semihard"], alpha=0.3, label="semi-hard: D_ap < D_an ≤ D_ap + α"),
                       Patch(facecolor="white", edgecolor="grey", label="easy: beyond")],
              loc="upper left", fontsize=8, title="class A ●, B ■, C ▲", title_fontsize=8)
    ax.set(xlim=(-1.6, 2.5), ylim=(-1.35, 1.35), aspect="equal", xticks=[], yticks=[],
           title=f"Anchor {anchor}, positive {positive}: D_ap = {d_ap:.3f}, α = {margin}")
    ax.grid(False)
    fig.tight_layout()
    ch.save(fig, "bands",
            f"The easy, semi-hard and hard bands of anchor {anchor} with positive {positive} (α = {margin})")
    return fig


def wu_figure(ch: Chapter, dims: tuple[int, ...] = (2, 8, 32, 128)) -> plt.Figure:
    """log10 of Wu's weight min(λ, q(D)^-1) against D, relative to its value at D = √2, per dimension."""
    grid = torch.linspace(0.05, 1.99, 400, dtype=torch.float64)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for n in dims:
        at_root2 = M.wu_log_inverse_density(torch.tensor(math.sqrt(2)), n)
        w = M.wu_log_inverse_density(grid.clamp(min=CUTOFF), n) - at_root2
        w = torch.where(grid < NONZERO_LOSS_CUTOFF, w / math.log(10), torch.nan)
        ax.plot(grid.numpy(), w.numpy(), label=f"n = {n}")
    for at, text in ((CUTOFF, "cutoff: weight clipped"), (NONZERO_LOSS_CUTOFF, "nonzero_loss_cutoff: weight 0")):
        ax.axvline(at, color="grey", ls="--", lw=1)
        ax.annotate(text, (at, 0.95), xycoords=("data", "axes fraction"), fontsize=8, rotation=90, ha="right", va="top")
    ax.set(xlabel="distance D from the anchor", ylabel="log10 weight / weight at √2", xlim=(0, 2), yscale="linear",
           title="Wu et al.'s weight of a negative at distance D (before normalising)")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    ch.save(fig, "wu-weights", "Wu's sampling weight q(D)^-1, clipped at the cutoff and cut at 1.4, per dimension")
    return fig


def conclusion(checks: pd.DataFrame, weights: pd.DataFrame) -> str:
    """What the checks show, in a paragraph computed from them."""
    n = checks.shape[1] - 1
    if not agrees(checks):
        bad = checks.index[checks["worst"] > TOLERANCE].tolist()
        return (f"**The hand-written code and pml disagree** on {', '.join(bad)}: read the table above before "
                "trusting what the later chapters say about these pieces.")
    dropped = [a for a in weights.index.get_level_values(0).unique()
               if weights.loc[(a, "pml")].sum() == 0 and weights.loc[(a, "lib.miners (Wu's code)")].sum() > 0]
    return (f"Every piece written out above returns what pytorch-metric-learning returns, on the worked example and "
            f"on {n - 1} random batches: the same triplets in each band, the same batch-hard and easy-positive picks, "
            "the same sampling weights, and the same batch losses (worst difference "
            f"{checks['worst'].max():.0e}, pml's "
            "float32 β in the margin loss). So the "
            "later chapters' names mean exactly these few lines. Where the study departs from pml is Wu's sampler: "
            f"anchor{'s' if len(dropped) != 1 else ''} {', '.join(dropped) or '(none)'} of the example "
            f"{'has' if len(dropped) == 1 else 'have'} every negative beyond the 1.4 cut, so pml drops "
            f"{'it' if len(dropped) == 1 else 'them'} while lib.miners (as Wu et al.'s code) draws a negative "
            "uniformly; and pml draws each anchor's positives at random with replacement, where Wu's code takes "
            "every positive once.")
