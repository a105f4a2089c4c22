"""Chapter 6's road: an ingredient stays only when it raises the validation metric, paired by seed."""
from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from lib.chapters import oneshot_record


class FakeChapter:
    """Runs are looked up by the epochs and loss of their config: validation scores per seed."""

    def __init__(self, scores: dict):
        self.scores = scores
        self.settings = {"select_on": "val_recall@1", "start": {"train": {"epochs": 1}},
                         "ingredients": {"other loss": {"loss": "B"}, "longer": {"train": {"epochs": 4}}}}
        self.recorded, self.asked = [], []

    def config(self, dataset, *layers):
        merged = {"loss": "A", "epochs": 1}
        for layer in layers:
            merged["loss"] = layer.get("loss", merged["loss"])
            merged["epochs"] = layer.get("train", {}).get("epochs", merged["epochs"])
        return merged

    def run_settings(self, settings):
        (name, cfg), = settings.items()
        self.asked.append((name, cfg))
        runs = [SimpleNamespace(config=SimpleNamespace(train=SimpleNamespace(seed=seed)), key=f"{name}-{seed}",
                                history=pd.DataFrame({"val_recall@1": [0.0, value]}), metrics={})
                for seed, value in enumerate(self.scores[(cfg["loss"], cfg["epochs"])])]
        return {name: runs}

    def record(self, setting, result):
        self.recorded.append((setting, result.key))

    def save_records(self):
        pass


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


def test_a_tie_or_a_loss_drops_the_ingredient():
    ch = FakeChapter({("A", 1): [0.5, 0.6, 0.55], ("B", 1): [0.5, 0.6, 0.55], ("A", 4): [0.4, 0.5, 0.45]})
    steps = oneshot_record.road(ch)
    assert [s.kept for s in steps] == [True, False, False]
    assert oneshot_record.chosen(steps).setting == "start"


def test_an_unknown_selection_metric_says_which_columns_exist():
    ch = FakeChapter({("A", 1): [0.5, 0.6, 0.55]})
    ch.settings["select_on"] = "val_recall@9"
    with pytest.raises(KeyError, match="val_recall@9.*columns: val_recall@1"):
        oneshot_record.road(ch)
