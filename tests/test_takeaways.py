"""The chapters' closing box (lib.takeaways): the ledger's sentences word for word, chapter 1's
collapse shares with their exact intervals, the times read from data, the glossary links."""
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from lib import ledger, records, stats, takeaways
from lib.config import load_profile
from lib.config.chapters import MarginSweep

REPO = Path(__file__).resolve().parent.parent
CHAPTERS = sorted(p.stem for p in (REPO / "notebooks").glob("[0-9]*.ipynb"))


# ----------------------------------------------------------------------------- glossary
def test_anchor_is_githubs():
    assert takeaways.anchor("Recall@K") == "recallk"
    assert takeaways.anchor("Holm (Holm-Bonferroni)") == "holm-holm-bonferroni"
    assert takeaways.anchor("mAP@k (re-identification)") == "mapk-re-identification"
    assert takeaways.anchor("Minimum detectable effect (MDE)") == "minimum-detectable-effect-mde"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_chapter_links_terms_the_glossary_has(chapter):
    line = takeaways.terms_line(chapter)
    headings = takeaways.glossary_headings()
    links = re.findall(r"\[([^]]+)\]\(\.\./\.\./docs/glossary\.md#([^)]+)\)", line)
    assert links and len(links) == len(takeaways.TERMS[chapter])
    for term, anchor in links:
        assert term in headings and anchor == takeaways.anchor(term)
    # the link is relative to reports/<profile>/<chapter>.ipynb, where the box is read
    assert (REPO / "reports" / "full" / takeaways.GLOSSARY_LINK).resolve() == (REPO / "docs" / "glossary.md").resolve()


def test_a_term_the_glossary_lacks_raises(monkeypatch):
    monkeypatch.setitem(takeaways.TERMS, "00_quickstart", ["No such term"])
    with pytest.raises(KeyError, match="No such term"):
        takeaways.terms_line("00_quickstart")


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_notebook_closes_with_the_box_and_an_exercise(chapter):
    cells = json.loads((REPO / "notebooks" / f"{chapter}.ipynb").read_text())["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    assert any("takeaways.box(ch" in c for c in code)
    assert any("".join(c["source"]).startswith("**Try this.**") for c in cells if c["cell_type"] == "markdown")


# ----------------------------------------------------------------------------- times
def _times(root: Path, rows: list[str]) -> Path:
    (root / "docs").mkdir(parents=True, exist_ok=True)
    (root / takeaways.TIMES).write_text(",".join(takeaways.TIME_COLUMNS) + "\n" + "\n".join(rows) + "\n")
    return root


def test_time_line_prefers_the_last_measured_quick_run(tmp_path):
    root = _times(tmp_path, ["02_mining,quick,2-core CPU,245,2026-11-28,./run_all.sh --profile quick,docs/glossary.md"])
    line = takeaways.time_line("02_mining", root)
    assert "4.1 min (measured 2026-11-28; from docs/glossary.md via `docs/chapter_times.csv`)" in line
    (root / "reports" / "quick").mkdir(parents=True)
    (root / "reports" / "quick" / "timings.tsv").write_text("300 02_mining.ipynb\n61 00_quickstart.ipynb\n")
    line = takeaways.time_line("02_mining", root)
    assert "5.0 min (`reports/quick/timings.tsv`" in line and "245" not in line
    assert "61 s (`reports/quick/timings.tsv`" in takeaways.time_line("00_quickstart", root)
    assert "from an empty run cache): not measured." in takeaways.time_line("06_oneshot_record", root)


def test_gpu_time_is_read_or_not_measured(tmp_path):
    root = _times(tmp_path, ["02_mining,quick,2-core CPU,245,2026-11-28,x,docs/glossary.md"])
    assert takeaways.time_line("02_mining", root).endswith("On a GPU: not measured.")
    root = _times(tmp_path, ["all,full,one H200 GPU,444,,113 runs,docs/gpu.md (7.4 minutes)"])
    gpu = takeaways.gpu_time("02_mining", root)
    assert gpu.startswith("not measured for this chapter") and "7.4 min on one H200 GPU" in gpu
    assert "date not recorded; from docs/gpu.md (7.4 minutes)" in gpu
    root = _times(tmp_path, ["all,full,one H200 GPU,444,,113 runs,docs/gpu.md",
                             "02_mining,full,one H200 GPU,90,2026-12-01,x,a run"])
    assert takeaways.gpu_time("02_mining", root).startswith("90 s on one H200 GPU, full profile (measured 2026-12-01")


def test_the_committed_times_cite_numbers_the_repository_has():
    """docs/chapter_times.csv holds only numbers from the glossary's reading order, reports/full/timings.tsv
    and docs/gpu.md, and the glossary's table agrees with it."""
    times = takeaways.chapter_times()
    assert list(times.columns) == takeaways.TIME_COLUMNS
    assert set(times.chapter) - {"all"} <= set(CHAPTERS)
    full = takeaways.read_timings(REPO / "reports" / "full" / "timings.tsv")
    glossary = (REPO / takeaways.GLOSSARY).read_text()
    table = {m.group(1): (m.group(2), m.group(3)) for m in
             re.finditer(r"^\| \d+ \| `(\w+)` \|.*\| ([\d.]+ (?:s|min)) \| ([\d.]+ (?:s|min)) \|$", glossary, re.M)}
    assert set(table) == set(CHAPTERS)

    def shown(seconds: float, as_minutes: bool) -> str:
        return f"{round(seconds / 60)} min" if as_minutes else f"{seconds:.0f} s"

    for _, row in times.iterrows():
        seconds = float(row["seconds"])
        if "GPU" in row["machine"]:
            assert row["source"].startswith("docs/gpu.md")
            assert f"{seconds / 60:.1f} minutes" in (REPO / "docs" / "gpu.md").read_text()
            continue
        quick, full_cell = table[row["chapter"]]
        if row["profile"] == "quick":
            assert row["source"].startswith("docs/glossary.md") and quick == shown(seconds, False)
        else:
            assert full_cell == shown(seconds, full_cell.endswith("min"))
            if row["source"] == "reports/full/timings.tsv":
                assert full[row["chapter"]] == seconds
            else:
                assert row["source"].startswith("docs/glossary.md")
    for chapter in CHAPTERS:
        assert "not measured" not in takeaways.quick_time(chapter) or not (times.chapter == chapter).any()


# ----------------------------------------------------------------------------- the ledger's sentences
REGIME = {"backbone": "test_resnet", "pretrained": False, "image_size": "28", "evaluated_dim": 64, "epochs": 2}


def _mining_frame(hard_map=(0.30, 0.31, 0.29), hard_collapsed=(True, False, True)) -> pd.DataFrame:
    rows = []
    for seed in range(3):
        for setting, value, collapsed in (("semi-hard", 0.35 + 0.01 * seed, False),
                                          ("hard", hard_map[seed], hard_collapsed[seed]),
                                          ("batch-hard (Hermans)", 0.33 + 0.02 * seed, False)):
            rows.append({"chapter": "02_mining", "dataset": "omniglot", "setting": setting, "seed": seed,
                         "map@r": value, "collapsed": collapsed, "contracted": False, "diverged": False, **REGIME})
        for m, (hard, semi) in {0.05: (0.21, 0.20), 0.2: (0.21, 0.19)}.items():
            rows += [{"chapter": "02_mining", "dataset": "beluga", "setting": f"{name}, α={m}", "seed": seed,
                      "map@r": v, "collapsed": False, "contracted": False, "diverged": False}
                     for name, v in (("hard", hard), ("semi-hard", semi + 0.01 * seed))]
    return pd.DataFrame(rows)


def _chapter(tmp_path, name: str, frame: pd.DataFrame, profile: str = "smoke"):
    p = load_profile(profile)
    path = records.export_path(p.name, name, tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return SimpleNamespace(name=name, profile=p, settings=p.section(name), table=lambda: frame)


def test_ledger_lines_are_the_ledgers_sentences_word_for_word(tmp_path, monkeypatch):
    frame = _mining_frame()
    ch = _chapter(tmp_path, "02_mining", frame)
    lines = takeaways.ledger_lines(ch, root=tmp_path)
    verdicts = ledger.chapter_verdicts(ch, root=tmp_path)
    assert verdicts and all(f": {said}." in line for (_, _, said), line in zip(verdicts, lines))
    assert any("interval" in said for _, _, said in verdicts)  # three seeds: a judged row, not "not run"
    # the share rows as ledger.build writes them, from the same per-seed rows
    empty = pd.DataFrame(columns=frame.columns)
    monkeypatch.setattr(ledger, "read_runs", lambda profile, chapter, root=None: frame if chapter == "02_mining" else empty)
    built = ledger.build(ch.profile)
    share = built[(built.claim == "Mining the hardest negatives collapses training") & (built.dataset == "omniglot")]
    assert f": {share.reason.iloc[0]}." in "\n".join(lines)
    assert "collapsed in 2 of 3 seeds" in share.reason.iloc[0]
    # other numbers, other sentences
    other = takeaways.ledger_lines(_chapter(tmp_path, "02_mining", _mining_frame((0.36, 0.37, 0.38), (False,) * 3)),
                                   root=tmp_path)
    assert other != lines and any("collapsed in 0 of 3 seeds" in line for line in other)


def test_margin_lines_say_where_the_margin_changed_nothing(tmp_path):
    ch = _chapter(tmp_path, "02_mining", _mining_frame())
    ch.settings = ch.settings.model_copy(update={"margin_sweep": MarginSweep(
        dataset="beluga", strategies=["hard", "semi-hard"], margins=[0.05, 0.2])})
    (line,) = takeaways.margin_lines(ch)
    assert "hard: the same MAP@R at every margin in 3 of 3 seed(s), largest change 0.0 points" in line
    assert "semi-hard: the same MAP@R at every margin in 0 of 3 seed(s), largest change 1.0 points" in line


# ----------------------------------------------------------------------------- chapter 1
def _collapse_frame(blog=(True, True, True), lr=(False, False, False), miner=(True, False, None)):
    rows = []
    for setting, flags in (("blog (margin 0.5)", blog), ("lr 1e-3", lr), ("no miner", miner)):
        for seed, flag in enumerate(flags):
            rows.append({"chapter": "01_beluga_collapse", "dataset": "beluga", "setting": setting, "seed": seed,
                         "loss_space_collapsed": flag, "collapsed": flag, "diverged": flag is None})
    return pd.DataFrame(rows)


def test_collapse_shares_count_finished_seeds_with_exact_intervals():
    shares = takeaways.collapse_shares(_collapse_frame(), ["blog (margin 0.5)", "lr 1e-3", "no miner"],
                                       "loss_space_collapsed")
    assert shares.loc["blog (margin 0.5)", ["flagged", "seeds"]].tolist() == [3, 3]
    assert shares.loc["no miner", ["flagged", "seeds", "diverged"]].tolist() == [1, 2, 1]
    for setting, row in shares.iterrows():
        assert (row["low"], row["high"]) == stats.clopper_pearson(int(row["flagged"]), int(row["seeds"]))
    text = takeaways.removes_collapse(shares, "blog (margin 0.5)", "the space the loss sees")
    assert "blog (margin 0.5) collapsed in 3 of 3 seed(s), exact 95 % interval 29–100 %" in text
    assert "Changes after which 0 seeds collapse: lr 1e-3 (0 of 3 seed(s), exact 95 % interval 0–71 %)" in text
    assert "some still do: no miner (1 of 2 seed(s), exact 95 % interval 1–99 %; 1 diverged)" in text


def test_removes_collapse_credits_no_change_when_the_blog_did_not_collapse():
    frame = _collapse_frame(blog=(False, False, False))
    shares = takeaways.collapse_shares(frame, ["blog (margin 0.5)", "lr 1e-3", "no miner"], "collapsed")
    text = takeaways.removes_collapse(shares, "blog (margin 0.5)", "the evaluated features")
    assert "no change can be credited" in text and "no miner (1 of 2" in text


def test_collapse_lines_read_chapter_ones_settings(tmp_path):
    ch = _chapter(tmp_path, "01_beluga_collapse", _collapse_frame(), profile="smoke")
    ch.config = lambda dataset=None, *layers, **dotted: ch.profile.run_config(
        "beluga", ch.settings.runs.get("beluga", {}), *layers, **dotted)
    lines = takeaways.collapse_lines(ch)
    assert any(line.startswith("**What removes the collapse** — In the space the loss sees") for line in lines)
    assert all("lr 1e-3 (0 of 3" in line for line in lines if "pretrained" not in line)


# ----------------------------------------------------------------------------- the box
def test_box_is_a_blockquote_then_time_then_terms(tmp_path):
    ch = _chapter(tmp_path, "02_mining", _mining_frame())
    text = takeaways.box(ch, root=tmp_path)
    quote, time, terms = text.split("\n\n")
    assert quote.startswith("> **Write this down.**\n>\n> - ")
    assert all(line.startswith(">") for line in quote.splitlines())
    for line in takeaways.take_home(ch, root=tmp_path):
        assert f"> - {line}" in quote
    assert time == takeaways.time_line("02_mining") and time.startswith("**Time.** On a laptop")
    assert terms == takeaways.terms_line("02_mining")
