"""Issue 17: impossible values are refused at load / override time with one ConfigError naming
the key; issue 16: the pydantic schema keeps the old dict (cache keys), the chapter sections are
typed, and lib.config and lib.components import neither the other (lib.train checks a run's
components)."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

import lib.train  # noqa: F401  adds the checks of components, backbone, augmentation and data options
from lib import config as config_lib
from lib.config import ConfigError, load_profile

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def smoke_cfg():
    return load_profile("smoke").run_config("omniglot")


# (dotted key, rejected value); each message must name the key
REJECTED = [
    ("train.epochs", 0), ("train.epochs", -1),
    ("train.batch_size", 0), ("train.batch_size", 1),
    ("train.steps_per_epoch", 0),
    ("eval.every", 0),
    ("eval.batch_size", 0),
    ("data.val_fraction", 1.0), ("data.val_fraction", -0.1),
    ("data.max_train_images", 1), ("data.max_test_images", 0),
    ("optim.lr", 0.0), ("optim.lr", -1e-3),
    ("optim.weight_decay", -1e-4),
    ("optim.grad_clip", 0.0),
    ("model.embedding_dim", -1),
    ("sampler.m", 0),
    ("train.diagnostics_every", 0),
    ("divide.clusters", 0),
    ("divide.recluster_every", 0),
    ("divide.finetune_epochs", -1),
    ("train.threads", 0),
    ("train.num_workers", -1),
    ("eval.contraction_threshold", -0.01),
    ("sampler.name", "random"),
    ("train.device", "gpu"),
    ("data.name", "mnist"),
    # no silent coercion
    ("train.epochs", "3"), ("train.epochs", 1.5), ("train.epochs", True), ("optim.lr", "1e-3"),
]


@pytest.mark.parametrize("key, value", REJECTED, ids=[f"{k}={v!r}" for k, v in REJECTED])
def test_impossible_value_is_refused_naming_the_key(smoke_cfg, key, value):
    with pytest.raises(ConfigError, match=rf"^{key.replace('.', '[.]')}: "):
        smoke_cfg.with_overrides({key: value})


@pytest.mark.parametrize("key, value", REJECTED[:4], ids=[f"{k}={v!r}" for k, v in REJECTED[:4]])
def test_impossible_value_in_a_profile_fails_at_load(key, value):
    with pytest.raises(ConfigError, match=rf"base: {key.replace('.', '[.]')}: "):
        load_profile("smoke", {f"base.{key}": value})


def test_messages_say_what_is_valid(smoke_cfg):
    with pytest.raises(ConfigError, match=r"train.epochs: must be >= 1, got 0"):
        smoke_cfg.with_overrides({"train.epochs": 0})
    with pytest.raises(ConfigError, match=r"train.epochs: expected an integer, got '3' \(str\)"):
        smoke_cfg.with_overrides({"train.epochs": "3"})
    with pytest.raises(ConfigError, match=r"data.name: unknown value 'mnist'.*valid choices: omniglot, .*cub200"):
        smoke_cfg.with_overrides({"data.name": "mnist"})
    with pytest.raises(ConfigError, match=r"sampler.name: .*valid choices: m_per_class, shuffle"):
        smoke_cfg.with_overrides({"sampler.name": "random"})
    with pytest.raises(ConfigError, match=r"train.device: .*valid choices: auto, cpu, cuda"):
        smoke_cfg.with_overrides({"train.device": "gpu"})


def test_zero_embedding_dim_says_use_null(smoke_cfg):
    with pytest.raises(ConfigError, match=r"model.embedding_dim: .*use null for no head"):
        smoke_cfg.with_overrides({"model.embedding_dim": 0})
    assert smoke_cfg.with_overrides({"model.embedding_dim": None}).model.embedding_dim is None


def test_numbers_accept_integers_and_nulls_stay_allowed(smoke_cfg):
    cfg = smoke_cfg.with_overrides({"optim.lr": 1, "train.steps_per_epoch": None, "optim.grad_clip": None,
                                    "train.threads": None, "data.max_test_images": None, "train.epochs": 1})
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert cfg.to_dict()["optim"]["lr"] == 1.0


def test_batch_size_must_be_a_multiple_of_m(smoke_cfg):
    with pytest.raises(ConfigError, match=r"train.batch_size: must be a multiple of sampler.m \(4\).*got 30"):
        smoke_cfg.with_overrides({"train.batch_size": 30})
    with pytest.raises(ConfigError, match=r"train.batch_size: must be a multiple of sampler.m"):
        load_profile("smoke", {"datasets.beluga.train.batch_size": 33})
    assert smoke_cfg.with_overrides({"train.batch_size": 30, "sampler.name": "shuffle"}).train.batch_size == 30


def test_dataset_names_are_the_registrys():
    from lib import data

    assert set(config_lib.DATASET_NAMES) == {*data.DATASETS, "omniglot_oneshot"}
    with pytest.raises(ConfigError, match=r"datasets: unknown key 'mnist'.*valid choices: omniglot"):
        load_profile("quick", {"datasets.mnist": {}})


def test_sampler_names_are_the_components():
    from lib import components

    assert config_lib.SAMPLER_NAMES == components.SAMPLERS


@pytest.mark.parametrize("name", ["../params/smoke", "params/../smoke", "smoke quick", ""])
def test_profile_name_must_be_a_plain_name(name):
    with pytest.raises(ConfigError, match=r"profile name .* must match \[A-Za-z0-9_\]\+"):
        load_profile(name)


def test_profile_yaml_path_is_allowed_if_its_stem_is_a_name(tmp_path):
    assert load_profile(config_lib.PARAMS_DIR / "smoke.yaml").name == "smoke"
    bad = tmp_path / "my-profile.yaml"
    bad.write_text("extends: smoke\n")
    with pytest.raises(ConfigError, match=r"'my-profile' .* must match"):
        load_profile(bad)


def test_chapter_typo_names_the_dotted_key_and_suggests():
    with pytest.raises(ConfigError, match=r"unknown key 'chapters\.01_beluga_collapse\.tsne_point' "
                                          r"\(did you mean 'tsne_points'\?\); valid keys here: .*max_fix_steps"):
        load_profile("quick", {"chapters.01_beluga_collapse.tsne_point": 300})
    with pytest.raises(ConfigError, match=r"chapters\.02_mining\.margin: expected a number, got 'big'"):
        load_profile("quick", {"chapters.02_mining.margin": "big"})
    with pytest.raises(ConfigError, match=r"unknown key 'chapters\.01_beluga_colapse' "
                                          r"\(did you mean '01_beluga_collapse'\?\)"):
        load_profile("quick", {"chapters.01_beluga_colapse.tsne_points": 3})


def test_chapter_run_overlays_are_checked():
    with pytest.raises(ConfigError, match=r"chapters\.01_beluga_collapse\.blog: unknown key 'optim\.lrr' "
                                          r"\(did you mean 'lr'\?\)"):
        load_profile("quick", {"chapters.01_beluga_collapse.blog.optim.lrr": 0.1})
    with pytest.raises(ConfigError, match=r"chapters\.03_distance_weighted\.methods\.bad.*unknown loss 'Nope'"):
        load_profile("quick", {"chapters.03_distance_weighted.methods.bad": {"loss": {"name": "Nope"}}})
    with pytest.raises(ConfigError, match=r"chapters\.01_beluga_collapse\.only_ablations: 'lr 1e-5' not in ablations"):
        load_profile("smoke", {"chapters.01_beluga_collapse.only_ablations": ["lr 1e-5"]})
    with pytest.raises(ConfigError, match=r"chapters\.05_reidentification\.divided: 'nope' not in"):
        load_profile("quick", {"chapters.05_reidentification.divided": "nope"})
    with pytest.raises(ConfigError, match=r"chapters\.01_beluga_collapse\.pretrained\.ablations: 'lr 9' not in ablations"):
        load_profile("quick", {"chapters.01_beluga_collapse.pretrained.ablations": ["lr 9"]})
    with pytest.raises(ConfigError, match=r"chapters\.03_distance_weighted\.pretrained\.methods: 'nope' not in methods"):
        load_profile("quick", {"chapters.03_distance_weighted.pretrained.methods": ["nope"]})
    with pytest.raises(ConfigError, match=r"pretrained\.whole_network: 'margin loss, semi-hard sampling' not in "
                                          r"pretrained\.methods"):
        load_profile("quick", {"chapters.03_distance_weighted.pretrained.whole_network": "margin loss, semi-hard sampling"})


def test_chapter_is_a_plain_dict_of_what_the_profile_gives():
    profile = load_profile("smoke")
    s = profile.chapter("01_beluga_collapse")
    assert type(s) is dict and s["only_ablations"] == ["lr 1e-3", "no miner"] and s["tsne_points"] == 150
    assert "only_ablations" not in load_profile("paper").chapter("01_beluga_collapse")  # chapters .get() it
    s["margins"].append(99)
    assert 99 not in profile.chapter("01_beluga_collapse")["margins"]
    assert profile.chapter("05_reidentification")["catalogue_photos"] == [1, None]
    assert profile.chapter("07_claims_ledger") == {"tables_from": "smoke"}


# The dict the dataclass code gave for quick's omniglot run: its hash is the run's cache key.
QUICK_OMNIGLOT_TOP = ["data", "model", "loss", "miner", "distance", "sampler", "optim", "train", "eval", "divide"]
QUICK_OMNIGLOT_TRAIN = {"epochs": 3, "batch_size": 128, "steps_per_epoch": None, "seed": 0, "device": "auto",
                        "precision": "fp32", "channels_last": True, "compile": False, "num_workers": 0, "threads": None,
                        "diagnostics_every": 4}
QUICK_OMNIGLOT_SOME = {
    "data": {"name": "omniglot", "root": None, "image_size": 28, "options": {"background": "full"},
             "val_fraction": 0.0, "augment": "omniglot", "max_train_images": None, "max_test_images": 4000},
    "loss": {"name": "TripletMarginLoss", "kwargs": {"margin": 0.1}, "lr": None},
    "optim": {"name": "Adam", "lr": 0.001, "weight_decay": 0.0, "kwargs": {}, "scheduler": None,
              "scheduler_kwargs": {}, "grad_clip": None},
    "divide": {"clusters": 1, "recluster_every": 2, "finetune_epochs": 0, "features": "embedding",
               "kmeans_restarts": 5, "kmeans_iterations": 20},
}


def test_the_key_dict_is_the_old_dataclass_dict():
    d = load_profile("quick").run_config("omniglot").key_dict()
    assert list(d) == QUICK_OMNIGLOT_TOP
    assert list(d["train"].items()) == list(QUICK_OMNIGLOT_TRAIN.items())
    for section, expected in QUICK_OMNIGLOT_SOME.items():
        assert list(d[section].items()) == list(expected.items()), section
    assert type(d["optim"]["weight_decay"]) is float and type(d["data"]["val_fraction"]) is float


def test_configs_are_read_only_and_overrides_copy(smoke_cfg):
    with pytest.raises(Exception):
        smoke_cfg.train.epochs = 9
    other = smoke_cfg.with_overrides({"train.epochs": 9})
    assert (other.train.epochs, smoke_cfg.train.epochs) == (9, 2)


def test_config_error_is_one_class():
    from lib.errors import ConfigError as Base

    assert ConfigError is Base


def _imports(path: Path) -> set[str]:
    """Modules imported by a file, leaving out `if TYPE_CHECKING:` blocks."""
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for child in node.body for n in ast.walk(child)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


@pytest.mark.slow
def test_components_does_not_import_config():
    assert not {m for m in _imports(REPO / "lib" / "components.py") if m in ("lib.config", "lib.config.ConfigError")}
    assert "lib.errors" in _imports(REPO / "lib" / "components.py")
    assert not {m for m in _imports(REPO / "lib" / "errors.py") if m.startswith("lib")}
    # and at run time: lib.components imports with lib.config blocked
    code = "import sys; sys.modules['lib.config'] = None; import lib.components; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_the_chapters_that_read_other_chapters_are_the_readers():
    """run_all.sh runs these after the chapters that train, whatever the lanes."""
    for name in ("smoke", "quick", "full"):
        assert load_profile(name).readers() == ["05_reidentification", "07_claims_ledger"], name
