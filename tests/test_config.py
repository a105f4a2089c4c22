"""Params profiles: every profile validates, and every mistake gets one clear message."""
import pytest

import lib.train  # noqa: F401  adds the checks of components, backbone, augmentation and data options
from lib.config import ConfigError, RunConfig, available_profiles, load_profile, parse_assignment


@pytest.mark.parametrize("name", ["smoke", "quick", "full", "paper"])
def test_every_profile_validates(name):
    profile = load_profile(name)
    assert profile.seeds
    for dataset in profile.datasets:
        cfg = profile.run_config(dataset)
        assert isinstance(cfg, RunConfig) and cfg.data.name == dataset


def test_profiles_exist():
    assert {"smoke", "quick", "full", "paper"} <= set(available_profiles())


def test_full_has_three_seeds_and_smoke_extends_quick():
    assert len(load_profile("full").seeds) >= 3
    smoke, quick = load_profile("smoke"), load_profile("quick")
    assert smoke.run_config("omniglot").model == quick.run_config("omniglot").model
    assert smoke.run_config("omniglot").train.steps_per_epoch == 4


def test_misspelt_key_names_key_and_choices():
    with pytest.raises(ConfigError, match=r"unknown key 'optim.lrr' \(did you mean 'lr'\?\); valid keys here: name, lr"):
        load_profile("quick", {"base.optim.lrr": 0.1})


def test_misspelt_top_level_key():
    with pytest.raises(ConfigError, match="unknown key 'seed'.*did you mean 'seeds'"):
        load_profile("quick", {"seed": [1]})


def test_wrong_type_names_key():
    with pytest.raises(ConfigError, match=r"train.epochs: expected an integer, got 'three'"):
        load_profile("quick", {"base.train.epochs": "three"})
    with pytest.raises(ConfigError, match=r"model.normalize: expected true or false"):
        load_profile("quick", {"base.model.normalize": "yes"})


def test_unknown_loss_and_miner_and_kwarg():
    with pytest.raises(ConfigError, match="unknown loss 'TripletLoss'; valid choices: .*TripletMarginLoss"):
        load_profile("quick", {"base.loss.name": "TripletLoss"})
    with pytest.raises(ConfigError, match="unknown miner 'HardMiner'; valid choices: .*BatchHardMiner"):
        load_profile("quick", {"base.miner.name": "HardMiner"})
    with pytest.raises(ConfigError, match="miner TripletMarginMiner has no argument typeof; valid: .*type_of_triplets"):
        load_profile("quick", {"base.miner.kwargs": {"typeof": "hard"}})
    with pytest.raises(ConfigError, match="unknown optimizer 'Adamax'"):
        load_profile("quick", {"base.optim.name": "Adamax"})


def test_unknown_profile_lists_profiles():
    with pytest.raises(ConfigError, match="profiles available: .*quick"):
        load_profile("quik")


def test_overrides_and_layers():
    profile = load_profile("quick")
    cfg = profile.run_config("omniglot", {"optim": {"lr": 0.5}}, train__epochs=7)
    assert cfg.optim.lr == 0.5 and cfg.optim.name == "Adam" and cfg.train.epochs == 7
    assert cfg.with_overrides({"model.embedding_dim": 32}).model.embedding_dim == 32
    assert parse_assignment("optim.lr=1e-4") == ("optim.lr", 1e-4)
    assert parse_assignment("miner.name=null") == ("miner.name", None)
    with pytest.raises(ConfigError, match="key=value"):
        parse_assignment("optim.lr")


def test_kwargs_are_replaced_not_merged():
    # A loss's kwargs belong to that loss: switching loss must not inherit the old one's arguments.
    cfg = load_profile("quick").run_config("omniglot", {"loss": {"name": "MultiSimilarityLoss", "kwargs": {}}})
    assert cfg.loss.kwargs == {}


def test_missing_dataset_and_chapter():
    profile = load_profile("quick")
    with pytest.raises(ConfigError, match="no settings for data set 'cub200'"):
        profile.run_config("cub200")
    with pytest.raises(ConfigError, match="no section chapters.99_nothing"):
        profile.chapter("99_nothing")
    with pytest.raises(ConfigError, match="no section chapters.99_nothing"):
        profile.section("99_nothing")
    # the typed section holds what the plain copy holds, read by attribute
    assert profile.section("04_divide_and_conquer").model_dump(exclude_unset=True) == profile.chapter("04_divide_and_conquer")
