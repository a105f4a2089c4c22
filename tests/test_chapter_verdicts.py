"""The verdict branches of each chapter (lib/chapters/*.py), on hand-made per-seed tables whose answer
is known: an arm 5 points above another in every one of 10 seeds must read "lies above zero", two arms
that differ only by zero-mean noise "includes zero", a flag raised on 3 of 10 seeds "3 of 10", and so on.

Nothing trains: `Chapter.table` returns the hand-made table (the format of lib.records), `Chapter.results`
returns stand-ins, the claims ledger is stubbed, and every file the chapters write goes to tmp_path.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from lib import compare
from lib.arms import FRESH, HARD, KEPT_AT_TEST, MINIMAL_FIX, PRETRAINED, SEMI_HARD, SINGLE, WU, dimension_arm
from lib.chapters import beluga_collapse as bc, distance_weighted as dw, divide_and_conquer as dnc, mining
from lib.chapters import oneshot_record as osr, reidentification as reid
from lib.study import Chapter

SEEDS = list(range(10))
BASE = 0.30 + 0.02 * np.random.default_rng(0).standard_normal(10)  # one arm's per-seed values
NOISE = 0.003 * np.random.default_rng(1).standard_normal(10)
NOISE -= NOISE.mean()  # small seed-to-seed noise of mean zero: BASE + 0.05 + NOISE is exactly 5.0 points up
ZERO = 0.002 * np.array([1, -1] * 5)  # zero-mean noise: an arm equal to another but for it
BOTH = ("recall@1", "map@r")
FIRST3 = np.arange(10) < 3  # a flag raised on 3 of the 10 seeds


def arm(setting: str, values, dataset: str = "beluga", metrics=("map@r",), seeds=SEEDS, **columns) -> list[dict]:
    """One setting's rows, one per seed (lib.records' keys), each of `metrics` set to the per-seed `values`;
    `columns` are scalars or per-seed arrays."""
    def cell(value, i):
        return value[i] if np.ndim(value) else value

    return [{"chapter": "test", "dataset": dataset, "setting": setting, "seed": s, **{m: float(v) for m in metrics},
             **{k: cell(c, i) for k, c in columns.items()}} for i, (s, v) in enumerate(zip(seeds, values))]


def frame(*arms: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([row for rows in arms for row in rows])


_CHAPTERS: dict[str, Chapter] = {}


@pytest.fixture
def chapter(monkeypatch, tmp_path):
    """chapter(name, table): the quick profile's chapter reading `table`, writing into tmp_path, with
    `results` returning {setting: [a stand-in run holding its config]} and the ledger judging nothing."""
    from lib import ledger

    monkeypatch.setenv("METRIC_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("METRIC_RESULTS", str(tmp_path / "results"))
    monkeypatch.setattr(ledger, "chapter_sentence", lambda *a, **k: None)
    monkeypatch.setattr(ledger, "chapter_verdicts", lambda *a, **k: [])

    def make(name: str, table: pd.DataFrame | None = None) -> Chapter:
        ch = _CHAPTERS.setdefault(name, Chapter(name, "quick"))
        monkeypatch.setattr(ch, "figure_dir", tmp_path)
        monkeypatch.setattr(ch, "table", lambda: table)
        monkeypatch.setattr(ch, "results", lambda settings, seeds=None: {
            n: [SimpleNamespace(config=cfg)] for n, cfg in settings.items()})
        return ch
    return make


# ------------------------------------------------------------------ chapter 1: the beluga collapse
BELUGA = {"chance_precision@1": 0.01, "train_loss_over_margin": 1.0, "loss_space_collapsed": False, "collapsed": False,
          "contracted": False, "loss_space_effective_rank": 1.2, "effective_rank": 20.0, "precision@1": 0.2}


def beluga_arm(setting, values, seeds=SEEDS, **flags):
    return arm(setting, values, seeds=seeds, **{**BELUGA, **flags})


def beluga_table() -> pd.DataFrame:
    blog, fresh = bc.blog_at_margin(0.5), range(10, 20)
    return frame(
        beluga_arm(blog, BASE, loss_space_collapsed=True, contracted=FIRST3),
        beluga_arm("blog, margin 0.1", BASE + 0.02 + ZERO),
        beluga_arm("lr 1e-3", BASE + 0.05 + NOISE), beluga_arm("semi-hard miner", BASE - 0.05 + NOISE),
        *[beluga_arm(n, BASE + ZERO) for n in ("no miner", "m-per-class batches", KEPT_AT_TEST)],
        beluga_arm(dimension_arm(16), BASE + ZERO[::-1]),
        beluga_arm(blog + FRESH, BASE, seeds=fresh), beluga_arm(MINIMAL_FIX + FRESH, BASE + 0.04 + NOISE, seeds=fresh))


@pytest.mark.parametrize("confirmed", [True, False])
def test_beluga_ablation_and_verdict_count_flags_order_causes_and_quote_the_ledger(chapter, tmp_path, monkeypatch,
                                                                                  confirmed):
    """lr 1e-3 is 5 points above the blog in every seed, the semi-hard miner 5 below, three changes equal to it but
    for noise: one Holm family of 5 (helps / hurts / no difference), causes listed best first. The blog collapsed
    in the space the loss sees on 10 of 10 seeds, in the evaluated features on 0, contracted on 3; its margins
    differ by 2.0 points (so the margin does change training); the fix, 4 points up on fresh seeds, "lies above zero" beside the ledger's sentence (no
    such paragraph without a confirmation); 16-d vs 256-d includes zero."""
    ch = chapter("01_beluga_collapse", beluga_table())
    blog, none = bc.blog_name(ch), "no difference detected"
    monkeypatch.setattr(bc, "_ledger_verdicts", lambda ch: {(MINIMAL_FIX + FRESH, blog + FRESH): "reproduced: FIX",
                                                            (dimension_arm(16), KEPT_AT_TEST): "inconclusive: DIM"})
    (_, margins), (table, family) = bc.reproduce(ch), bc.ablate(ch)
    assert family["effect"].to_dict() == {"lr 1e-3": "helps", "semi-hard miner": "hurts", "no miner": none,
                                          "m-per-class batches": none, KEPT_AT_TEST: none}
    rows = table.drop(index=blog)[["Δ diff", "Δ low", "Δ high"]].set_axis(["diff", "low", "high"], axis=1)
    assert bc._ablation_takeaway(rows, "map@r").startswith("1 of 5 changes raise MAP@R above the blog's, 1 lower it")
    assert (tmp_path / "01_beluga_collapse-ablation.csv").exists()
    confirmation = compare.compare(ch.table(), {"fix": (MINIMAL_FIX + FRESH, blog + FRESH)}, "map@r")
    confirmation.insert(0, "fix", "lr 1e-3")
    dims = compare.compare(ch.table(), {dimension_arm(16): (dimension_arm(16), KEPT_AT_TEST)}, "map@r")
    contrast = pd.DataFrame({"dimension": [16, 16], "trained": [1.2, 1.2], "random Gaussian": [1.5, 1.5]})
    text = bc.verdict(ch, margins, family, confirmation if confirmed else confirmation.iloc[:0], dims, contrast)
    assert ("10 of 10 seeds in the space the loss sees (1.20 effective dimensions), 0 of 10 in the evaluated "
            "features") in text and "3 of 10 contracted by the older spread rule" in text
    assert "**Margins** (exploratory, not tested). Margins 0.5, 0.1 differ by up to 2.0 points of map@r" in text
    causes = text.split("**Causes**")[1].split("\n\n")[0]
    assert causes.index("lr 1e-3: Δ +5.0") < causes.index("no miner: Δ") < causes.index("semi-hard miner: Δ -5.0")
    assert "family of 5) interval" in causes and causes.count("lies above zero") == causes.count("below zero") == 1
    assert ("**Minimal fix.**" in text) == confirmed
    assert ("its gain in map@r over the blog: Δ +4.0 points (95 % interval" in text) == confirmed
    assert ("lies above zero. **The ledger's verdict:** reproduced: FIX." in text) == confirmed
    assert f"{dimension_arm(16)}: Δ +0.0 points" in text and "16-d 1.20 vs 1.50" in text
    assert f"({dimension_arm(16)} against {KEPT_AT_TEST}): inconclusive: DIM." in text and "Smoke" not in text


@pytest.mark.parametrize("scratch, same", [(0.05, 0), (-0.03, 1)])
def test_beluga_pretrained_verdict_compares_each_change_with_scratch(chapter, scratch, same):
    """Pretrained, the blog is 10 points above the scratch blog ("lies above zero") and collapsed on 4 of 10 seeds;
    lr 1e-3 is 5 points below it ("lies below zero"), against +5 from scratch (0 of 1 the same way) or -3 (1 of 1)."""
    blog = bc.blog_at_margin(0.5)
    ch = chapter("01_beluga_collapse", frame(
        beluga_arm(blog, BASE), beluga_arm(bc.PRETRAINED + "lr 1e-3", BASE + 0.05 + NOISE[::-1]),
        beluga_arm(bc.PRETRAINED + blog, BASE + 0.1 + NOISE, loss_space_collapsed=np.arange(10) < 4)))
    text = bc.pretrained_verdict(ch, *bc.pretrained_regime(ch, pd.DataFrame({"Δ diff": {"lr 1e-3": scratch}})))
    assert "from scratch, Δ +10.0 points (95 % interval" in text and "lies above zero. Training loss" in text
    assert "collapsed in the space the loss sees on 4 of 10 seeds, in the evaluated features on 0 of 10" in text
    assert "lr 1e-3: Δ -5.0 points (95 % interval" in text and text.count("lies below zero") == 1
    assert f". {same} of 1 changes move map@r the same way as they do from scratch." in text
    assert bc.pretrained_verdict(ch, pd.DataFrame(), pd.DataFrame()).startswith("This profile has no `pretrained`")


# ------------------------------------------------------------------ chapter 2: mining
ALL, BH, FACENET = "all triplets (no mining)", "batch-hard (Hermans)", "easy-positive, semi-hard negative (FaceNet)"


def mining_arm(setting, values, dataset, contracted=False, collapsed=False, diverged=False):
    return arm(setting, values, dataset, contracted=contracted, collapsed=collapsed, diverged=diverged,
               spread_ratio=0.5, effective_rank=12.0, **{"chance_precision@1": 0.01, "precision@1": 0.2})


def mining_table(sweep: dict[str, tuple[float, float]]) -> pd.DataFrame:
    arms = [mining_arm(mining.margin_setting(n, m), BASE + shift + NOISE, "beluga")
            for n, shifts in sweep.items() for m, shift in zip((0.05, 0.2), shifts)]
    for ds in ("omniglot", "beluga"):
        arms += [mining_arm(HARD, BASE, ds, contracted=FIRST3), mining_arm(SEMI_HARD, BASE + 0.05 + NOISE, ds),
                 mining_arm(ALL, BASE + 0.02 + NOISE[::-1], ds), mining_arm(FACENET, BASE + 0.07 + NOISE, ds),
                 mining_arm(BH, BASE + 0.05 + NOISE + ZERO, ds, contracted=True, collapsed=True)]
    return frame(*arms)


@pytest.mark.parametrize("sweep, finding", [
    ({HARD: (0.0, 0.01), SEMI_HARD: (0.0, 0.05)}, "Hard mining is the less margin-sensitive, as its gradient predicts"),
    ({HARD: (0.0, 0.05), SEMI_HARD: (0.0, 0.01)}, "Hard mining is **not** less margin-sensitive here")])
def test_mining_verdict_judges_each_strategy_and_the_margin_sweep(chapter, monkeypatch, sweep, finding):
    """Semi-hard is 5 points above hard in every seed ("lies above zero"), all triplets 3 below semi-hard, batch-hard
    equal to it but for noise; FaceNet's, the best, is 2 above it in every seed by exactly the same amount (no
    interval: "nothing can be concluded"). The ledger judges semi-hard − hard on omniglot only. Hard contracts on
    3 of 10 seeds without collapsing, batch-hard on all 10 and collapses. Hard moves 1 point across margins and
    semi-hard 5 (less sensitive), or the reverse (not)."""
    from lib import ledger
    ch = chapter("02_mining", mining_table(sweep))
    monkeypatch.setattr(ledger, "chapter_sentence", lambda ch, ds, a, b, metric: "reproduced: STUB"
                        if (ds, a, b) == ("omniglot", SEMI_HARD, HARD) else None)
    omniglot, beluga, margin = mining.verdict(ch, mining.comparisons(ch)).split("\n\n**")
    for part in (omniglot, beluga):
        assert f"chosen after the fact: *{FACENET}*" in part and "one Holm family of 4 comparisons on map@r" in part
        assert f"- {SEMI_HARD} − {HARD}: Δ +5.0 points (" in part
        for name, where in ((SEMI_HARD, "lies above zero"), (ALL, "lies below zero"), (BH, "includes zero"),
                            (FACENET, "every seed gave the same difference, so no interval: nothing can be concluded")):
            line = next(line for line in part.splitlines() if line.startswith(f"- {name} − "))
            assert where in line and line.endswith("(this chapter's family, exploratory).")
        ratio = "(spread ratio 0.500)"
        assert f"*{HARD}* contracts the embedding in 3 of 10 seeds {ratio} but does not collapse it" in part
        assert f"*{BH}* contracts the embedding in 10 of 10 seeds {ratio} and collapses it in 10 of 10" in part
        assert f"*{SEMI_HARD}* " not in part.split("- Geometry")[1]  # neither contracted nor collapsed: not listed
    assert f"  - FaceNet's claim. **The ledger's verdict** on {SEMI_HARD} − {HARD}: reproduced: STUB." in omniglot
    assert "ledger's verdict" not in beluga
    hard, semi = (f"{abs(b - a) * 100:.1f} points for {n}" for n, (a, b) in sweep.items())
    assert f"moves by {hard}, {semi} (ranges of means, not a tested difference). {finding}" in margin


@pytest.mark.parametrize("flags, said", [
    ({}, "does not contract the embedding (spread ratio 0.500) and does not collapse it"),
    ({"contracted": FIRST3}, "contracts the embedding in 3 of 10 seeds (spread ratio 0.500) but does not collapse"),
    ({"collapsed": True, "diverged": np.arange(10) < 1}, "and collapses it in 10 of 10 seeds")])
def test_mining_geometry_states_contraction_and_collapse_separately(flags, said):
    """Flags raised on 0, 3 or 10 of 10 seeds are counted as such; one diverged seed is reported."""
    text = mining.geometry(frame(mining_arm(HARD, BASE, "beluga", **flags)), "beluga", HARD)
    assert said in text and "(precision@1 20.0 % against 1.0 % for a random ranking, 20× chance" in text
    assert text.endswith("; 1 of 10 seeds diverged") == ("diverged" in flags)


# ------------------------------------------------------------------ chapter 3: distance-weighted sampling
def dw_table(pml_shift, oneshot=None) -> pd.DataFrame:
    """Wu's recipe and the margin loss alone 5 points above semi-hard triplet on Recall@1 and MAP@R (so the sampling
    alone includes zero), the fallback never fired; pml's arm is Wu's plus `pml_shift`."""
    arms = []
    for ds in ("omniglot", "beluga"):
        for name, values in ((dw.SEMI, BASE), (dw.SEMI_MARGIN, BASE + 0.05 + NOISE),
                             (WU, BASE + 0.05 + NOISE + ZERO), (dw.PML, BASE + 0.05 + NOISE + ZERO + pml_shift)):
            extra = {dw.FALLBACK: 0.0} if name in (WU, dw.PML) else {}
            extra |= {"oneshot_accuracy": oneshot[name]} if oneshot and ds == "omniglot" else {}
            arms.append(arm(name, values, ds, BOTH, **extra))
    return frame(*arms)


@pytest.mark.parametrize("pml_shift, family, said", [
    (0.0, 3, "**no comparison** — the two arms' runs are identical seed by seed (every metric equal), because the "
             "fallback never fired (the miner recorded no anchor without a usable negative at any training step"),
    (ZERO[::-1], 5, "training step of the 10 seed(s); so the difference is run-to-run noise, not the fallback.")])
def test_distance_weighted_dataset_verdict_separates_loss_sampling_and_fallback(chapter, pml_shift, family, said):
    """Wu's recipe and the loss alone "lie above zero", the sampling alone "includes zero". pml's arm identical to
    Wu's voids the dropping comparison (family of 3); differing by noise it stays (family of 5), called noise."""
    ch = chapter("03_distance_weighted", dw_table(pml_shift))
    found = dw.comparisons(ch)
    assert found[found.comparison == dw.DROPPING]["effect"].eq(dw.VOID).all() == (family == 3)
    text = dw.dataset_verdict(ch, found, "omniglot")
    assert f"(recall@1, 10 seed(s) paired; one Holm family of {family} comparisons)" in text
    assert text.count("lies above zero") == 3 + (family == 5)  # the recipe, the loss alone, MAP@R (pml's recipe)
    assert "The sampling alone: Δ +0.0 points (" in text and "includes zero" in text.split("The sampling alone:")[1]
    assert said in text


@pytest.mark.parametrize("shares, said", [
    (None, "so the fallback never changed the training (the runs do not record how often the fallback fired)"),
    ([0.0] * 10, "because the fallback never fired"),
    ([0.01] * 4 + [0.0] * 6, "even though the miner recorded anchors without a usable negative on 4 of 10 seed(s), "
                             "0.4 % of anchors on average")])
def test_distance_weighted_void_fallback_says_why(shares, said):
    """A void dropping comparison explains itself by what the runs recorded: nothing, 0 of 10 seeds, 4 of 10."""
    table = frame(arm(WU, BASE, **({dw.FALLBACK: np.array(shares)} if shares else {})))
    assert said in dw.fallback_text(table, "beluga", pd.DataFrame({"effect": {dw.DROPPING: dw.VOID}}))


@pytest.mark.parametrize("best, place", [
    (0.90, "above a convolutional network but below people and Bayesian Program Learning"),
    (0.97, "above all three"), (0.50, "below all three")])
def test_distance_weighted_oneshot_places_the_best_setting_among_lakes_anchors(chapter, best, place):
    """Wu's recipe, the best setting's one-shot accuracy (chosen after the fact), against 86.5, 95.5 and 96.7 %;
    without one-shot runs there is no paragraph."""
    scores = {dw.SEMI: 0.3, dw.SEMI_MARGIN: 0.4, WU: best, dw.PML: 0.2}
    text = dw.oneshot_verdict(chapter("03_distance_weighted", dw_table(0.0, {k: v + ZERO for k, v in scores.items()})))
    assert f"Best of 4 settings" in text and f"*{WU}* with {best * 100:.1f} ±" in text
    assert f"this best setting is {place}." in text
    assert dw.oneshot_verdict(chapter("03_distance_weighted", dw_table(0.0))) is None


def test_distance_weighted_gradient_and_pretrained_verdicts(chapter):
    """Ratios above 1 everywhere uphold Wu's premise, one below 1 does not; pretrained Wu 10 points above Wu from
    scratch "lies above zero" on MAP@R and Recall@1, pretrained semi-hard equal to scratch includes zero."""
    held = dw.gradient_verdict(pd.DataFrame({"ratio": {"omniglot": 3.0, "beluga": 1.5}}))
    assert "3.0× on omniglot, 1.5× on beluga" in held and held.endswith("holds on the real network.")
    assert "does **not** hold" in dw.gradient_verdict(pd.DataFrame({"ratio": {"omniglot": 3.0, "beluga": 0.8}}))
    extra = frame(*[arm(n + PRETRAINED, v, "beluga", BOTH, train_seconds=120.0)
                    for n, v in ((dw.SEMI, BASE + ZERO), (WU, BASE + 0.15 + NOISE))])
    ch = chapter("03_distance_weighted", pd.concat([dw_table(0.0).assign(train_seconds=60.0), extra]))
    lines = dw.pretrained_verdict(ch, *dw.pretrained_comparisons(ch)).splitlines()
    assert "Holm over 2):" in lines[0] and len(lines) == 3
    assert lines[1].startswith(f"- {dw.SEMI}: pretrained vs scratch: ")
    assert "(2.0 training min a seed) against" in lines[1]
    assert all("includes zero" in part for part in lines[1].split("; on recall@1"))
    assert lines[2].count("Δ +10.0 points") == 2 and lines[2].count("lies above zero") == 2


# ------------------------------------------------------------------ chapter 4: divide and conquer
CENTRE, OTHER, WARM = "K=4, M=2", "K=4, M=1", "K=4, M=2, warm start"


def curves(*recall_per_epoch) -> list:
    """Stand-in runs whose history is each seed's held-out Recall@1 after epochs 1, 2, 3."""
    return [SimpleNamespace(history=pd.DataFrame({"epoch": [1, 2, 3], dnc.CURVE: r})) for r in recall_per_epoch]


def test_divide_and_conquer_verdict_reads_the_centre_the_post_hoc_best_and_the_trajectories(chapter):
    """Omniglot: the centre K=4, M=2 is 5 points above one learner in every seed, K=4, M=1 8 (the post hoc best);
    one learner still improved at the last epoch, the centre did not, and the regime is not the paper's (the budget
    qualifier). Beluga: the centre equals one learner but for noise ("includes zero"); neither arm improved last."""
    ch = chapter("04_divide_and_conquer", frame(*[arm(s, v, ds, BOTH) for s, v, ds in [
        (SINGLE, BASE, "omniglot"), (CENTRE, BASE + .05 + NOISE, "omniglot"), (OTHER, BASE + .08 - NOISE, "omniglot"),
        (SINGLE, BASE, "beluga"), (CENTRE, BASE + ZERO, "beluga"), (OTHER, BASE + ZERO[::-1], "beluga")]]))
    assert dnc.centre(ch) == CENTRE and set(dnc.grid(ch)) == {SINGLE, CENTRE, OTHER}
    improving = dnc.still_improving(ch, {
        "omniglot": {SINGLE: curves([.1, .2, .3], [.1, .2, .4]), CENTRE: curves([.1, .3, .2], [.1, .3, .3])},
        "beluga": {SINGLE: curves([0.1, 0.2, 0.2]), CENTRE: curves([0.1, 0.2, 0.1])}})
    omniglot, beluga, *_ = dnc.verdict(ch, dnc.comparisons(ch), improving).split("\n\n**")
    assert f"centre *{CENTRE}* against one learner: Δ +5.0 points (95 % (Holm level 0.05, family of 2)" in omniglot
    assert "lies above zero. (MAP@R: Δ +5.0 points" in omniglot and "same Holm family of 2 comparisons" in omniglot
    assert f"chosen after the fact (post hoc, not a test): *{OTHER}*, Δ +8.0 points" in omniglot
    assert "+15.0 points for K=1 (single learner) (2/2 seeds improving) and -5.0 points for K=4, M=2 (0/2" in omniglot
    assert f"{SINGLE} was still improving when training stopped" in omniglot
    assert omniglot.endswith("Training stopped while an arm was still learning: a small-budget outcome, not a test "
                             "of the paper.")
    assert f"*{CENTRE}* against one learner: Δ +0.0 points" in beluga and "includes zero" in beluga.split("(MAP@R")[0]
    assert "neither arm improved in its last epoch" in beluga and "still learning" not in beluga


def test_divide_and_conquer_budget_verdict_tests_the_trend_paired_by_seed(chapter, tmp_path):
    """The centre is 5 points below one learner at 1x and level with it at 2x in every seed: the gap changes by +5,
    so the paired trend "lies above zero"; the warm start is 2 below at both budgets, so its trend "includes zero".
    The gaps are one Holm family of 4, the trends one of 2."""
    ch = chapter("04_divide_and_conquer", frame(*[arm(s, v, "omniglot", BOTH) for s, v in [
        (SINGLE, BASE), (CENTRE, BASE - 0.05 + NOISE), (WARM, BASE - 0.02 + NOISE[::-1]),
        (f"{SINGLE}, 2x budget", BASE + 0.1), (f"{CENTRE}, 2x budget", BASE + 0.1 + NOISE[::-1]),
        (f"{WARM}, 2x budget", BASE + 0.08 + NOISE[::-1] + ZERO)]]))
    _, gap = dnc.budgets(ch)
    assert list(gap.index) == ["1x", "2x", "1x, warm start", "2x, warm start"] and (gap["family"] == 4).all()
    assert gap["epochs"].tolist()[:2] == [dnc.budget_arms(ch)[SINGLE].train.epochs * m for m in (1, 2)]
    centre, warm = dnc.budget_verdict(ch, gap).split(f"*{CENTRE}*: ")[1].split(f"*{WARM}*: ")
    assert "1x (" in centre and "Δ -5.0 points (" in centre and "2x (" in centre
    trend = centre.split("seed by seed: ")[1]
    assert trend.startswith("Δ +5.0 points (97.5 % (Holm level 0.05/2, family of 2) interval")
    assert "lies above zero" in trend.split(". ")[0]
    trend = warm.split("seed by seed: ")[1]
    assert trend.startswith("Δ +0.0 points (") and "includes zero" in trend
    assert "The warm start trains the whole embedding first" in warm
    saved = pd.read_csv(tmp_path / "04_divide_and_conquer-budget-trend.csv", index_col="arm")
    assert saved.loc[CENTRE, "gap_at_shortest"] == pytest.approx(-0.05) and saved.loc[CENTRE, "low"] > 0


def test_divide_and_conquer_one_budget_has_no_trend_to_test(chapter, monkeypatch):
    """With one budget (smoke's [1]) there is nothing to compare 1x with: no trend row, no trend sentence."""
    ch = chapter("04_divide_and_conquer", frame(*[arm(s, v, "omniglot", BOTH) for s, v in [
        (SINGLE, BASE), (CENTRE, BASE - 0.05 + NOISE), (WARM, BASE - 0.02 + NOISE[::-1])]]))
    monkeypatch.setattr(ch, "settings", ch.settings.model_copy(update={"budgets": [1]}))
    _, gap = dnc.budgets(ch)
    assert dnc.trend(ch).empty and "Paired test of the trend" not in dnc.budget_verdict(ch, gap)


# ------------------------------------------------------------------ chapter 5: re-identification
DIVIDED, ONE = "divide and conquer K=4, M=2 (chapter 4)", "single learner (chapter 4)"
BLOG, BLOG_PRE = "blog (chapter 1)", "blog, pretrained (chapter 1)"
LATER, PER_IMAGE = "mAP@20 top, later encounter", "mAP@5 all photo(s), per image"


def reid_arm(setting, values, **open_set):
    """One recipe: every closed-set score `values`, averaging a whale's photos 3 points above ranking per image."""
    cols = {m: values for m in ("mAP@20 top, same encounter allowed", "mAP@5 1 photo(s), per image",
                                "mAP@5 2 photo(s), per image", PER_IMAGE, "mAP@5 1 photo(s), averaged")}
    cols |= {"mAP@5 2 photo(s), averaged": values + 0.03 + NOISE, "mAP@5 all photo(s), averaged": values + .03 - NOISE}
    return arm(setting, values, metrics=(LATER,), **cols, **open_set)


@pytest.mark.parametrize("gap, said", [
    (None, "was not measured for both arms in this profile"),
    (0.01, "the score sits within 1.0 points of that trivial score, too close to the floor to resolve a +2-point"),
    (0.10, "the score moves up to 10.0 points away from that trivial score")])
def test_reidentification_open_set_line_says_whether_the_score_can_resolve_the_claim(chapter, gap, said):
    """Open-set mAP@5 not measured, within 1 point of answering "new" first (less than the claimed +2 points),
    or 10 points away from it."""
    kw = {} if gap is None else {"open-set mAP@5": 0.4 + gap, "open-set mAP@5, 'new' first": 0.4, reid.CALLED_NEW: .9}
    table = frame(reid_arm(DIVIDED, BASE, **kw), reid_arm(ONE, BASE, **kw))
    assert said in reid._open_set_line(chapter("05_reidentification"), table)


@pytest.mark.parametrize("shift, said", [
    (0.05 + NOISE, "reproduced: Δ +5.0 points (95 % interval"),
    (ZERO, "no effect as large as claimed: Δ +0.0 points (95 % interval"),
    (0.05 * np.array([1, -1] * 5), "inconclusive: Δ +0.0 points (95 % interval")])
def test_reidentification_claim_lines_judge_the_humpback_gain(chapter, shift, said):
    """Divided minus one learner on the closed-set metrics, against the claimed +2 points: +5 in every seed
    reproduces it, ±0.2-point noise rules it out (TOST), ±5-point noise decides nothing; always "in a regime other
    than the claim's". Where the ledger judges a metric, its sentence is quoted instead."""
    ch = chapter("05_reidentification")
    table = frame(reid_arm(DIVIDED, BASE + shift), reid_arm(ONE, BASE))
    lines = reid._claim_lines(ch, table)
    assert [line.split("*")[1] for line in lines] == [PER_IMAGE, LATER]
    assert all(said in line and line.endswith("; in a regime other than the claim's.") for line in lines)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(reid, "_ledger_rows", lambda ch: {PER_IMAGE: ("reproduced", "reproduced: LEDGER")})
        first, second = reid._claim_lines(ch, table)
    assert first == f"- *{PER_IMAGE}* (decides), **the ledger's verdict**: reproduced: LEDGER."
    assert second.startswith(f"- *{LATER}* (checks, exploratory): ")


def test_reidentification_verdict_names_the_post_hoc_best_and_its_paired_checks(chapter):
    """The divided recipe scores highest at a later encounter (named post hoc, among 4); the blog gets its line; the
    pretrained blog, 10 points above it, "lies above zero" on both scenarios; averaging is 3 points above ranking per
    image for 2 and all catalogue photos (Holm over the 2); no open-set scores: the new-individual line says so."""
    table = frame(reid_arm(BLOG, BASE), reid_arm(BLOG_PRE, BASE + 0.10 + NOISE), reid_arm(ONE, BASE + 0.1),
                  reid_arm(DIVIDED, BASE + 0.15 + NOISE))
    assert reid.best_recipe(table, LATER) == DIVIDED
    paragraphs = reid.verdict(chapter("05_reidentification"), table).split("\n\n")
    assert f"*{DIVIDED}* (best on the test split, chosen after the fact, among 4 recipes" in paragraphs[0]
    assert paragraphs[1].startswith("**The blog's configuration** scores 30.") and "reported 26.0 %" in paragraphs[1]
    pretrained = next(p for p in paragraphs if p.startswith("**Pretrained against scratch**"))
    assert pretrained.count(f"{BLOG_PRE} vs {BLOG}, ") == 2 and pretrained.count("lies above zero") == 2
    averaging = [p for p in paragraphs if p.startswith("**Averaging each whale's photos**")]
    assert len(averaging) == 2 and f"({DIVIDED}, 2 catalogue photos" in averaging[0] and "all catalogue" in averaging[1]
    assert all("Holm-corrected over catalogue sizes" in p and p.endswith("lies above zero.") for p in averaging)
    assert any(p.startswith(f"**New individuals** ({DIVIDED}): not measured in this profile") for p in paragraphs)
    assert not any("Smoke profile" in p for p in paragraphs)


# ------------------------------------------------------------------ chapter 6: the one-shot record
def step(ingredient, selection, oneshot, kept=True, views=osr.scoring.IDENTITY) -> osr.Step:
    """A road step whose runs (stand-ins) scored `oneshot` on Lake's runs after 6 minutes of training."""
    runs = [SimpleNamespace(config=SimpleNamespace(train=SimpleNamespace(seed=s, epochs=4)),
                            metrics={"oneshot_accuracy": a, "recall@1": 0.5, "train_seconds": 360.0, "train_steps": 10})
            for s, a in zip(SEEDS, oneshot)]
    return osr.Step(ingredient, ingredient, runs, dict(zip(SEEDS, selection)), None, kept, [], views)


@pytest.mark.parametrize("selection, kept", [(BASE + 0.01 + NOISE, True), (BASE - 0.01 + NOISE, False),
                                             (BASE + ZERO - 1e-4, False), ([], False)])
def test_oneshot_road_keeps_an_ingredient_only_for_a_positive_mean_paired_gain(selection, kept):
    """+1 point in every seed is kept; -1 point, or a mean gain just below zero, is dropped; with no seed in
    common there is no gain (NaN) and nothing is kept."""
    current, steps, tried = step(osr.START, BASE, BASE), [], step("x", selection, BASE)
    assert osr._judge(tried, current, steps) is kept and tried.kept is kept and steps == [tried]
    assert (tried.gain.n, np.isnan(tried.gain.diff)) == ((10, False) if len(selection) else (0, True))


CONVNET, PEOPLE, BPL = (f"{who} (Lake et al. 2015)" for who in ("ConvNet", "people", "BPL"))


@pytest.mark.parametrize("shot, above, below", [
    (0.96, f"{CONVNET}, {PEOPLE}", f"{BPL} (96.7%)"),
    (0.80, None, f"{CONVNET} (86.5%), {PEOPLE} (95.5%), {BPL} (96.7%)"), (0.99, f"{CONVNET}, {PEOPLE}, {BPL}", None)])
def test_oneshot_conclusion_names_what_was_kept_and_the_anchors_on_these_runs(chapter, shot, above, below):
    """The road kept the first ingredient (+2 points on validation) and dropped the second (-1); the chosen recipe
    (5 test-time views) averages `shot` on Lake's runs and is placed only against the levels published on these runs
    (never Koch et al.'s, measured on other trials). Nothing kept: the start is the recipe."""
    ch = chapter("06_oneshot_record")
    start = step(osr.START, BASE, BASE)
    views = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))
    first = step("multi-similarity loss", BASE + 0.02 + NOISE, shot + ZERO, views=views)
    second = step("4x schedule", BASE + 0.01 + NOISE, shot + ZERO, kept=False)
    for s, before in ((first, start), (second, first)):
        s.gain = osr.stats.paired_difference(s.selection, before.selection)
    table = osr.road_table(ch, [start, first, second])
    assert table["kept"].tolist() == [True, True, False] and table.loc["4x schedule", "gain"] == pytest.approx(-0.01)
    backgrounds = pd.DataFrame({"oneshot_accuracy mean": [shot, 0.7], "oneshot_accuracy sd": [0.01, 0.02]},
                               index=["full (30 alphabets)", "small1 (5 alphabets)"])
    text = osr.conclusion(ch, [start, first, second], table, np.full((10, 20), shot), backgrounds)
    assert text.startswith("The road kept **multi-similarity loss** and dropped 4x schedule, each judged by")
    assert f"scores **{shot * 100:.1f} ± 0.2 %**" in text
    assert "after 6.0 minutes of training per seed, each image embedded under 5 test-time views." in text
    assert (f"On these very runs it is above {above}. " in text) if above else "it is above" not in text
    assert (f"It stays below {below}. " in text) if below else "stays below" not in text
    assert "Koch" not in text and "70.0 ± 2.0 % (small1 (5 alphabets))" in text and "Profile quick:" in text
    nothing = osr.conclusion(ch, [start, second], table, np.full((10, 20), shot), backgrounds.iloc[:1])
    assert nothing.startswith("The road kept **nothing beyond the start** and dropped 4x schedule")
    assert "minimal background" not in nothing and "test-time views" not in nothing
