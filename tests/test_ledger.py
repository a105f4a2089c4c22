"""The claims ledger: its verdict rules, a synthetic per-seed table for each verdict, the failed-
chapter guard, and the recipes chapter 5 borrows from other chapters."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from lib import ledger, records
from lib.cache import run_key
from lib.config import ConfigError, load_profile
from lib.stats import Verdict
from lib.study import Chapter, borrowed_config, divide_setting


def _table(arms: dict[str, list[float]], metric: str = "map@r", dataset: str = "beluga", **extra) -> pd.DataFrame:
    rows = [{"chapter": "x", "dataset": dataset, "setting": name, "seed": seed, metric: value, "backbone": "b",
             "pretrained": False, "image_size": "28", "evaluated_dim": 64, "epochs": 2, "train_images_seen": 1000,
             **{k: v[seed] for k, v in extra.get(name, {}).items()}}
            for name, values in arms.items() for seed, value in enumerate(values)]
    return pd.DataFrame(rows)


def _write(tmp_path, profile: str, chapter: str, frame: pd.DataFrame) -> None:
    path = records.export_path(profile, chapter, tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)


@pytest.mark.parametrize("flagged, seeds, matches, expected", [
    (2, 3, False, Verdict.REPRODUCED), (0, 3, True, Verdict.CONTRADICTED), (0, 3, False, Verdict.NOT_SUPPORTED),
    (1, 3, False, Verdict.INCONCLUSIVE), (1, 2, False, Verdict.INCONCLUSIVE), (1, 1, False, Verdict.INCONCLUSIVE)])
def test_share_rule_gives_each_verdict(flagged, seeds, matches, expected) -> None:
    assert ledger.share_verdict(flagged, seeds, matches)[0] == expected


@pytest.mark.parametrize("values, matches, expected", [
    ([0.90, 0.91, 0.92], False, Verdict.REPRODUCED), ([0.70, 0.71, 0.72], True, Verdict.CONTRADICTED),
    ([0.70, 0.71, 0.72], False, Verdict.NOT_SUPPORTED), ([0.80, 0.86, 0.92], False, Verdict.INCONCLUSIVE),
    ([0.99], False, Verdict.INCONCLUSIVE)])
def test_level_rule_gives_each_verdict(values, matches, expected) -> None:
    assert ledger.level_verdict(values, 0.865, matches)[0] == expected


def test_a_synthetic_ledger_pairs_by_seed_corrects_the_family_and_gives_each_verdict(tmp_path, monkeypatch) -> None:
    """Four comparative claims on one synthetic table: each lands on a different verdict, the
    intervals are paired (a shift shared by every seed cancels) and Holm-corrected over the four."""
    base = [0.50, 0.60, 0.40, 0.55]
    arms = {"base": base,
            "better": [b + 0.05 + e for b, e in zip(base, (0.001, -0.001, 0.002, 0.0))],  # clearly above
            "worse": [b - 0.05 + e for b, e in zip(base, (0.001, -0.001, 0.002, 0.0))],   # clearly below
            "noisy": [b + e for b, e in zip(base, (0.03, -0.03, 0.02, -0.02))]}           # straddles zero
    _write(tmp_path, "p", "x", _table(arms))
    where = dict(source="s", regime="r", chapter="x", dataset="beluga", metric="map@r", b="base")
    claims = [ledger.Comparison(claim="a", a="better", **where),
              ledger.Comparison(claim="b", a="worse", regime_matches=True, **where),
              ledger.Comparison(claim="c", a="worse", **where),
              ledger.Comparison(claim="d", a="noisy", claimed_effect=0.01, **where)]
    monkeypatch.setattr(ledger, "claims", lambda profile: claims)
    table = ledger.build(load_profile("smoke").model_copy(update={"name": "p"}), root=tmp_path).set_index("claim")
    assert list(table.verdict) == [Verdict.REPRODUCED, Verdict.CONTRADICTED, Verdict.NOT_SUPPORTED, Verdict.INCONCLUSIVE]
    assert table.loc["a", "diff"] == pytest.approx(0.0505)
    assert "Holm" in table.loc["a", "reason"] and table.loc["d", "mde"] > 0.01
    assert table.loc["a", "seeds"] == 4 and "from scratch" in table.loc["a", "our regime"]


def test_missing_tables_say_what_to_run(tmp_path) -> None:
    with pytest.raises(ledger.LedgerError, match=r"run_all.sh --profile full --only 04_divide"):
        ledger.read_runs("full", "04_divide_and_conquer", root=tmp_path)
    with pytest.raises(records.RecordsError, match="known settings"):
        records.per_seed(_table({"a": [0.1, 0.2]}), "b", "map@r")


def test_the_claims_name_arms_the_chapters_run() -> None:
    """Every claim of the quick profile names settings its chapter's config can produce."""
    profile = load_profile("quick")
    listed = ledger.claims(profile)
    assert len(listed) >= 12
    c1 = profile.chapter("01_beluga_collapse")
    assert any(c.a == f"embedding {min(c1['dimensions'])}, evaluated at {min(c1['dimensions'])}-d" for c in listed
               if isinstance(c, ledger.Comparison))
    assert {c.source for c in listed} >= {"the blog", "Hermans et al. 2017", "Lake et al. 2015 (Science)"}


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
    with pytest.raises(ConfigError, match="borrowed recipe"):
        borrowed_config({"chapter": "04_divide_and_conquer", "divide": {"clusters": 1, "recluster_every": 1},
                         "overlay": ["pretrained", "backbone"]}, "quick", None, "beluga")


def test_a_borrowed_pretrained_recipe_is_the_run_chapter_3_trains_on_the_pretrained_backbone() -> None:
    """Chapter 5's pretrained recipes (`overlay`) must read chapter 3's and chapter 1's pretrained
    runs: the same keys, pretrained and frozen as the section says."""
    from lib.chapters import collapse, distance_weighted as dw
    ch3 = Chapter("03_distance_weighted", "quick")
    spec = {"chapter": "03_distance_weighted", "settings": ["methods", dw.SEMI], "overlay": ["pretrained", "backbone"]}
    cfg = borrowed_config(spec, "quick", None, "beluga")
    assert cfg.model.pretrained and cfg.model.backbone == "efficientnet_lite0" and cfg.model.frozen_stages == 6
    assert cfg.loss == ch3.config("beluga", ch3.settings["methods"][dw.SEMI]).loss
    arms = {name: run_key(c.to_dict()) for name, c in dw.pretrained_arms(ch3).items()}
    assert arms[dw.SEMI + dw.PRETRAINED] == run_key(cfg.to_dict())
    full3 = Chapter("03_distance_weighted", "full")  # quick leaves the whole-network arm out
    assert list(dw.pretrained_pairs(full3).values())[-1] == (dw.SEMI + dw.PRETRAINED, dw.SEMI + dw.WHOLE_NETWORK)
    assert dw.pretrained_arms(full3)[dw.SEMI + dw.WHOLE_NETWORK].model.frozen_stages == 0
    assert len(dw.pretrained_pairs(ch3)) == len(ch3.settings["pretrained"]["methods"])
    ch1 = Chapter("01_beluga_collapse", "quick")
    blog = borrowed_config({"chapter": "01_beluga_collapse", "settings": ["blog"], "overlay": ["pretrained", "backbone"]},
                           "quick", None, "beluga")
    assert blog == collapse.pretrained_arms(ch1)[collapse.PRETRAINED + collapse.blog_name(ch1)]
    assert blog.optim.lr == 0.1 and blog.model.projector == [1024, 256] and blog.model.pretrained
    assert Chapter("05_reidentification", "quick").settings["recipes"][f"{dw.SEMI}, pretrained (chapter 3)"] == spec
    assert collapse.PRETRAINED + collapse.blog_name(ch1) == "pretrained: blog (margin 0.5)"
    # the ledger names these arms as strings
    assert dw.SEMI + dw.PRETRAINED == "semi-hard triplet, pretrained" and dw.WU + dw.PRETRAINED in dw.pretrained_arms(ch3)



def test_ledger_refuses_tables_of_a_chapter_whose_last_run_failed(tmp_path, monkeypatch) -> None:
    """Probe: after chapter 1 failed, chapter 7 read figures/<profile>/01_x-*.csv, an older run's
    tables, without a word. run_all.sh leaves reports/<profile>/FAILED-<notebook> for it."""
    table = _table({"a": [0.1, 0.2]})
    _write(tmp_path, "p", "01_x", table)
    reports = tmp_path / "reports" / "p"
    reports.mkdir(parents=True)
    failed = reports / "FAILED-01_x.ipynb"
    failed.write_text("{}")
    monkeypatch.setattr(ledger, "REPO_ROOT", tmp_path)
    with pytest.raises(ledger.LedgerError) as err:
        ledger.read_runs("p", "01_x", root=tmp_path)
    assert "chapter 01_x failed" in str(err.value) and "./run_all.sh --profile p --only 01_x" in str(err.value)
    ok = reports / "01_x.ipynb"
    ok.write_text("{}")
    os.utime(ok, (failed.stat().st_mtime - 60,) * 2)  # a report older than the failure: still refused
    with pytest.raises(ledger.LedgerError, match="failed"):
        ledger.read_runs("p", "01_x", root=tmp_path)
    os.utime(ok, (failed.stat().st_mtime + 60,) * 2)  # a later success is the last run
    assert np.allclose(ledger.read_runs("p", "01_x", root=tmp_path)["map@r"], table["map@r"])


def test_records_refuse_two_runs_under_one_name() -> None:
    with pytest.raises(records.RecordsError, match="same"):
        records.to_frame([{"chapter": "c", "dataset": "d", "setting": "s", "seed": 0},
                          {"chapter": "c", "dataset": "d", "setting": "s", "seed": 0}])
