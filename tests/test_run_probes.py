"""Reliability 2: no wrong number is ever served (one test per probe): a batch larger than the data
is refused, not cut; a killed writer's temporary files go; written files get the umask's mode.

(The data fingerprint and archive probes are in test_data_reliability.py, the configuration
probes in test_config_probes.py, the script probes in test_scripts.py.)"""
from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from lib import cache, train
from lib.config import ConfigError, load_profile

SMOKE_FAST = ["--set", "train.steps_per_epoch=2", "--set", "eval.oneshot=false"]


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("METRIC_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    try:
        yield 0o027
    finally:
        os.umask(old)


def _smoke(**dotted):
    return load_profile("smoke").run_config("omniglot", eval__oneshot=False, train__steps_per_epoch=2, **dotted)


@pytest.mark.parametrize("sampler, words", [
    ("m_per_class", r"1000000 is more than one m_per_class batch can hold on the training split of omniglot "
                    r"\(\d+ classes x sampler\.m 4 = \d+ images\); set train\.batch_size <= \d+"),
    ("shuffle", r"1000000 is more than the \d+ images of the training split of omniglot; "
                r"set train\.batch_size <= \d+"),
])
def test_a_batch_larger_than_the_data_is_refused_not_silently_cut(capsys, runs, sampler, words):
    """Probe: `--set train.batch_size=1000000` was silently cut to 240 under a new key, and
    `train_images_seen` said 4,000,000 where 960 were seen."""
    args = ["smoke", *SMOKE_FAST, "--set", "train.batch_size=1000000", "--set", f"sampler.name={sampler}"]
    assert train.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("error: train.batch_size: ")
    import re

    assert re.search(words, err), err
    assert not runs.exists() or not any(runs.glob("*/config.json")), "a refused run left a folder behind"
    with pytest.raises(ConfigError, match="train.batch_size: 1000000 is more than"):
        train.run(_smoke(**{"train__batch_size": 1_000_000, "sampler__name": sampler}), progress=False)


def test_temporary_files_of_a_killed_writer_are_swept_under_the_run_lock(runs):
    """Probe: temporary files left by a kill inside the 60-second window were never removed."""
    cfg = _smoke()
    run_dir = train.run_dir_for(cfg)
    run_dir.path.mkdir(parents=True)
    orphan = run_dir.file(".metrics.json.fresh1.tmp")
    orphan.write_text("{half")  # just written: younger than any stale age
    with run_dir.lock():
        run_dir.start()
    assert not orphan.exists(), "a temporary file of a killed writer survived the run's start under its lock"


@pytest.mark.slow
def test_old_temporary_files_in_the_data_cache_are_swept(tmp_path, monkeypatch, shared_data):
    """Probe: old temporary files in runs/data_cache were never removed."""
    from lib.data import load_dataset

    cache_dir = tmp_path / "data_cache"
    cache_dir.mkdir()
    monkeypatch.setenv("METRIC_CACHE", str(cache_dir))
    old, young = cache_dir / ".omniglot-background-x.npy.k1.tmp", cache_dir / ".source_sha256.json.k2.tmp"
    for path in (old, young):
        path.write_bytes(b"half")
    hour_ago = time.time() - 3600
    os.utime(old, (hour_ago, hour_ago))
    load_dataset("omniglot", root=shared_data, image_size=12)
    assert not old.exists(), "an hour-old temporary file was left in the data cache"
    assert young.exists(), "a temporary file another process may still be writing was removed"


def test_files_written_atomically_get_the_umasks_mode(tmp_path, umask_027):
    """Probe: files written through mkstemp ended up mode 0600, figures/*/index.html included."""
    from lib.report import write_figure_index

    want = 0o666 & ~umask_027
    path = tmp_path / "a" / "result.json"
    cache.write_json(path, {"x": 1})
    assert stat.S_IMODE(path.stat().st_mode) == want
    (tmp_path / "notebooks").mkdir()
    index = write_figure_index("smoke", tmp_path)
    assert stat.S_IMODE(index.stat().st_mode) == want


def test_data_cache_files_and_extracted_folders_get_the_umasks_mode(tmp_path, monkeypatch, umask_027):
    import io
    import zipfile

    from lib.data import array_cache, checksums, extract

    want = 0o666 & ~umask_027
    monkeypatch.setenv("METRIC_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    import numpy as np

    array_cache._cached("probe", {"k": 1}, 3, lambda: np.zeros((3, 2), dtype=np.uint8))
    written = [p for p in (tmp_path / "cache").iterdir()]
    assert written and all(stat.S_IMODE(p.stat().st_mode) == want for p in written), \
        {p.name: oct(p.stat().st_mode) for p in written}
    source = tmp_path / "file.bin"
    source.write_bytes(b"x" * (1 << 17))  # large enough to be recorded in the store
    monkeypatch.setattr(checksums, "_known", {})
    checksums.source_sha256([source])
    assert stat.S_IMODE((tmp_path / "cache" / "source_sha256.json").stat().st_mode) == want

    blob = io.BytesIO()
    with zipfile.ZipFile(blob, "w") as z:
        z.writestr("set/a.txt", "a")
    archive = tmp_path / "set.zip"
    archive.write_bytes(blob.getvalue())
    out = extract(archive, tmp_path / "out" / "set")
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~umask_027


def test_an_unwritable_run_cache_is_one_line_and_cached_runs_are_still_served(capsys, tmp_path, monkeypatch):
    """Probe: a read-only or full METRIC_RUNS gave an OSError traceback (cached runs were served, which is right)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("METRIC_RUNS", str(blocker / "runs"))  # mkdir fails: ENOTDIR, as EROFS or ENOSPC would
    assert train.main(["smoke", *SMOKE_FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert str(blocker / "runs") in err
