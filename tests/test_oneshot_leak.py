"""No image of Lake's 20 one-shot runs, nor any evaluation-set character, can reach training or
validation: the one-shot accuracy is only a test of transfer if the runs stay unseen."""
from __future__ import annotations

import pytest

from lib.data import load_dataset
from lib.splits import load_splits
from lib.study import Chapter


@pytest.fixture(scope="module")
def oneshot_images(shared_data) -> set[bytes]:
    runs = load_dataset("omniglot_oneshot", root=shared_data)
    return {image.tobytes() for run in runs for image in (*run.support, *run.query)}


@pytest.mark.parametrize("profile, chapter, layer", [
    ("quick", "00_quickstart", {}),
    ("full", "00_quickstart", {}),
    ("quick", "02_mining", {}),
    ("quick", "00_quickstart", {"data": {"val_fraction": 0.2}}),
    ("quick", "00_quickstart", {"data": {"options": {"background": "small1"}}}),
    ("quick", "00_quickstart", {"data": {"options": {"background": "minimal"}, "val_fraction": 0.2}}),
    ("quick", "06_oneshot_record", "start"),  # the record's road chooses on its validation split
    ("full", "06_oneshot_record", "start"),
])
def test_no_oneshot_or_evaluation_image_enters_training_or_validation(shared_data, oneshot_images, profile, chapter,
                                                                      layer, monkeypatch) -> None:
    monkeypatch.setenv("METRIC_DATA", str(shared_data))
    ch = Chapter(chapter, profile)
    cfg = ch.config("omniglot", getattr(ch.settings, layer) if layer == "start" else layer)
    splits = load_splits(cfg)
    test_characters = set(splits.test.meta["char_id"])
    # With val_fraction 0 the per-epoch validation *is* the test split (learning curves only: nothing
    # is chosen on it); a validation split that can choose settings is carved from the background.
    seen = [splits.train] + ([splits.val] if cfg.data.val_fraction > 0 else [])
    for split in seen:
        assert split.images is not None and len(split) > 0
        assert not {image.tobytes() for image in split.images} & oneshot_images
        assert set(split.meta["char_id"]).isdisjoint(test_characters)
        assert (split.meta["char_id"] < 965).all()  # background characters are 1..964, evaluation 965..1623
    # the runs' images are evaluation images, so the byte test above can see a leak
    evaluation = load_dataset("omniglot", root=shared_data, image_size=cfg.data.image_size).test
    assert oneshot_images <= {image.tobytes() for image in evaluation.images}
