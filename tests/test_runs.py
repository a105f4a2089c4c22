"""The runs as a plan (lib.runs): planned through the chapters, trained through Ray, kept in a
results store whose every row proves it belongs to its key; chapters read, never train."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lib import derived, train
from lib.runs import __main__ as runs_cli
from lib.runs.plan import NotTrained
from lib.runs.store import Store, StoreError, row_from_run_dir, verify
from lib.study import Chapter

FOUR_SEEDS = "seeds=[0,1,2,3]"
KEEPS = ["--set", "results_store=true"]  # smoke keeps no results store unless asked


@pytest.fixture
def folders(tmp_path, monkeypatch):
    monkeypatch.setenv("METRIC_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("METRIC_RESULTS", str(tmp_path / "results"))
    return tmp_path


@pytest.fixture(scope="module")
def trained_store(tmp_path_factory, shared_data):
    """A smoke plan of 4 runs (chapter 0 over 4 seeds), trained through a local Ray instance."""
    root = tmp_path_factory.mktemp("ray")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("METRIC_RUNS", str(root / "runs"))
        mp.setenv("METRIC_RESULTS", str(root / "results"))
        code = runs_cli.main(["train", "--profile", "smoke", "--chapter", "00_quickstart", "--set", FOUR_SEEDS,
                              "--workers", "2", *KEEPS])
        import ray

        ray.shutdown()
    assert code == 0
    return root


@pytest.mark.slow
def test_ray_trains_a_smoke_plan_of_four_runs_into_the_store(trained_store, monkeypatch):
    monkeypatch.setenv("METRIC_RESULTS", str(trained_store / "results"))
    store = Store("smoke")
    assert len(store.rows) == 4
    runs = [store.get(k) for k in store.rows]
    assert sorted(r.config.train.seed for r in runs) == [0, 1, 2, 3]
    for run in runs:
        assert run.metrics["key"] == run.key and len(run.history) == run.config.train.epochs
        assert run.provenance["device"].startswith("cpu") and run.provenance["libraries"]["torch"]
        assert run.provenance["threads"] == 1


@pytest.mark.slow
def test_a_chapter_renders_from_the_store_with_an_empty_run_cache_and_never_trains(trained_store, monkeypatch,
                                                                                   tmp_path):
    from lib.chapters import quickstart

    monkeypatch.setenv("METRIC_RESULTS", str(trained_store / "results"))
    monkeypatch.setenv("METRIC_RUNS", str(tmp_path / "empty"))
    monkeypatch.setattr(train, "run", lambda *a, **k: pytest.fail("a chapter trained"))
    ch = Chapter("00_quickstart", "smoke", {"seeds": [0, 1, 2, 3], "results_store": True})
    results, table = quickstart.run(ch)
    assert [r.path for r in results] == [None] * 4  # served from the store
    assert int(table["seeds"].iloc[0]) == 4
    with pytest.raises(NotTrained, match="python -m lib.runs train --profile smoke"):
        quickstart.run(Chapter("00_quickstart", "smoke", {"seeds": [7], "results_store": True}))
    with pytest.raises(LookupError, match="served from the results store"):
        results[0].arrays


@pytest.mark.slow
def test_a_derived_entry_is_kept_by_run_and_served_from_the_store_without_the_run(trained_store, monkeypatch,
                                                                                  tmp_path):
    monkeypatch.setenv("METRIC_RESULTS", str(trained_store / "results"))
    monkeypatch.setenv("METRIC_RUNS", str(trained_store / "runs"))
    ch = Chapter("00_quickstart", "smoke", {"seeds": [0], "results_store": True})
    run = ch.results({"x": ch.config()})["x"][0]
    assert run.path is not None  # from the run cache, with its embeddings
    mean = derived.of_run(run, "mean", lambda: {"m": run.arrays["test_embeddings"].mean(0)}, params={"p": 1})
    Store("smoke").merge([], derived.entries_for({run.key}))
    monkeypatch.setenv("METRIC_RUNS", str(tmp_path / "empty"))
    stored = Chapter("00_quickstart", "smoke", {"seeds": [0], "results_store": True}).results({"x": ch.config()})["x"][0]
    assert stored.path is None
    again = derived.of_run(stored, "mean", lambda: pytest.fail("recomputed"), params={"p": 1})
    np.testing.assert_array_equal(again["m"], mean["m"])
    with pytest.raises(derived.NotDerived, match="has no 'mean' entry"):
        derived.of_run(stored, "mean", lambda: {}, params={"p": 2})


def _row(trained_store) -> dict:
    run_dir = next(p for p in (trained_store / "runs").iterdir() if (p / "complete.json").exists())
    return row_from_run_dir(run_dir)


@pytest.mark.slow
@pytest.mark.parametrize("damage, message", [
    (lambda r: r.update(key="0" * 16), "its key is not the hash of its identity"),
    (lambda r: r.update(metrics=json.dumps({**json.loads(r["metrics"]), "key": "another"})), "metrics name another"),
    (lambda r: r.update(history="[]"), "history is empty"),
    (lambda r: r.update(precision="bf16"), "precision"),
    (lambda r: r.update(config=json.dumps({**json.loads(r["config"]), "optim": {"lr": 0.5}})), "does not give its key"),
    (lambda r: r.update(behaviour=json.dumps({"train": 99})), "not the hash"),
    (lambda r: r.update(provenance="{}"), "no provenance"),
    (lambda r: r.update(metrics="{not json"), "cannot be read"),
])
def test_a_store_row_that_does_not_prove_its_key_is_refused_in_one_line(trained_store, damage, message):
    row = _row(trained_store)
    verify(row)
    damage(row)
    with pytest.raises(StoreError, match=message) as caught:
        verify(row)
    assert "\n" not in str(caught.value)


@pytest.mark.slow
def test_a_run_given_twice_or_an_orphan_row_fails_loudly(trained_store, folders):
    row = _row(trained_store)
    store = Store("smoke")
    with pytest.raises(StoreError, match="given twice"):
        store.merge([row, dict(row)])
    assert not (store.path / "runs.parquet").exists(), "a refused merge writes nothing"
    store.merge([row])
    with pytest.raises(StoreError, match="not in profile 'smoke''s plan.*--prune"):
        store.check(set())
    store.check({row["key"]})
    assert store.prune(set()) == 1 and not Store("smoke").rows


def test_a_profile_that_keeps_no_store_reads_the_run_cache_alone(folders, shared_data, capsys):
    """smoke and quick keep no results store: nothing stale of theirs outlives the run cache."""
    assert runs_cli.main(["export", "--profile", "smoke", str(folders / "x.jsonl")]) == 2
    assert "keeps no results store" in capsys.readouterr().err
    assert Chapter("00_quickstart", "smoke").profile.results_store is False
    assert Chapter("00_quickstart", "full").profile.results_store is True


def test_the_plan_declares_stages_that_wait_for_earlier_results(folders, shared_data):
    """Chapter 1's minimal fix is chosen from its ablations and chapter 6's road from its start:
    with nothing trained, the plan holds their first stages and says more will come."""
    plan = runs_cli.build_plan("smoke")
    assert not plan.complete["01_beluga_collapse"] and not plan.complete["06_oneshot_record"]
    assert plan.complete["02_mining"] and plan.complete["00_quickstart"]
    settings = {(r.chapter, r.setting) for r in plan.runs.values()}
    assert ("06_oneshot_record", "start") in settings
    assert not any(s.startswith("minimal fix") for _, s in settings)
    assert len({r.key for r in plan.runs.values()}) == len(plan.runs)


def test_a_chapter_reading_a_run_outside_the_plan_is_caught(folders, shared_data):
    plan = runs_cli.build_plan("smoke", chapters=["00_quickstart"])
    path = runs_cli.records.table_path("smoke", "00_quickstart")
    path.parent.mkdir(parents=True)
    key = next(iter(plan.runs))
    pd.DataFrame({"setting": ["semi-hard triplet", "rogue"], "seed": [0, 0], "key": [key, "f" * 16]}).to_csv(path)
    assert runs_cli.unplanned_reads(plan) == [f"00_quickstart: rogue, seed 0 ({'f' * 16})"]


@pytest.mark.slow
def test_without_ray_or_pyarrow_the_plan_trains_in_processes_and_its_rows_come_back(trained_store, folders,
                                                                                     monkeypatch):
    """The lent GPU machine's path (scripts/gpu_plan.sh): the store travels as JSON lines, the plan
    trains what it lacks in a process pool, rows go to a file, and `merge` takes them home."""
    monkeypatch.setenv("METRIC_RESULTS", str(trained_store / "results"))
    exported = folders / "carried" / "smoke" / "runs.jsonl.gz"
    exported.parent.mkdir(parents=True)
    assert runs_cli.main(["export", "--profile", "smoke", str(exported), *KEEPS]) == 0
    monkeypatch.setenv("METRIC_RESULTS", str(folders / "carried"))  # only the JSON lines there
    assert len(Store("smoke").rows) == 4
    rows = folders / "rows.jsonl"
    assert runs_cli.main(["train", "--profile", "smoke", "--chapter", "00_quickstart", "--set", "seeds=[0,1,2,3,4]",
                          "--executor", "processes", "--workers", "2", "--rows-out", str(rows), *KEEPS]) == 0
    came_back = [json.loads(line) for line in rows.read_text().splitlines()]
    assert [json.loads(r["config"])["train"]["seed"] for r in came_back] == [4]  # 0-3 were in the store
    monkeypatch.setenv("METRIC_RESULTS", str(folders / "home"))
    assert runs_cli.main(["merge", "--profile", "smoke", str(rows), *KEEPS]) == 0
    assert list(Store("smoke").rows) == [came_back[0]["key"]]
    rows.write_text(rows.read_text() + "{not a row\n")
    assert runs_cli.main(["merge", "--profile", "smoke", str(rows), *KEEPS]) == 2


@pytest.mark.slow
def test_two_writers_of_one_store_never_write_over_each_other(trained_store, folders):
    """Training merges each run as it arrives while a render's `lib.runs store` merges too: each
    reads the store afresh under its lock, so an update is never lost to a stale copy."""
    rows = [row_from_run_dir(p) for p in sorted((trained_store / "runs").iterdir()) if (p / "complete.json").exists()]
    training, render = Store("smoke"), Store("smoke")
    training.merge([rows[0]])
    assert list(render.rows) == [rows[0]["key"]]  # the render's copy, read now
    training.merge([rows[1]])
    render.merge([rows[2]])  # from a stale copy without rows[1]
    assert set(Store("smoke").rows) == {r["key"] for r in rows[:3]}
