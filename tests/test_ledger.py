"""The claims ledger's arithmetic and the recipes chapter 5 borrows from other chapters."""
from __future__ import annotations

import math
import os
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from lib import ledger
from lib.cache import run_key
from lib.config import REPO_ROOT, ConfigError
from lib.study import Chapter, borrowed_config, difference, divide_setting, metric_table, paired_difference


def _runs(values):
    return [SimpleNamespace(metrics={"map@r": v}) for v in values]


def _saved(results: dict, tmp_path) -> pd.DataFrame:
    """A metric table written and read back as the chapters and the ledger do."""
    path = tmp_path / "figures" / "p"
    path.mkdir(parents=True)
    metric_table(results, ["map@r"]).to_csv(path / "01_x-results.csv")
    return ledger.read_table("p", "01_x", root=tmp_path)


def test_welch_from_a_saved_table_equals_the_interval_from_seeds(tmp_path) -> None:
    results = {"new": _runs([0.50, 0.55, 0.53]), "old": _runs([0.40, 0.46, 0.41, 0.44])}
    table = _saved(results, tmp_path)
    from_table = ledger.comparison(table, "new", "old", "map@r")
    from_seeds = difference(results, "new", "old", "map@r")
    for key in ("diff", "low", "high"):
        assert from_table[key] == pytest.approx(from_seeds[key])
    assert ledger.verdict(from_table) == ledger.REPRODUCED
    assert ledger.verdict(from_table, direction=-1) == ledger.NOT_REPRODUCED
    assert "3 vs 4 seeds" in ledger.describe(from_table, "map@r")


def test_verdicts() -> None:
    assert ledger.verdict({"low": -0.01, "high": 0.03}) == ledger.INCONCLUSIVE
    assert ledger.verdict({"low": -0.05, "high": -0.01}) == ledger.NOT_REPRODUCED
    assert ledger.verdict({"low": math.nan, "high": math.nan}) == ledger.INCONCLUSIVE  # one seed: no interval


def test_a_claimed_size_is_ruled_out_only_below_it() -> None:
    gain = 0.02
    assert ledger.size_verdict({"low": 0.001, "high": 0.01}, gain) == ledger.REPRODUCED
    assert ledger.size_verdict({"low": -0.03, "high": 0.007}, gain) == ledger.NOT_REPRODUCED
    assert ledger.size_verdict({"low": -0.01, "high": 0.03}, gain) == ledger.INCONCLUSIVE
    assert ledger.size_verdict({"low": math.nan, "high": math.nan}, gain) == ledger.INCONCLUSIVE
    assert ledger.size_verdict(None, gain) == ledger.INCONCLUSIVE


def test_missing_table_and_rows_say_what_to_run(tmp_path) -> None:
    with pytest.raises(ledger.LedgerError, match=r"run_all.sh --profile full --only 04_divide"):
        ledger.read_table("full", "04_divide_and_conquer", root=tmp_path)
    table = _saved({"a": _runs([0.1, 0.2])}, tmp_path)
    with pytest.raises(ledger.LedgerError, match="expected one row"):
        ledger.row(table, "b")
    assert ledger.comparison(table, "a", "b", "map@r") is None
    missing = ledger.entry("claim", "src", "beluga", "full", "map@r", None)
    assert missing["verdict"] == ledger.INCONCLUSIVE and "not measured" in missing["measurement"]


def test_diverged_seeds_do_not_count(tmp_path) -> None:
    from lib.study import Diverged

    diverged = Diverged(config=None, error="nan")
    table = _saved({"a": _runs([0.5, 0.6]) + [diverged], "b": _runs([0.1, 0.2, 0.3])}, tmp_path)
    assert ledger.comparison(table, "a", "b", "map@r")["n"] == (2, 3)


def test_paired_difference() -> None:
    a = [SimpleNamespace(metrics={"x": v, "y": v - 0.01}) for v in (0.3, 0.5, 0.7)]
    d = paired_difference(a, a, "x", "y")
    assert d["diff"] == pytest.approx(0.01) and d["low"] == pytest.approx(0.01) and d["high"] == pytest.approx(0.01)
    assert np.isnan(paired_difference(a[:1], a[:1], "x", "y")["low"])


def test_borrowed_recipes_hit_the_other_chapters_runs() -> None:
    """Chapter 5 must read the very runs chapters 3 and 4 trained, not retrain look-alikes."""
    spec = {"chapter": "04_divide_and_conquer", "divide": {"clusters": 4, "recluster_every": 2}}
    ch4 = Chapter("04_divide_and_conquer", "quick")
    assert run_key(borrowed_config(spec, "quick", None, "beluga").to_dict()) == \
        run_key(divide_setting(ch4, "beluga", 4, 2).to_dict())
    ch3 = Chapter("03_distance_weighted", "quick")
    wu = {"chapter": "03_distance_weighted", "settings": ["methods", "margin loss, distance-weighted (Wu)"]}
    assert borrowed_config(wu, "quick", None, "beluga") == ch3.config("beluga", ch3.settings["methods"]["margin loss, distance-weighted (Wu)"])
    # in `full`, chapter 4's single learner on belugas is chapter 3's distance-weighted run
    full4 = {"chapter": "04_divide_and_conquer", "divide": {"clusters": 1, "recluster_every": 1}}
    assert run_key(borrowed_config(full4, "full", None, "beluga").to_dict()) == \
        run_key(borrowed_config(wu, "full", None, "beluga").to_dict())
    with pytest.raises(ConfigError, match="has no setting"):
        borrowed_config({"chapter": "03_distance_weighted", "settings": ["methods", "nope"]}, "quick", None, "beluga")
    with pytest.raises(ConfigError, match="borrowed recipe"):
        borrowed_config({"chapter": "03_distance_weighted"}, "quick", None, "beluga")


def test_ledger_refuses_tables_of_a_chapter_whose_last_run_failed(tmp_path, monkeypatch) -> None:
    """Probe: after chapter 1 failed, chapter 6 read figures/<profile>/01_x-*.csv, an older run's
    tables, without a word. run_all.sh leaves reports/<profile>/FAILED-<notebook> for it."""
    table = _saved({"a": _runs([0.1, 0.2])}, tmp_path)
    reports = tmp_path / "reports" / "p"
    reports.mkdir(parents=True)
    failed = reports / "FAILED-01_x.ipynb"
    failed.write_text("{}")
    monkeypatch.setattr(ledger, "REPO_ROOT", tmp_path)  # the notebook's call: read_table(source, chapter, name)
    for call in (lambda: ledger.read_table("p", "01_x"), lambda: ledger.read_table("p", "01_x", root=tmp_path)):
        with pytest.raises(ledger.LedgerError) as err:
            call()
        message = str(err.value)
        assert "chapter 01_x failed" in message and str(failed) in message
        assert "./run_all.sh --profile p --only 01_x" in message
    # a report older than the failure is the run before it: still refused
    ok = reports / "01_x.ipynb"
    ok.write_text("{}")
    os.utime(ok, (failed.stat().st_mtime - 60,) * 2)
    with pytest.raises(ledger.LedgerError, match="failed"):
        ledger.read_table("p", "01_x")
    # a success after the failure (a rerun that did not go through run_all.sh) is the last run
    os.utime(ok, (failed.stat().st_mtime + 60,) * 2)
    pd.testing.assert_frame_equal(ledger.read_table("p", "01_x"), table)
    # other chapters and other profiles are unaffected
    ok.unlink()
    (tmp_path / "figures" / "q").mkdir()
    (tmp_path / "figures" / "p" / "01_x-results.csv").rename(tmp_path / "figures" / "q" / "01_x-results.csv")
    assert len(ledger.read_table("q", "01_x")) == 1


def test_the_claims_ledger_reads_every_table_through_read_table() -> None:
    """The failed-chapter check lives in ledger.read_table: chapter 6 must not read a csv another way."""
    import json

    notebook = json.loads((REPO_ROOT / "notebooks" / "06_claims_ledger.ipynb").read_text())
    code = "\n".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code")
    assert "ledger.read_table(" in code
    assert "read_csv" not in code and ".csv" not in code
