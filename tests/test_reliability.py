"""Issue 17's probes of the trainer and its cache, one test per probe: bad values fail before
anything is written, and no damaged or untrained result is ever served.

(The data probes are in test_data_reliability.py, the script and ledger probes in test_scripts.py
and test_ledger.py.)"""
import os
import pickle
import time
from pathlib import Path

import pytest
import torch

from lib import train
from lib.config import ConfigError, load_profile
from lib.trainer import Trainer

SMOKE_FAST = ["--set", "train.steps_per_epoch=2", "--set", "eval.oneshot=false"]


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("METRIC_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


def _cli_fails(capsys, runs, *sets: str) -> str:
    args = ["smoke", *SMOKE_FAST]
    for s in sets:
        args += ["--set", s]
    assert train.main(args) == 2
    assert not runs.exists() or not any(runs.glob("*/config.json")), "a refused run left a folder behind"
    return capsys.readouterr().err


@pytest.mark.parametrize("value", [0, -1])
def test_zero_or_negative_epochs_are_refused_not_cached_untrained(capsys, runs, value):
    assert "train.epochs" in _cli_fails(capsys, runs, f"train.epochs={value}")


@pytest.mark.parametrize("setting, key", [
    (["train.batch_size=0"], "train.batch_size"),
    (["sampler.name=shuffle", "train.batch_size=1"], "train.batch_size"),
    (["eval.every=0"], "eval.every"),
    (["data.val_fraction=2"], "data.val_fraction"),
    (["optim.lr=-1"], "optim.lr"),
    (["data.name=mnist"], "data.name"),
])
def test_bad_values_give_one_clear_error_and_leave_no_folder(capsys, runs, setting, key):
    err = _cli_fails(capsys, runs, *setting)
    assert err.startswith("error: ") and key in err and "Traceback" not in err


def test_embedding_dim_zero_is_refused_rather_than_meaning_no_head(capsys, runs):
    assert "use null for no head" in _cli_fails(capsys, runs, "model.embedding_dim=0")


def test_m_larger_than_the_classes_is_refused_not_sampled_with_replacement(runs):
    cfg = load_profile("smoke").run_config("omniglot", eval__oneshot=False).with_overrides(
        {"sampler.m": 25, "train.batch_size": 100})
    with pytest.raises(ConfigError, match="sampler.m is 25 but the median training class .* has 20 images"):
        train.run(cfg, progress=False)
    assert not runs.exists() or not any(runs.iterdir())


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch planted-checkpoint-ran",))


def test_a_planted_checkpoint_cannot_run_code(runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_profile("smoke").run_config("omniglot", eval__oneshot=False, train__steps_per_epoch=2)
    run_dir = train.run_dir_for(cfg)
    run_dir.path.mkdir(parents=True)
    with open(run_dir.file("checkpoint.pt"), "wb") as f:
        pickle.dump({"epoch": 0, "evil": _Payload()}, f)
    assert run_dir.load_checkpoint() is None
    assert not (tmp_path / "planted-checkpoint-ran").exists()
    result = train.run(cfg, progress=False)  # trains from the start instead
    assert list(result.history.epoch) == [1, 2]
    assert torch.load(run_dir.file("checkpoint.pt"), weights_only=True)["epoch"] == 1


def test_an_unreadable_metrics_file_means_recompute(runs):
    cfg = load_profile("smoke").run_config("omniglot", eval__oneshot=False, train__steps_per_epoch=2)
    first = train.run(cfg, progress=False)
    (first.path / "metrics.json").write_text('{"recall@1": 0.5, trunc')
    again = train.run(cfg, progress=False)
    assert again.metrics["recall@1"] == pytest.approx(first.metrics["recall@1"])
    assert (first.path / "complete.json").exists()


def test_the_checkpoint_of_another_run_copied_into_an_unfinished_one_is_not_adopted(runs, capsys):
    """Probe: another run's checkpoint (epochs=3, lr=1e-3) copied into an unfinished run (epochs=2,
    lr=7e-4) was adopted: cached with the donor's recall@1 and 3 epochs of history."""
    base = load_profile("smoke").run_config("omniglot", eval__oneshot=False, train__steps_per_epoch=2)
    donor = train.run(base.with_overrides({"train.epochs": 3, "optim.lr": 1e-3}), progress=False)
    cfg = base.with_overrides({"train.epochs": 2, "optim.lr": 7e-4})
    run_dir = train.run_dir_for(cfg)
    run_dir.path.mkdir(parents=True)
    (run_dir.file("checkpoint.pt")).write_bytes((donor.path / "checkpoint.pt").read_bytes())
    assert run_dir.load_checkpoint() is None
    assert f"belongs to run {donor.key}" in capsys.readouterr().err
    result = train.run(cfg, progress=False)
    assert list(result.history.epoch) == [1, 2] and result.metrics["key"] == run_dir.key


def test_a_run_folder_with_empty_metrics_and_history_is_not_served_as_complete(runs, capsys):
    """Probe: a run folder holding `{}` metrics and `[]` history was served as complete."""
    cfg = load_profile("smoke").run_config("omniglot", eval__oneshot=False, train__steps_per_epoch=2)
    first = train.run(cfg, progress=False)
    for name, empty in (("metrics.json", "{}"), ("history.json", "[]")):
        trained = train.run(cfg, progress=False)
        (trained.path / name).write_text(empty)
        assert train.run_dir_for(cfg).load_result() is None
        assert "recomputing it" in capsys.readouterr().err
    again = train.run(cfg, progress=False)
    assert len(again.history) == 2 and again.metrics["recall@1"] == pytest.approx(first.metrics["recall@1"])


def test_missing_oneshot_runs_are_found_before_training(runs, tmp_path):
    shared = Path(os.environ["METRIC_DATA"]) / "omniglot"
    root = tmp_path / "data"
    (root / "omniglot").mkdir(parents=True)
    for name in ("images_background.npz", "images_evaluation.npz", "alphabets.csv"):
        (root / "omniglot" / name).symlink_to(shared / name)
    cfg = load_profile("smoke").run_config("omniglot").with_overrides({"data.root": str(root)})
    assert cfg.eval.oneshot
    started = time.perf_counter()
    with pytest.raises(FileNotFoundError, match="all_runs.zip"):
        Trainer(cfg, progress=False)
    assert time.perf_counter() - started < 30
    with pytest.raises(FileNotFoundError):
        train.run(cfg, progress=False)
    assert not runs.exists() or not any(runs.glob("*/config.json"))


def test_stale_temporary_files_are_removed_when_a_run_starts(runs):
    cfg = load_profile("smoke").run_config("omniglot", eval__oneshot=False, train__steps_per_epoch=2)
    run_dir = train.run_dir_for(cfg)
    run_dir.path.mkdir(parents=True)
    orphan = run_dir.file(".metrics.json.abc123.tmp")
    orphan.write_text("{half")
    old = time.time() - 3600
    os.utime(orphan, (old, old))
    train.run(cfg, progress=False)
    assert not orphan.exists()


@pytest.mark.slow
def test_a_run_held_by_another_process_is_waited_for_then_read_from_the_cache(runs, monkeypatch):
    """Two lanes of run_all.sh may want the same run (chapter 4's single learner is chapter 3's
    run): the second waits on the run's lock, then serves what the first cached; it trains nothing."""
    import subprocess
    import sys

    import pandas as pd

    from lib.cache import RunDir

    cfg = load_profile("smoke").run_config("omniglot", eval__oneshot=False, train__steps_per_epoch=2)
    run_dir = train.run_dir_for(cfg)
    runs.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); "
         "print('held', flush=True); time.sleep(2)", str(runs / f".{run_dir.key}.lock")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    seen = iter([None, ({"recall@1": 0.25}, pd.DataFrame())])  # not yet cached; cached once the lock is ours
    monkeypatch.setattr(RunDir, "load_result", lambda self: next(seen))
    monkeypatch.setattr(train, "_train", lambda *a, **k: pytest.fail("trained a run another process had cached"))
    start = time.perf_counter()
    result = train.run(cfg, progress=False)
    assert time.perf_counter() - start > 1.0, "did not wait for the process holding the run"
    assert result.metrics == {"recall@1": 0.25}
    holder.wait(timeout=10)
