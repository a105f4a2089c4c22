"""Reliability 2: every bad value gets one clear line, at load or override time (one test per probe).

Each test is named for its probe in the issue; each message is one `ConfigError` line naming the
dotted key, raised where the run's config is built, not deep in a run."""
from __future__ import annotations

import math

import pytest

from lib import config as config_lib
from lib.config import ConfigError, load_profile, parse_assignment
from lib.train import main as train_main


@pytest.fixture(scope="module")
def smoke_cfg():
    return load_profile("smoke").run_config("omniglot")


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message, message
    return message


def _cli_one_line(capsys, *sets: str) -> str:
    """lib.train's command line refuses the settings with rc 2 and one `error:` line."""
    args = ["smoke", "--set", "eval.oneshot=false"]
    for s in sets:
        args += ["--set", s]
    assert train_main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


# ----------------------------------------------------------------------------- numbers: finite, in range
def test_nan_margin_is_refused_not_trained_with_a_zero_loss(smoke_cfg, capsys):
    """Probe: `--set loss.kwargs.margin=.nan`: loss and gradient stayed 0, and the run was cached complete."""
    with pytest.raises(ConfigError) as err:
        smoke_cfg.with_overrides({"loss.kwargs.margin": math.nan})
    assert _one_line(err) == "loss.kwargs.margin: must be a finite number, got nan"
    assert "loss.kwargs.margin: must be a finite number, got nan" in _cli_one_line(capsys, "loss.kwargs.margin=.nan")
    with pytest.raises(ConfigError, match=r"base: loss\.kwargs\.margin: must be a finite number, got nan"):
        load_profile("smoke", {"base.loss.kwargs.margin": math.nan})
    with pytest.raises(ConfigError, match=r"^miner\.kwargs\.margin: must be a finite number, got inf$"):
        smoke_cfg.with_overrides({"miner.kwargs.margin": math.inf})


@pytest.mark.parametrize("key, text", [("optim.lr", "1e309"), ("optim.weight_decay", ".inf")])
def test_infinite_lr_or_weight_decay_is_refused_not_diverging(smoke_cfg, capsys, key, text):
    """Probe: `optim.lr=1e309` and `weight_decay=.inf` were accepted and then diverged."""
    value = parse_assignment(f"{key}={text}")[1]
    assert math.isinf(value)
    with pytest.raises(ConfigError) as err:
        smoke_cfg.with_overrides({key: value})
    assert _one_line(err) == f"{key}: must be a finite number, got inf"
    assert f"{key}: must be a finite number" in _cli_one_line(capsys, f"{key}={text}")


def test_a_seed_too_large_for_the_generators_is_refused(smoke_cfg, capsys):
    """Probe: `train.seed=99999999999999999999` overflowed deep in the run."""
    with pytest.raises(ConfigError) as err:
        smoke_cfg.with_overrides({"train.seed": 99999999999999999999})
    assert _one_line(err) == "train.seed: must be <= 4294967295, got 99999999999999999999"
    assert "train.seed: must be <= 4294967295" in _cli_one_line(capsys, "train.seed=99999999999999999999")
    with pytest.raises(ConfigError, match=r"seeds\[0\]: must be <= 4294967295"):
        load_profile("smoke", {"seeds": [2**40]})
    assert smoke_cfg.with_overrides({"train.seed": 2**32 - 1}).train.seed == 2**32 - 1


def test_a_huge_steps_per_epoch_is_refused(smoke_cfg, capsys):
    """Probe: `steps_per_epoch=10**12` gave a traceback."""
    with pytest.raises(ConfigError) as err:
        smoke_cfg.with_overrides({"train.steps_per_epoch": 10**12})
    assert _one_line(err) == "train.steps_per_epoch: must be <= 100000, got 1000000000000"
    assert "train.steps_per_epoch: must be <= 100000" in _cli_one_line(capsys, "train.steps_per_epoch=1000000000000")


def test_a_huge_thread_count_is_refused(smoke_cfg, capsys):
    """Probe: `threads=100000` gave a traceback."""
    with pytest.raises(ConfigError) as err:
        smoke_cfg.with_overrides({"train.threads": 100000})
    assert _one_line(err) == "train.threads: must be <= 1024, got 100000"
    assert "train.threads: must be <= 1024" in _cli_one_line(capsys, "train.threads=100000")


# ----------------------------------------------------------------------------- names and their arguments
def test_an_unknown_optimizer_argument_is_refused_when_the_config_is_built(smoke_cfg, capsys):
    """Probe: `optim.kwargs.bogus=1` gave a traceback deep in the run."""
    with pytest.raises(ConfigError) as err:
        smoke_cfg.with_overrides({"optim.kwargs.bogus": 1})
    assert _one_line(err).startswith("optim.kwargs: Adam has no argument bogus; valid: ")
    assert "amsgrad" in str(err.value) and "betas" in str(err.value)
    assert "optim.kwargs: Adam has no argument bogus" in _cli_one_line(capsys, "optim.kwargs.bogus=1")
    with pytest.raises(ConfigError, match=r"^optim\.kwargs: Adam refuses betas=\[1\.5, 0\.9\]: Invalid beta"):
        smoke_cfg.with_overrides({"optim.kwargs.betas": [1.5, 0.9]})
    with pytest.raises(ConfigError, match=r"^optim\.scheduler_kwargs: the step scheduler has no argument bogus"):
        smoke_cfg.with_overrides({"optim.scheduler": "step", "optim.scheduler_kwargs": {"bogus": 1}})


def test_an_unknown_backbone_is_refused_when_the_config_is_built(smoke_cfg, capsys):
    """Probe: `model.backbone=nosuchnet` gave a traceback deep in the run."""
    with pytest.raises(ConfigError) as err:
        smoke_cfg.with_overrides({"model.backbone": "nosuchnet"})
    assert _one_line(err).startswith("model.backbone: unknown backbone 'nosuchnet'; give convnet or a timm model name")
    assert "model.backbone: unknown backbone 'nosuchnet'" in _cli_one_line(capsys, "model.backbone=nosuchnet")
    assert smoke_cfg.with_overrides({"model.backbone": "convnet"}).model.backbone == "convnet"
    assert smoke_cfg.with_overrides({"model.backbone": "resnet18"}).model.backbone == "resnet18"


def test_the_backbones_accepted_without_importing_timm_are_timm_models():
    import timm

    assert all(timm.is_model(name) for name in config_lib.TIMM_BACKBONES)


@pytest.mark.parametrize("value", [0, -5, [0, 28], [28], [28, 28, 28]])
def test_a_zero_or_negative_image_size_is_refused(smoke_cfg, capsys, value):
    """Probe: `data.image_size=0` or `-5` gave a traceback deep in the run."""
    with pytest.raises(ConfigError) as err:
        smoke_cfg.with_overrides({"data.image_size": value})
    assert _one_line(err) == (f"data.image_size: must be a size >= 1 or a list [height, width] of two, "
                              f"or null, got {value!r}")
    if value in (0, -5):
        assert "data.image_size: must be a size >= 1" in _cli_one_line(capsys, f"data.image_size={value}")
    assert smoke_cfg.with_overrides({"data.image_size": [32, 16]}).data.image_size == [32, 16]


def test_an_unknown_augmentation_is_refused_when_the_config_is_built(smoke_cfg, capsys):
    """Probe: `data.augment=nosuch` gave a traceback deep in the run."""
    with pytest.raises(ConfigError) as err:
        smoke_cfg.with_overrides({"data.augment": "nosuch"})
    assert _one_line(err) == "data.augment: unknown preset 'nosuch'; presets: none, omniglot, beluga, natural"
    assert "data.augment: unknown preset 'nosuch'" in _cli_one_line(capsys, "data.augment=nosuch")
    with pytest.raises(ConfigError, match=r"^data\.augment: unknown augmentation option\(s\) bogus; valid: scale, "):
        smoke_cfg.with_overrides({"data.augment": {"bogus": 1}})
    with pytest.raises(ConfigError, match=r"^data\.augment\.rotate: must be a finite number, got nan$"):
        smoke_cfg.with_overrides({"data.augment": {"rotate": math.nan}})
    with pytest.raises(ConfigError, match=r"^data\.augment\.rotate: expected a number \(BatchAugment's default"):
        smoke_cfg.with_overrides({"data.augment": {"rotate": "x"}})


def test_an_unknown_data_option_is_refused_when_the_config_is_built(smoke_cfg, capsys):
    """Probe: `data.options.bogus=1` gave a traceback deep in the run."""
    with pytest.raises(ConfigError) as err:
        smoke_cfg.with_overrides({"data.options.bogus": 1})
    assert _one_line(err).startswith("data.options: omniglot has no option bogus; valid options: ")
    assert "background" in str(err.value)
    assert "data.options: omniglot has no option bogus" in _cli_one_line(capsys, "data.options.bogus=1")


def test_an_empty_recall_ks_is_refused(smoke_cfg, capsys):
    """Probe: `eval.recall_ks=[]` gave a traceback deep in the run."""
    with pytest.raises(ConfigError) as err:
        smoke_cfg.with_overrides({"eval.recall_ks": []})
    assert _one_line(err) == "eval.recall_ks: needs at least 1 item(s), got []"
    assert "eval.recall_ks: needs at least 1 item(s)" in _cli_one_line(capsys, "eval.recall_ks=[]")


def test_a_margin_that_is_not_a_number_is_refused(smoke_cfg, capsys):
    """Probe: `loss.kwargs.margin=abc` gave a traceback deep in the run."""
    with pytest.raises(ConfigError) as err:
        smoke_cfg.with_overrides({"loss.kwargs.margin": "abc"})
    assert _one_line(err) == ("loss.kwargs.margin: expected a number (TripletMarginLoss's default is 0.05), "
                              "got 'abc' (str)")
    assert "loss.kwargs.margin: expected a number" in _cli_one_line(capsys, "loss.kwargs.margin=abc")
    with pytest.raises(ConfigError, match=r"^distance\.kwargs\.normalize_embeddings: expected true or false"):
        smoke_cfg.with_overrides({"distance.kwargs.normalize_embeddings": "yes"})


def test_every_profile_still_loads():
    for name in ("smoke", "quick", "full", "paper", "paper_dnc", "paper_semihard", "paper_wu"):
        load_profile(name)


# ----------------------------------------------------------------------------- the YAML loader
def _profile(tmp_path, text: str | bytes, name: str = "probe"):
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_a_duplicate_key_is_refused_not_the_last_one_winning(tmp_path):
    """Probe: `epochs: 1` then `epochs: 3` (or two `base:` blocks): the last one silently won."""
    path = _profile(tmp_path, "extends: smoke\nbase:\n  train:\n    epochs: 1\n    epochs: 3\n")
    with pytest.raises(ConfigError) as err:
        load_profile(path)
    assert _one_line(err) == f"{path}: line 5, column 5: duplicate key 'epochs' (first at line 4)"
    path = _profile(tmp_path, "extends: smoke\nbase:\n  train: {epochs: 1}\nseeds: [0]\nbase:\n  train: {epochs: 3}\n")
    with pytest.raises(ConfigError, match=r": line 5, column 1: duplicate key 'base' \(first at line 2\)$"):
        load_profile(path)
    with pytest.raises(ConfigError, match=r"^override 'train=\{epochs: 1, epochs: 3\}': .*duplicate key 'epochs'"):
        parse_assignment("train={epochs: 1, epochs: 3}")


ALIAS_BOMB = """\
extends: smoke
base:
  loss:
    kwargs:
      a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
      b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
      c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
      d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
      e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
      f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
      g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
      h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
      i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_an_alias_bomb_is_refused_not_expanded(tmp_path):
    """Probe: a 581-byte YAML alias bomb in `base.loss.kwargs` exhausted memory."""
    path = _profile(tmp_path, ALIAS_BOMB)
    assert len(ALIAS_BOMB.encode()) < 600
    with pytest.raises(ConfigError) as err:
        load_profile(path)
    assert _one_line(err).startswith(f"{path}: line 10, column 10: its aliases (*name) expand to more than "
                                     "100000 values; write the repeated settings out, or share fewer")
    recursive = _profile(tmp_path, "extends: smoke\nbase: &loop\n  loss:\n    kwargs: {x: *loop}\n", "loop")
    with pytest.raises(ConfigError, match=r"line 4, column \d+: the alias \*loop refers to a value that holds it"):
        load_profile(recursive)
    assert load_profile("quick").name == "quick"  # its own aliases (shared recipes) stay allowed


def test_an_extends_cycle_is_refused(tmp_path):
    """Probe: an `extends` cycle gave a RecursionError."""
    a = _profile(tmp_path, f"extends: {tmp_path / 'b2.yaml'}\n", "a2")
    b = _profile(tmp_path, f"extends: {a}\n", "b2")
    with pytest.raises(ConfigError) as err:
        load_profile(a)
    assert _one_line(err) == f"{a}: extends makes a cycle: {a} -> {b} -> {a}"
    itself = _profile(tmp_path, f"extends: {tmp_path / 'itself.yaml'}\n", "itself")
    with pytest.raises(ConfigError, match="extends makes a cycle"):
        load_profile(itself)


@pytest.mark.parametrize("value", ["5", "[smoke]", "{a: 1}", "true"])
def test_an_extends_that_is_not_a_name_is_refused(tmp_path, value):
    """Probe: `extends: 5` gave a TypeError."""
    path = _profile(tmp_path, f"extends: {value}\n")
    with pytest.raises(ConfigError) as err:
        load_profile(path)
    assert _one_line(err).startswith(f"{path}: extends: expected a profile name or the path of a .yaml file, got ")


def test_a_300_character_profile_name_is_refused():
    """Probe: a 300-character profile name gave a traceback (File name too long)."""
    with pytest.raises(ConfigError) as err:
        load_profile("a" * 300)
    assert _one_line(err) == "profile name 'aaaaaaaaaaaaaaaaaaaa...' is 300 characters long; at most 100"


def test_a_folder_named_like_a_profile_is_refused(tmp_path):
    """Probe: a folder named `x.yaml` gave a traceback (IsADirectoryError)."""
    folder = tmp_path / "x.yaml"
    folder.mkdir()
    with pytest.raises(ConfigError) as err:
        load_profile(folder)
    assert _one_line(err) == f"{folder} is a folder, not a parameter file"


def test_a_profile_that_is_not_utf8_is_refused(tmp_path):
    """Probe: a profile holding byte 0xff gave a traceback (UnicodeDecodeError)."""
    path = _profile(tmp_path, b"extends: smoke\n\xff\n")
    with pytest.raises(ConfigError) as err:
        load_profile(path)
    assert _one_line(err) == f"{path} is not UTF-8 text (byte 0xff at offset 15)"


def test_an_override_that_is_not_yaml_is_one_line(capsys):
    """Probe: `--set 'optim.lr=[1'` gave the YAML parser's traceback."""
    with pytest.raises(ConfigError) as err:
        parse_assignment("optim.lr=[1")
    assert _one_line(err) == ("override 'optim.lr=[1': the value is not valid YAML: line 1, column 3: "
                              "expected ',' or ']', but got '<stream end>'")
    assert "override 'optim.lr=[1'" in _cli_one_line(capsys, "optim.lr=[1")


def test_a_yaml_syntax_error_in_a_profile_is_one_line(tmp_path):
    path = _profile(tmp_path, "extends: smoke\nbase: [1\n")
    with pytest.raises(ConfigError) as err:
        load_profile(path)
    assert _one_line(err).startswith(f"{path}: line 3, column 1: ")
