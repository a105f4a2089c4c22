"""The claims ledger: its verdict rules, a synthetic per-seed table for each verdict, the failed-
chapter guard, and the recipes chapter 5 borrows from other chapters."""
from __future__ import annotations

import os
import types

import numpy as np
import pandas as pd
import pytest

from lib import confirmatory, ledger, records
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
    (2, 3, False, Verdict.INCONCLUSIVE), (0, 3, True, Verdict.INCONCLUSIVE), (0, 3, False, Verdict.INCONCLUSIVE),
    (3, 3, False, Verdict.INCONCLUSIVE), (0, 10, False, Verdict.CONTRADICTED), (0, 10, True, Verdict.CONTRADICTED),
    (10, 10, False, Verdict.REPRODUCED), (1, 1, False, Verdict.INCONCLUSIVE)])
def test_share_rule_gives_each_verdict(flagged, seeds, matches, expected) -> None:
    """Exact Clopper-Pearson: 0 of 3 (rate up to 71 %, two-sided) decides nothing; 0 of 10 (up to 31 %)
    does. The regime qualifies the sentence, never the verdict."""
    v, said = ledger.share_verdict(flagged, seeds, matches, what="collapsed")
    assert v == expected and said.startswith(f"{expected.value}: collapsed in {flagged} of {seeds}")


@pytest.mark.parametrize("values, matches, expected", [
    ([0.90, 0.91, 0.92], False, Verdict.REPRODUCED), ([0.80, 0.81, 0.82], True, Verdict.CONTRADICTED),
    ([0.80, 0.81, 0.82], False, Verdict.CONTRADICTED), ([0.80, 0.86, 0.92], False, Verdict.INCONCLUSIVE),
    ([0.99], False, Verdict.INCONCLUSIVE)])
def test_level_rule_gives_each_verdict(values, matches, expected) -> None:
    v, said = ledger.level_verdict(values, 0.865, matches)
    assert v == expected and said.startswith(f"{expected.value}: ")
    assert ("hierarchical bootstrap" in said) == (len(values) >= 2)


def test_a_synthetic_ledger_pairs_by_seed_corrects_the_family_and_gives_each_verdict(tmp_path, monkeypatch) -> None:
    """Four comparative claims on one synthetic table, in a profile the declaration does not cover
    (so all exploratory): the intervals are paired (a shift shared by every seed cancels) and
    Holm-corrected over the four; the regime does not change a verdict."""
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
    assert list(table.verdict) == [Verdict.REPRODUCED, Verdict.CONTRADICTED, Verdict.CONTRADICTED, Verdict.INCONCLUSIVE]
    assert set(table.section) == {"exploratory"} and table.attrs["declared"] == ""
    assert table.loc["a", "diff"] == pytest.approx(0.0505)
    assert "Holm level 0.05/" in table.loc["a", "reason"] and table.loc["d", "mde"] > 0.01
    assert table.loc["a", "reason"].startswith("reproduced: ")
    assert table.loc["c", "reason"].endswith("in a regime other than the claim's")
    assert table.loc["b", "reason"].endswith("in the claim's regime")
    assert table.loc["a", "seeds"] == 4 and "from scratch" in table.loc["a", "our regime"]
    assert table.loc["a", "level"] == pytest.approx(0.05 / 4)  # the smallest p: Holm's first step


def _declaration(**counts) -> confirmatory.Declaration:
    where = dict(source="s", chapter="x", dataset="beluga", metric="map@r", b="base", budget=2,
                 smallest_effect=0.02, justification="j")
    return confirmatory.Declaration(profile="p", pilot="p", alpha=0.05, power=0.8, min_seeds=2, max_seeds=40, claims=[
        confirmatory.Claim(id=f"{arm}-claim", claim=f"{arm} beats base", a=arm, seeds={"first": 0, "count": n}, **where)
        for arm, n in counts.items()])


def test_confirmatory_rows_wait_for_their_declared_seeds_and_cite_the_declaration(tmp_path, monkeypatch) -> None:
    """Declared claims form the confirmatory family (Holm over all of them, whatever has run); a row
    short of its declared seeds is not judged; the rest are exploratory. Runs at another budget, or
    on seeds not declared, do not count."""
    base = [0.50, 0.60, 0.40, 0.55, 0.45]
    arms = {"base": base,
            "better": [b + 0.05 + e for b, e in zip(base, (0.001, -0.001, 0.002, 0.0, 0.001))],
            "same": [b + e for b, e in zip(base, (0.001, -0.001, 0.002, 0.0, -0.002))],
            "other": [b + 0.01 for b in base]}
    frame = _table(arms)
    frame.loc[(frame.setting == "same") & (frame.seed == 4), "epochs"] = 3  # another budget: not a declared run
    _write(tmp_path, "p", "x", frame)
    declared = _declaration(better=4, same=5)  # seed 4 of "better" is run but not declared
    where = dict(source="s", regime="r", chapter="x", dataset="beluga", metric="map@r", b="base")
    listed = [ledger.Comparison(claim="better beats base", a="better", **where),
              ledger.Comparison(claim="same beats base", a="same", **where),
              ledger.Comparison(claim="other beats base", a="other", **where)]
    monkeypatch.setattr(ledger, "claims", lambda profile: listed)
    profile = load_profile("smoke").model_copy(update={"name": "p"})
    table = ledger.build(profile, root=tmp_path, declaration=declared).set_index("id")
    assert list(table.section) == ["confirmatory", "confirmatory", "exploratory"]
    better, same = table.loc["better-claim"], table.loc["same-claim"]
    assert better.seeds == 4 and better["declared seeds"] == 4 and better.verdict == Verdict.REPRODUCED
    assert better.level == pytest.approx(0.05 / 2)  # m = 2 declared, though one is still waiting
    assert "(Holm level 0.05/2, family of 2)" in better.reason
    assert same.verdict == Verdict.INCONCLUSIVE and np.isnan(same.low)
    assert same.reason.startswith("inconclusive (awaiting seeds: 4 of 5 declared): ")
    assert better.declared.startswith("params/confirmatory.yaml @ ") and table.attrs["declared"] == better.declared
    assert table.loc[""].claim == "other beats base" and table.loc[""].declared == ""
    # a profile the declaration does not cover: every row exploratory, judged on the seeds it has
    _write(tmp_path, "q", "x", frame)
    other = ledger.build(profile.model_copy(update={"name": "q"}), root=tmp_path, declaration=declared)
    assert set(other.section) == {"exploratory"} and not other.reason.str.contains("awaiting").any()


def test_a_chapter_and_the_ledger_say_the_same_for_each_confirmatory_row(tmp_path, monkeypatch) -> None:
    """One voice: what a chapter prints for a comparison the ledger judges is the ledger's sentence,
    character for character (the chapter quotes `lib.ledger.chapter_sentence`)."""
    from lib.chapters import mining
    base = [0.50, 0.60, 0.40, 0.55]
    arms = {"hard": base, "semi-hard": [b + 0.05 + e for b, e in zip(base, (0.001, -0.001, 0.002, 0.0))],
            "batch-hard (Hermans)": [b + 0.01 for b in base]}
    _write(tmp_path, "p", "02_mining", _table(arms).assign(chapter="02_mining"))
    where = dict(source="s", chapter="02_mining", dataset="beluga", metric="map@r", budget=2, smallest_effect=0.02,
                 justification="j")
    declared = confirmatory.Declaration(profile="p", pilot="p", alpha=0.05, power=0.8, min_seeds=2, max_seeds=40, claims=[
        confirmatory.Claim(id="semi", claim="semi-hard beats hard", a="semi-hard", b="hard", seeds={"first": 0, "count": 4},
                           **where),
        confirmatory.Claim(id="batch", claim="batch-hard beats semi-hard", a="batch-hard (Hermans)", b="semi-hard",
                           seeds={"first": 0, "count": 10}, **where)])
    listed = [ledger.Comparison(claim=c.claim, source="s", regime="r", chapter="02_mining", dataset="beluga",
                                metric="map@r", a=c.a, b=c.b) for c in declared.claims]
    monkeypatch.setattr(ledger, "claims", lambda profile: listed)
    monkeypatch.setattr(confirmatory, "load", lambda path=None: declared)
    monkeypatch.setattr(records, "REPO_ROOT", tmp_path)  # what the chapter reads: figures/<profile>/ under tmp_path
    monkeypatch.setattr(ledger, "REPO_ROOT", tmp_path)
    profile = load_profile("smoke").model_copy(update={"name": "p"})
    table = ledger.build(profile, root=tmp_path).set_index("id")
    ch = types.SimpleNamespace(profile=profile, name="02_mining")
    for claim in declared.claims:
        said = table.loc[claim.id, "reason"]
        assert ledger.chapter_sentence(ch, "beluga", claim.a, claim.b, "map@r") == said
        assert mining.ledger_line(ch, "beluga", claim.a, claim.b) == f"**The ledger's verdict** on {claim.a} − {claim.b}: {said}"
    assert table.loc["semi", "verdict"] == Verdict.REPRODUCED
    assert table.loc["batch", "reason"].startswith("inconclusive (awaiting seeds: 4 of 10 declared)")


def test_the_full_ledger_and_its_chapters_agree_on_every_confirmatory_row() -> None:
    """On the committed full tables: every declared claim is a ledger row whose sentence is the one
    `claim_sentence` gives the chapters; none is judged on fewer seeds than declared."""
    profile = load_profile("full")
    table = ledger.build(profile)
    rows = table[table.section == "confirmatory"].set_index("id")
    declared = confirmatory.load()
    assert list(rows.index) == [c.id for c in declared.claims]
    for c in declared.claims:
        assert ledger.claim_sentence(profile, c.chapter, c.dataset, c.a, c.b, c.metric) == rows.loc[c.id, "reason"]
        if rows.loc[c.id, "seeds"] < c.seeds.count:
            assert rows.loc[c.id, "reason"].startswith(
                f"inconclusive (awaiting seeds: {rows.loc[c.id, 'seeds']} of {c.seeds.count} declared)")
    assert "not supported at this scale" not in " ".join(table.reason)


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
    assert borrowed_config(wu, "quick", None, "beluga") == ch3.config("beluga", ch3.settings.methods["margin loss, distance-weighted (Wu)"])
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
    from lib.chapters import beluga_collapse as collapse, distance_weighted as dw
    ch3 = Chapter("03_distance_weighted", "quick")
    spec = {"chapter": "03_distance_weighted", "settings": ["methods", dw.SEMI], "overlay": ["pretrained", "backbone"]}
    cfg = borrowed_config(spec, "quick", None, "beluga")
    assert cfg.model.pretrained and cfg.model.backbone == "efficientnet_lite0" and cfg.model.frozen_stages == 6
    assert cfg.loss == ch3.config("beluga", ch3.settings.methods[dw.SEMI]).loss
    arms = {name: run_key(c.to_dict()) for name, c in dw.pretrained_arms(ch3).items()}
    assert arms[dw.SEMI + dw.PRETRAINED] == run_key(cfg.to_dict())
    full3 = Chapter("03_distance_weighted", "full")  # quick leaves the whole-network arm out
    assert list(dw.pretrained_pairs(full3).values())[-1] == (dw.SEMI + dw.PRETRAINED, dw.SEMI + dw.WHOLE_NETWORK)
    assert dw.pretrained_arms(full3)[dw.SEMI + dw.WHOLE_NETWORK].model.frozen_stages == 0
    assert len(dw.pretrained_pairs(ch3)) == len(ch3.settings.pretrained.methods)
    ch1 = Chapter("01_beluga_collapse", "quick")
    blog = borrowed_config({"chapter": "01_beluga_collapse", "settings": ["blog"], "overlay": ["pretrained", "backbone"]},
                           "quick", None, "beluga")
    assert blog == collapse.pretrained_arms(ch1)[collapse.PRETRAINED + collapse.blog_name(ch1)]
    assert blog.optim.lr == 0.1 and blog.model.projector == [1024, 256] and blog.model.pretrained
    assert Chapter("05_reidentification", "quick").settings.recipes[f"{dw.SEMI}, pretrained (chapter 3)"].model_dump(
        exclude_unset=True) == spec
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


def test_the_committed_chapters_quote_the_committed_ledger_word_for_word():
    """One voice, on what a reader sees: every confirmatory row's verdict sentence in the committed
    full ledger appears verbatim in its chapter's executed notebook (a chapter rendered beside one
    that rewrote its table would quote a stale Holm family, and fail here)."""
    import json
    from pathlib import Path

    import re

    root = Path(__file__).resolve().parent.parent
    table = pd.read_csv(root / "figures" / "full" / "07_claims_ledger-ledger.csv")
    confirmatory_rows = table[table["section"] == "confirmatory"]
    family = f"family of {len(confirmatory_rows)})"
    measured = set(confirmatory_rows["reason"].str.extract(r"(Δ [^;]*; \d+ seeds\))")[0])

    def shown(chapter: str) -> str:
        notebook = json.loads((root / "reports" / "full" / f"{chapter}.ipynb").read_text())
        return "".join("".join(out.get("data", {}).get("text/markdown", ""))
                       for cell in notebook["cells"] for out in cell.get("outputs", []))

    chapter_of = {c.id: c.chapter for c in confirmatory.load().claims}
    for _, row in confirmatory_rows.iterrows():
        assert row["reason"] in shown(chapter_of[row["id"]]), f"{chapter_of[row['id']]} does not quote row {row['id']}"
    for chapter in sorted(set(chapter_of.values())):  # and no other measurement in the confirmatory family
        for quoted in re.findall(r"Δ [^;]*; \d+ seeds\)", shown(chapter)):
            assert family not in quoted or quoted in measured, f"{chapter} quotes {quoted!r}, which the ledger does not"
