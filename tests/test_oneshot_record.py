"""Chapter 6's road: an ingredient stays only when it raises the validation metric, paired by seed."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from lib import scoring
from lib.augment import shift
from lib.chapters import oneshot_record
from lib.results import RunResult


class FakeChapter:
    """Runs are looked up by the epochs and loss of their config: validation scores per seed."""

    def __init__(self, scores: dict):
        self.scores = scores
        # read by attribute like the chapter's typed section (whose layers would refuse these toy ones)
        self.settings = SimpleNamespace(select_on="val_recall@1", start={"train": {"epochs": 1}},
                                        ingredients={"other loss": {"loss": "B"}, "longer": {"train": {"epochs": 4}}},
                                        test_time={})
        self.recorded, self.extras, self.asked = [], [], []

    def config(self, dataset, *layers):
        merged = {"loss": "A", "epochs": 1}
        for layer in layers:
            merged["loss"] = layer.get("loss", merged["loss"])
            merged["epochs"] = layer.get("train", {}).get("epochs", merged["epochs"])
        return merged

    def results(self, settings):
        (name, cfg), = settings.items()
        self.asked.append((name, cfg))
        runs = [RunResult(SimpleNamespace(train=SimpleNamespace(seed=seed)), f"{name}-{seed}", Path(name),
                          {"oneshot_accuracy": 0.5}, pd.DataFrame({"val_recall@1": [0.0, value]}))
                for seed, value in enumerate(self.scores[(cfg["loss"], cfg["epochs"])])]
        return {name: runs}

    def record(self, setting, result, extra=None):
        self.recorded.append((setting, result.key))
        self.extras.append(extra or {})

    def save_records(self):
        pass


@pytest.fixture(autouse=True)
def lake_runs(monkeypatch):
    """Each chosen run's accuracy on Lake's 20 runs (read from its weights in the chapter): run i
    of a seed scores i / 20, so the recorded columns can be told apart."""
    monkeypatch.setattr(oneshot_record, "per_run_accuracy",
                        lambda step: np.tile(np.arange(1, 21) / 20, (len(step.results), 1)))


@pytest.mark.parametrize("loss_helps", [True, False])
def test_an_ingredient_stays_only_when_its_paired_validation_gain_is_positive(loss_helps):
    b = [0.6, 0.7, 0.65] if loss_helps else [0.5, 0.45, 0.55]  # against A's 0.5, 0.6, 0.55
    ch = FakeChapter({("A", 1): [0.5, 0.6, 0.55], ("B", 1): b, ("B", 4): [0.7, 0.8, 0.75], ("A", 4): [0.52, 0.58, 0.6]})
    steps = oneshot_record.road(ch)
    assert [s.kept for s in steps] == [True, loss_helps, True]
    # the schedule is tried on top of what was kept: B when it helped, A when it did not
    assert ch.asked[-1][1] == {"loss": "B" if loss_helps else "A", "epochs": 4}
    expected_name = "start + other loss + longer" if loss_helps else "start + longer"
    assert oneshot_record.chosen(steps).setting == expected_name
    assert [k for s, k in ch.recorded if s == oneshot_record.CHOSEN] == [f"{expected_name}-{i}" for i in range(3)]
    # each of Lake's 20 runs as its own column, for the ledger's hierarchical bootstrap
    assert ch.extras[-1] == {f"oneshot_accuracy_run_{i}": i / 20 for i in range(1, 21)}


def test_a_tie_or_a_loss_drops_the_ingredient():
    ch = FakeChapter({("A", 1): [0.5, 0.6, 0.55], ("B", 1): [0.5, 0.6, 0.55], ("A", 4): [0.4, 0.5, 0.45]})
    steps = oneshot_record.road(ch)
    assert [s.kept for s in steps] == [True, False, False]
    assert oneshot_record.chosen(steps).setting == "start"


def test_an_unknown_selection_metric_says_which_columns_exist():
    ch = FakeChapter({("A", 1): [0.5, 0.6, 0.55]})
    ch.settings.select_on = "val_recall@9"
    with pytest.raises(KeyError, match="val_recall@9.*columns: val_recall@1"):
        oneshot_record.road(ch)


@pytest.mark.parametrize("second_helps", [True, False])
def test_test_time_views_rescore_the_kept_runs_and_stay_only_when_validation_rises(monkeypatch, second_helps):
    """Views re-score the kept recipe's runs (no training), accumulate when kept, and are judged
    like any ingredient; the chosen runs carry the re-scored one-shot accuracy."""
    ch = FakeChapter({("A", 1): [0.5, 0.6, 0.55], ("B", 1): [0.4, 0.5, 0.45], ("A", 4): [0.6, 0.7, 0.65]})
    ch.settings.test_time = {"±1 px": [[1, 0], [-1, 0]], "±2 px": [[2, 0], [-2, 0]]}
    by_views = {3: (0.02, 0.9), 5: (0.03 if second_helps else 0.01, 0.95)}  # views -> (gain on "longer", one-shot)
    monkeypatch.setattr(oneshot_record, "_view_scores", lambda r, views: {
        "val_recall@1": ch.scores[("A", 4)][r.config.train.seed] + by_views[len(views)][0],
        "oneshot_accuracy": by_views[len(views)][1]})
    steps = oneshot_record.road(ch)
    assert len(ch.asked) == 3, "a test-time step must not train"
    assert [s.kept for s in steps] == [True, False, True, True, second_helps]
    assert steps[3].views == ((0, 0), (1, 0), (-1, 0)) and not steps[3].trains
    assert steps[4].views == (*steps[3].views, (2, 0), (-2, 0))
    assert steps[4].gain.diff == pytest.approx(0.01 if second_helps else -0.01)
    best = oneshot_record.chosen(steps)
    assert best.setting == ("start + longer + ±1 px + ±2 px" if second_helps else "start + longer + ±1 px")
    assert [r.metrics["oneshot_accuracy"] for r in best.results] == [0.95 if second_helps else 0.9] * 3
    assert [k for s, k in ch.recorded if s == oneshot_record.CHOSEN] == [f"start + longer-{i}" for i in range(3)]


def test_a_shift_moves_whole_pixels_and_fills_with_zero():
    x = np.arange(1, 13, dtype=np.uint8).reshape(1, 3, 4)
    down, left = shift(x, 1, 0), shift(x, 0, -1)
    assert (down[0, 0] == 0).all() and (down[0, 1:] == x[0, :2]).all()
    assert (left[..., :3] == x[..., 1:]).all() and (left[..., 3] == 0).all()
    assert (shift(x, 0, 0) == x).all()
    with pytest.raises(ValueError, match="leaves nothing"):
        shift(x, 3, 0)


def test_views_of_a_trained_run_score_as_the_run_did_with_the_image_alone(tmp_path, monkeypatch):
    """The identity view reproduces the run's own last validation recall@1 and one-shot accuracy
    (so a test-time step's gain is paired against the same measurement); more views change them."""
    from lib import train
    from lib.config import load_profile

    monkeypatch.setenv("METRIC_RUNS", str(tmp_path / "runs"))
    cfg = load_profile("smoke").run_config("omniglot", data__val_fraction=0.15, data__max_train_images=400,
                                           train__steps_per_epoch=3, train__epochs=1, eval__nmi=False)
    result = train.run(cfg, progress=False)
    alone = oneshot_record._view_scores(result, scoring.IDENTITY)
    assert alone["val_recall@1"] == pytest.approx(result.history["val_recall@1"].iloc[-1], abs=1e-12)
    assert alone["oneshot_accuracy"] == pytest.approx(result.metrics["oneshot_accuracy"], abs=1e-12)
    assert alone["per_run"].shape == (20,) and alone["per_run"].mean() == pytest.approx(alone["oneshot_accuracy"])
    views = (*scoring.IDENTITY, (1, 0), (-1, 0), (0, 1), (0, -1))
    shifted = oneshot_record._view_scores(result, views)
    assert 0 <= shifted["oneshot_accuracy"] <= 1 and shifted["val_recall@1"] != alone["val_recall@1"]
    assert list((tmp_path / "runs" / "derived").glob("oneshot-views*"))
