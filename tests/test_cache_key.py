"""The run cache's key: what determines the numbers changes it, a refactor does not."""
import shutil
import subprocess
import sys

import pytest

from lib import cache
from lib.config import KEY_NEUTRAL, load_profile

NOT_ON_THE_NUMBERS_PATH = {"cache", "results", "errors", "paths"}  # keying, reading results, exception types, where files live


@pytest.mark.slow
def test_every_module_on_a_runs_path_has_a_behaviour_version():
    # A fresh interpreter: lib.train imports every module a run uses, and nothing else.
    probe = "import sys, lib.train; print(' '.join(n.split('.')[1] for n in sys.modules if n.startswith('lib.')))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         cwd=cache.REPO_ROOT)
    on_path = set(out.stdout.split())
    assert {"trainer", "scoring", "data"} <= on_path
    missing = on_path - NOT_ON_THE_NUMBERS_PATH - set(cache.behaviour())
    assert not missing, f"add {sorted(missing)} to lib/behaviour.json (python -m lib.cache record after adding)"


@pytest.mark.parametrize("module", sorted(cache.behaviour()))
def test_code_changes_are_recorded_with_or_without_a_version_bump(module):
    recorded = cache.behaviour()[module]["code"]
    assert cache.code_fingerprint(module) == recorded, (
        f"lib/{module}'s code changed since lib/behaviour.json was written. If the change can alter a "
        f"number, run `python -m lib.cache record --bump {module}` (cached runs are recomputed); if it is "
        f"a pure refactor (rename, move, comment), run `python -m lib.cache record` (they are kept).")


@pytest.fixture
def lib_copy(tmp_path, monkeypatch):
    copy = tmp_path / "lib"
    shutil.copytree(cache.LIB_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(cache, "LIB_DIR", copy)
    monkeypatch.setattr(cache, "BEHAVIOUR_FILE", copy / "behaviour.json")
    return copy


def _key() -> str:
    return cache.run_key(load_profile("smoke").run_config("omniglot").to_dict(), "data-fingerprint")


def test_a_rename_or_move_keeps_the_key_and_a_behaviour_change_alters_it(lib_copy):
    before = _key()
    # A pure refactor: rename a helper, and move a function to another module.
    batching = lib_copy / "batching.py"
    batching.write_text(batching.read_text().replace("_BatchReader", "_WholeBatchReader"))
    diagnostics = lib_copy / "diagnostics.py"
    text = diagnostics.read_text()
    moved = text[text.index("def count_tuples"):]
    diagnostics.write_text(text.replace(moved, ""))
    (lib_copy / "trainer.py").write_text((lib_copy / "trainer.py").read_text() + "\n\n" + moved)
    changed = {m for m in cache.behaviour() if cache.code_fingerprint(m) != cache.behaviour()[m]["code"]}
    assert changed == {"batching", "diagnostics", "trainer"}  # the guard test above would ask for a decision
    cache.record_behaviour(bump=[])  # ... and a refactor is recorded without a bump
    assert _key() == before
    # A behaviour change: the margin of the miners' fallback, say; recorded with a bump.
    miners = lib_copy / "miners.py"
    miners.write_text(miners.read_text() + "\nFALLBACK_SCALE = 2.0\n")
    cache.record_behaviour(bump=["miners"])
    assert _key() != before


def test_the_key_follows_config_precision_data_and_behaviour_not_provenance(monkeypatch):
    """Identity is the config (its effective precision included), the data and the behaviour
    versions; the library versions are provenance, recorded beside the result, not hashed."""
    cfg = load_profile("smoke").run_config("omniglot")
    key = cache.run_key(cfg.to_dict(), "data-a")
    assert cache.run_key(cfg.with_overrides({"optim.lr": 0.01}).to_dict(), "data-a") != key
    assert cache.run_key(cfg.with_overrides({"train.precision": "bf16"}).to_dict(), "data-a") != key
    assert cache.run_key(cfg.to_dict(), "data-b") != key
    assert cache.run_key(cfg.to_dict(), "data-a", {**cache.behaviour_versions(), "train": 99}) != key
    other = {**cache.library_versions(), "torch": "0.0"}
    monkeypatch.setattr(cache, "library_versions", lambda: other)
    assert cache.run_key(cfg.to_dict(), "data-a") == key


@pytest.mark.slow
def test_effective_precision_is_what_the_trainer_computes_in(tmp_path, monkeypatch):
    """`train.precision` is not a wish that a device may ignore: bf16 autocasts on the CPU too, and
    fp32 never does, so the precision a key names is the one its numbers came from."""
    import torch

    from lib.trainer import Trainer

    monkeypatch.setenv("METRIC_RUNS", str(tmp_path))
    cfg = load_profile("smoke").run_config("omniglot").with_overrides(
        {"train.device": "cpu", "train.epochs": 1, "train.steps_per_epoch": 1})
    with Trainer(cfg.with_overrides({"train.precision": "bf16"}), progress=False).autocast():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with Trainer(cfg, progress=False).autocast():
        assert not torch.is_autocast_enabled("cpu")


@pytest.mark.parametrize("path", sorted(KEY_NEUTRAL))
def test_a_field_added_at_its_neutral_value_keeps_every_key_and_used_it_changes_the_key(path):
    """A run field added later (lib.config.KEY_NEUTRAL) defaults to the value meaning "as before",
    which the key leaves out, so the runs cached before it keep their keys; a run that sets it
    to anything else gets a new key."""
    from lib import train

    cfg = load_profile("smoke").run_config("omniglot")
    section, leaf = path.rsplit(".", 1)
    node = cfg
    for part in section.split("."):
        node = getattr(node, part)
    assert getattr(node, leaf) == KEY_NEUTRAL[path], f"{path}: its default is not its neutral value"
    assert leaf not in cfg.key_dict()[section.split(".")[-1]] and leaf in cfg.to_dict()[section.split(".")[-1]]
    before = train.run_dir_for(cfg)
    assert before.key == cache.run_key(cfg.key_dict(), before.data_fingerprint)
    assert before.config == cfg.to_dict(), "config.json must record the whole configuration"
    used = cfg.with_overrides({path: KEY_NEUTRAL[path] + 1})
    assert train.run_dir_for(used).key != before.key


def test_memoized_computes_once_per_input_and_recomputes_a_damaged_file(tmp_path, monkeypatch):
    import numpy as np

    monkeypatch.setenv("METRIC_RUNS", str(tmp_path))
    calls = []

    def compute(x):
        calls.append(1)
        return {"twice": 2 * x}

    x = np.arange(6.0)
    first = cache.memoized("double", lambda: compute(x), inputs={"k": 1}, arrays=(x,), modules=("geometry",))
    again = cache.memoized("double", lambda: compute(x), inputs={"k": 1}, arrays=(x,), modules=("geometry",))
    assert len(calls) == 1 and np.array_equal(first["twice"], again["twice"])
    cache.memoized("double", lambda: compute(x + 1), inputs={"k": 1}, arrays=(x + 1,))  # other array: computed
    cache.memoized("double", lambda: compute(x), inputs={"k": 2}, arrays=(x,))  # other inputs: computed
    assert len(calls) == 3
    for stored in (tmp_path / "derived").glob("double-*.npz"):
        stored.write_bytes(b"not an npz")
    damaged = cache.memoized("double", lambda: compute(x), inputs={"k": 1}, arrays=(x,), modules=("geometry",))
    assert len(calls) == 4 and np.array_equal(damaged["twice"], 2 * x)
