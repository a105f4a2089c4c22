"""The chapters' "Try this." exercises whose outcome is known, checked as their text states it.

Each test names the notebook whose exercise it checks; `test_every_exercise_is_in_its_notebook`
keeps the text and the tests together. The ones that train run on the smoke profile, a few seconds
each, and are marked slow.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lib import divide, ledger, mechanics as M, reid, stats, train
from lib.chapters import mechanics
from lib.chapters.oneshot_record import Step, _judge
from lib.config import load_profile

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
HELD_OUT = ["map@r", "r_precision", "precision@1", "recall@1", "recall@2", "recall@4", "recall@8", "nmi",
            "effective_rank", "spread_ratio"]


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("METRIC_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


def exercise(notebook: str) -> str:
    """The notebook's "Try this." cell(s), as one text."""
    cells = json.loads((NOTEBOOKS / f"{notebook}.ipynb").read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells
                     if c["cell_type"] == "markdown" and "".join(c["source"]).startswith("**Try this.**"))


@pytest.mark.parametrize("notebook, phrases", [
    ("00_quickstart", ["eval.recall_ks=[1,2,4,8,16]", "never falls as K grows", "Recall@1 equals Precision@1",
                       "MAP@R is never above R-precision"]),
    ("00b_mechanics", ["triplet_table(margin=0.4)", "B2 of anchor A3", "from easy to semi-hard", "12 hard triplets"]),
    ("01_beluga_collapse", ["optim__lr=1e-3", "loss_space_effective_rank", "higher than the blog's"]),
    ("02_mining", ["type_of_triplets=hard", "miner.kwargs.margin=0.5", "identical", "two different runs"]),
    ("03_distance_weighted", ["nonzero_loss_cutoff=2.0", "all zeros", "sums to 1"]),
    ("04_divide_and_conquer", ["divided_epochs", "divide.clusters", "is 0"]),
    ("05_reidentification", ["catalogue_photos", "per image and averaged", "equal"]),
    ("06_oneshot_record", ["ingredients.nothing", "exactly 0", "drops it"]),
    ("07_claims_ledger", ["tables_from", "share_verdict(0, 3, False)", "share_verdict(0, 10, False)", "71 %", "31 %"]),
])
def test_every_exercise_is_in_its_notebook(notebook, phrases):
    text = exercise(notebook)
    assert text, f"{notebook} has no '**Try this.**' cell"
    for phrase in phrases:
        assert phrase in text, (notebook, phrase)


# ----------------------------------------------------------------------------- trained on smoke
@pytest.mark.slow
def test_quickstart_recall_at_k_rises_and_map_at_r_stays_below_r_precision(runs, shared_data):
    """00_quickstart: `python -m lib.train smoke --dataset omniglot --chapter 00_quickstart
    --set eval.recall_ks=[1,2,4,8,16]`: Recall@K never falls with K, Recall@1 = Precision@1,
    MAP@R <= R-precision."""
    profile = load_profile("smoke")
    cfg = profile.run_config("omniglot", profile.chapter("00_quickstart")["runs"]["omniglot"])
    m = train.run(cfg.with_overrides({"eval.recall_ks": [1, 2, 4, 8, 16]}), progress=False).metrics
    recalls = [m[f"recall@{k}"] for k in (1, 2, 4, 8, 16)]
    assert recalls == sorted(recalls)
    assert m["recall@1"] == pytest.approx(m["precision@1"], abs=1e-12)
    assert m["map@r"] <= m["r_precision"] + 1e-12


@pytest.mark.slow
def test_blog_at_lr_1e_3_has_a_higher_loss_space_effective_rank(runs, shared_data):
    """01_beluga_collapse: the blog's configuration with optim.lr 1e-3 instead of 0.1 (nothing else
    changed) ends with a higher effective rank in the space the loss sees."""
    profile = load_profile("smoke")
    chapter = profile.chapter("01_beluga_collapse")
    blog = profile.run_config("beluga", chapter["runs"]["beluga"], chapter["blog"])
    assert blog.optim.lr == 0.1
    at_blog = train.run(blog, progress=False).metrics
    at_low = train.run(blog.with_overrides({"optim.lr": 1e-3}), progress=False).metrics
    assert at_low["loss_space_effective_rank"] > at_blog["loss_space_effective_rank"]


def _mining(profile, kind: str, margin: float):
    """02_mining's exercise: `python -m lib.train smoke --dataset omniglot --set miner.kwargs.type_of_triplets=KIND
    --set miner.kwargs.margin=M --set loss.kwargs.margin=M`."""
    cfg = profile.run_config("omniglot").with_overrides(
        {"miner.kwargs.type_of_triplets": kind, "miner.kwargs.margin": margin, "loss.kwargs.margin": margin,
         "eval.oneshot": False})  # the held-out retrieval metrics are the claim; Lake's runs only add time
    return train.run(cfg, progress=False).metrics


@pytest.mark.slow
def test_hard_mining_gives_the_same_embedding_at_margins_0_1_and_0_5(runs, shared_data):
    profile = load_profile("smoke")
    low, high = (_mining(profile, "hard", m) for m in (0.1, 0.5))
    for metric in HELD_OUT:
        assert low[metric] == high[metric], metric


@pytest.mark.slow
def test_semihard_mining_at_margins_0_1_and_0_5_gives_two_different_runs(runs, shared_data):
    profile = load_profile("smoke")
    low, high = (_mining(profile, "semihard", m) for m in (0.1, 0.5))
    assert any(low[metric] != high[metric] for metric in HELD_OUT)


# ----------------------------------------------------------------------------- no training
def test_mechanics_a_wider_margin_moves_b2_from_easy_to_semihard():
    """00b_mechanics: at margin 0.4 instead of 0.2, (A3, A1, B2) goes from easy to semi-hard with a
    loss of 0.4 - 0.302; the 12 hard triplets stay hard, each loss up by exactly 0.2; pml agrees."""
    at = {m: mechanics.triplet_table(margin=m).set_index(["anchor", "positive", "negative"]) for m in (0.2, 0.4)}
    row = ("A3", "A1", "B2")
    assert at[0.2].loc[row, "band (by hand)"] == "easy" and at[0.2].loc[row, "triplet loss"] == 0
    assert at[0.4].loc[row, "band (by hand)"] == "semihard"
    assert at[0.4].loc[row, "triplet loss"] == pytest.approx(0.4 - at[0.4].loc[row, "D_an - D_ap"])
    assert round(at[0.4].loc[row, "D_an - D_ap"], 3) == 0.302
    hard = {m: set(t.index[t["band (by hand)"] == "hard"]) for m, t in at.items()}
    assert hard[0.2] == hard[0.4] and len(hard[0.2]) == 12
    rows = sorted(hard[0.2])
    np.testing.assert_allclose(at[0.4].loc[rows, "triplet loss"] - at[0.2].loc[rows, "triplet loss"], 0.2, atol=1e-12)
    moved = at[0.2].index[(at[0.2]["band (by hand)"] == "easy") & (at[0.4]["band (by hand)"] == "semihard")]
    assert row in moved
    for t in at.values():
        assert (t["band (by hand)"] == t["band (pml)"]).all()


def test_wu_cutoff_at_the_sphere_diameter_gives_b1_a_negative():
    """03_distance_weighted: on the six points, anchor B1's row of Wu's weights is all zeros at the
    non-zero-loss cut-off 1.4 and sums to 1 at 2.0, where dropping and the uniform fallback agree."""
    x, y = M.example()
    d = M.distances(x)
    b1 = M.EXAMPLE_NAMES.index("B1")
    assert M.wu_weights(d, y, dim=2)[b1].sum() == 0
    wide = M.wu_weights(d, y, dim=2, nonzero_loss_cutoff=2.0)
    assert wide[b1].sum().item() == pytest.approx(1.0)
    torch.testing.assert_close(wide, M.wu_weights(d, y, dim=2, nonzero_loss_cutoff=2.0, fallback="uniform"))


@pytest.mark.parametrize("name", ["smoke", "quick"])
def test_divide_and_conquer_with_one_cluster_divides_no_epoch(name):
    """04_divide_and_conquer: the centre divides epochs - warm-up - fine-tuning epochs; with
    divide.clusters=1 no epoch is divided, whatever M."""
    from lib.study import Chapter, divide_setting

    ch = Chapter("04_divide_and_conquer", name)
    at = ch.settings.grid_at
    centre = divide_setting(ch, "omniglot", at.clusters, at.recluster_every)
    d = centre.divide
    assert divide.divided_epochs(centre) == centre.train.epochs - d.warmup_epochs - d.finetune_epochs > 0
    for m in (1, 2, 3):
        assert divide.divided_epochs(centre.with_overrides({"divide.clusters": 1, "divide.recluster_every": m})) == 0


def test_one_photo_per_whale_per_image_equals_averaged():
    """05_reidentification: with one catalogue photo per individual, ranking by the closest photo and
    by the mean of the photos are the same (the mean of one unit vector is that vector)."""
    rng = np.random.default_rng(0)
    ids = np.arange(30)
    catalogue = rng.normal(size=(30, 16)).astype(np.float32)
    catalogue /= np.linalg.norm(catalogue, axis=1, keepdims=True)
    query_labels = rng.choice(ids, size=80)
    query = catalogue[query_labels] + 0.8 * rng.normal(size=(80, 16)).astype(np.float32)
    query /= np.linalg.norm(query, axis=1, keepdims=True)
    per_image = reid.closed_map5(query, query_labels, catalogue, ids, average=False)
    averaged = reid.closed_map5(query, query_labels, catalogue, ids, average=True)
    assert 0 < per_image < 1 and per_image == pytest.approx(averaged, abs=1e-12)


def test_an_ingredient_that_changes_nothing_is_dropped():
    """06_oneshot_record: `ingredients.nothing: {}` is accepted, its run is the recipe it extends
    (the same cache key), so its paired gain is exactly 0 and the road does not keep it."""
    from lib.study import Chapter

    ch = Chapter("06_oneshot_record", "smoke", {"chapters.06_oneshot_record.ingredients.nothing": {}})
    assert list(ch.settings.ingredients)[-1] == "nothing"
    start = ch.config("omniglot", ch.settings.start)
    same = ch.config("omniglot", ch.settings.start, ch.settings.ingredients["nothing"])
    assert train.run_dir_for(same).key == train.run_dir_for(start).key
    selection = {0: 0.41, 1: 0.43, 2: 0.40}
    current = Step("start", "start", [], selection, None, True, [])
    step = Step("start + nothing", "nothing", [], dict(selection), None, True, [])
    assert _judge(step, current, []) is False and step.gain.diff == 0


def test_share_of_zero_seeds_needs_ten_seeds_to_contradict_most():
    """07_claims_ledger: 0 of 3 seeds is inconclusive (upper bound 71 %), 0 of 10 contradicts (31 %)."""
    three, ten = ledger.share_verdict(0, 3, False), ledger.share_verdict(0, 10, False)
    assert three[0] == stats.Verdict.INCONCLUSIVE and ten[0] == stats.Verdict.CONTRADICTED
    assert round(stats.clopper_pearson(0, 3)[1] * 100) == 71 and round(stats.clopper_pearson(0, 10)[1] * 100) == 31
    assert "71 %" in three[1] and "31 %" in ten[1]
