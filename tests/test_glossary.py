"""The worked examples of docs/glossary.md, recomputed: MAP@R and R-precision by hand against
lib.evaluate, Holm's adjusted p-values, the minimum detectable effects and the Clopper-Pearson
intervals the glossary quotes."""
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from lib import evaluate, stats

GLOSSARY = Path(__file__).resolve().parent.parent / "docs" / "glossary.md"
POSITIONS = [0.0, 1.0, 3.1, 5.3, 2.2, 4.6]  # the glossary's six points on a line
LABELS = [0, 0, 0, 0, 1, 1]                 # class A, then class B


def by_hand(query: int) -> tuple[float, float]:
    """MAP@R and R-precision of one query, written out as the glossary defines them."""
    others = sorted((abs(POSITIONS[j] - POSITIONS[query]), j) for j in range(len(POSITIONS)) if j != query)
    relevant = [LABELS[j] == LABELS[query] for _, j in others]
    r = sum(relevant)
    hits, total = 0, 0.0
    for i, rel in enumerate(relevant[:r], start=1):
        hits += rel
        total += hits / i if rel else 0.0
    return total / r, sum(relevant[:r]) / r


def test_map_at_r_worked_example():
    map_r, r_precision = by_hand(0)
    assert map_r == pytest.approx(5 / 9) and r_precision == pytest.approx(2 / 3)
    text = GLOSSARY.read_text()
    assert "5/9 ≈ 0.556" in text and "R-precision = 2/3" in text


def test_the_hand_definition_is_lib_evaluate():
    x = np.array([[p, 0.0] for p in POSITIONS], dtype=np.float32)
    metrics = evaluate.retrieval_metrics(x, np.array(LABELS), recall_ks=(1,), nmi=False)
    hand = np.array([by_hand(q) for q in range(len(POSITIONS))])
    assert metrics["map@r"] == pytest.approx(hand[:, 0].mean())
    assert metrics["r_precision"] == pytest.approx(hand[:, 1].mean())


def test_holm_example():
    np.testing.assert_allclose(stats.holm_adjust([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])


def test_minimum_detectable_effects_quoted():
    assert stats.minimum_detectable_effect(1.0, 3) == pytest.approx(3.3, abs=0.05)
    assert stats.minimum_detectable_effect(1.0, 5) == pytest.approx(1.7, abs=0.05)
    assert stats.minimum_detectable_effect(1.0, 3, family_size=3) == pytest.approx(5.7, abs=0.05)
    assert stats.minimum_detectable_effect(1.0, 5, family_size=3) == pytest.approx(2.3, abs=0.05)


def test_tost_and_clopper_pearson_examples():
    half = scipy_stats.t.ppf(0.95, 4) * 1.0 / np.sqrt(5)
    assert (0.3 - half, 0.3 + half) == pytest.approx((-0.65, 1.25), abs=0.005)
    assert scipy_stats.binomtest(0, 5).proportion_ci(method="exact").high == pytest.approx(0.52, abs=0.005)
    ci = scipy_stats.binomtest(320, 400).proportion_ci(method="exact")
    assert (ci.low, ci.high) == pytest.approx((0.757, 0.838), abs=0.0005)
