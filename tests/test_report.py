"""The figure index: figures/<profile>/index.html."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from lib import report
from lib.report import write_figure_index

# A minimal valid PNG (1x1), enough for a file the index lists.
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


def _figure(figures: Path, chapter: str, name: str, caption: str | None, svg: bool = True) -> None:
    stem = figures / f"{chapter}-{name}"
    stem.with_suffix(".png").write_bytes(PNG)
    if svg:
        stem.with_suffix(".svg").write_text("<svg/>")
    if caption is not None:
        stem.with_suffix(".json").write_text(json.dumps(
            {"chapter": chapter, "figure": name, "caption": caption, "profile": "smoke"}))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    figures = tmp_path / "figures" / "smoke"
    reports = tmp_path / "reports" / "smoke"
    figures.mkdir(parents=True)
    reports.mkdir(parents=True)
    (tmp_path / "notebooks").mkdir()
    for nb in ["00_quickstart", "01_beluga_collapse", "02_never_run"]:
        (tmp_path / "notebooks" / f"{nb}.ipynb").write_text("{}")
    # Saved out of order, to check that the page follows the chapters.
    _figure(figures, "01_beluga_collapse", "tsne", "t-SNE of <embeddings> & \"classes\"")
    _figure(figures, "00_quickstart", "negative-distances", None, svg=False)   # no sidecar: name shown
    _figure(figures, "00_quickstart", "diagnostics", "Loss & recall per epoch")
    (reports / "00_quickstart.ipynb").write_text("{}")
    (reports / "FAILED-01_beluga_collapse.ipynb").write_text("{}")
    (reports / ".partial-02_never_run.ipynb").write_text("{}")
    return tmp_path


def test_index_lists_figures_by_chapter(repo: Path) -> None:
    path = write_figure_index("smoke", repo_root=repo)
    assert path == repo / "figures" / "smoke" / "index.html"
    page = path.read_text(encoding="utf-8")

    # Header.
    assert "profile <code>smoke</code>" in page
    assert "Generated 20" in page
    # Captions, escaped; the figure without a sidecar is shown under its humanised name.
    assert "t-SNE of &lt;embeddings&gt; &amp; &quot;classes&quot;" in page
    assert "<embeddings>" not in page
    assert "Loss &amp; recall per epoch" in page
    assert "Negative distances" in page
    assert "no caption" not in page.lower()
    # Images, relative to the page, and SVG links where there is an SVG.
    for png in ["00_quickstart-diagnostics.png", "00_quickstart-negative-distances.png",
                "01_beluga_collapse-tsne.png"]:
        assert f'<img src="{png}"' in page
    assert 'href="00_quickstart-diagnostics.svg"' in page
    assert 'href="00_quickstart-negative-distances.svg"' not in page
    # Notebook links, relative: the executed one and the failed one.
    assert 'href="../../reports/smoke/00_quickstart.ipynb"' in page
    assert 'href="../../reports/smoke/FAILED-01_beluga_collapse.ipynb"' in page
    # Chapters in notebook order, and figures inside their own chapter.
    sections = [page.index(f'<section id="{c}">') for c in ["00_quickstart", "01_beluga_collapse", "02_never_run"]]
    assert sections == sorted(sections)
    assert sections[0] < page.index("00_quickstart-diagnostics.png") < sections[1]
    assert sections[0] < page.index("00_quickstart-negative-distances.png") < sections[1]
    assert sections[1] < page.index("01_beluga_collapse-tsne.png") < sections[2]
    # The problems line names the failed chapter and the one never run, not the good one.
    problems = next(line for line in page.splitlines() if "missing or FAILED" in line)
    assert "01_beluga_collapse" in problems and "FAILED" in problems
    assert "02_never_run" in problems and "no report" in problems
    assert "00_quickstart" not in problems
    assert ".partial" not in page
    # Self-contained: no scripts, no external resources.
    assert "<script" not in page
    assert "http://" not in page and "https://" not in page


def test_all_ok_and_rewrite(repo: Path) -> None:
    reports = repo / "reports" / "smoke"
    (reports / "FAILED-01_beluga_collapse.ipynb").rename(reports / "01_beluga_collapse.ipynb")
    (repo / "notebooks" / "02_never_run.ipynb").unlink()
    path = write_figure_index("smoke", repo_root=repo)
    path = write_figure_index("smoke", repo_root=repo)   # rewriting replaces it, leaves no temp file
    page = path.read_text(encoding="utf-8")
    assert "missing or FAILED" not in page
    assert "Every chapter has an executed report" in page
    assert 'href="../../reports/smoke/01_beluga_collapse.ipynb"' in page
    assert sorted(p.name for p in path.parent.iterdir() if p.name.startswith(".")) == []


def test_empty_profile(tmp_path: Path) -> None:
    page = write_figure_index("quick", repo_root=tmp_path).read_text()
    assert "0 figure(s)" in page


def test_bad_profile_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_figure_index("../etc", repo_root=tmp_path)


def test_cli_prints_path(repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """`python -m lib.report <profile>` writes the page under the repo root and prints its path."""
    monkeypatch.setattr(report, "REPO_ROOT", repo)
    monkeypatch.chdir(repo)
    assert report.main(["smoke"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == "figures/smoke/index.html"
    assert (repo / out).is_file()
    with pytest.raises(SystemExit):
        report.main(["../etc"])


def test_a_figure_saved_twice_is_the_same_bytes(tmp_path):
    """A re-render from the same runs must not rewrite every SVG (a date and random ids)."""
    import matplotlib.pyplot as plt

    from lib.study import Chapter

    ch = Chapter("00_quickstart", "quick")  # png and svg
    ch.figure_dir = tmp_path
    saved = []
    for _ in range(2):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        ch.save(fig, "probe")
        plt.close(fig)
        saved.append({p.name: p.read_bytes() for p in tmp_path.glob("00_quickstart-probe.*")})
    assert set(saved[0]) >= {"00_quickstart-probe.svg", "00_quickstart-probe.png"}
    assert saved[0] == saved[1]


def _ledger_csv(root: Path, profile: str) -> None:
    (root / "figures" / profile).mkdir(parents=True, exist_ok=True)
    import pandas as pd
    pd.DataFrame([
        {"section": "confirmatory", "claim": "A beats B", "dataset": "omniglot", "metric": "map@r", "seeds": 10,
         "declared seeds": 10, "verdict": "reproduced", "reason": "Δ +1.0 points (...) lies above zero"},
        {"section": "exploratory", "claim": "C collapses", "dataset": "beluga", "metric": "collapsed", "seeds": 3,
         "declared seeds": float("nan"), "verdict": "inconclusive", "reason": "collapsed in 0 of 3 seeds"},
    ]).to_csv(root / "figures" / profile / report.LEDGER_TABLE, index=False)


def test_findings_block_is_rewritten_from_the_ledger_and_nothing_else(tmp_path: Path) -> None:
    """The block between the markers takes the ledger's counts and confirmatory sentences word for
    word; the text around it is kept; a second write changes nothing."""
    _ledger_csv(tmp_path, "full")
    start = report.FINDINGS_START.format(profile="full")
    (tmp_path / "README.md").write_text(f"# Title\n\n{start}\nstale\n{report.FINDINGS_END}\n\nTail.\n")
    assert report.write_findings("full", tmp_path)
    text = (tmp_path / "README.md").read_text()
    assert "stale" not in text and text.startswith("# Title") and text.endswith("Tail.\n")
    assert "**Confirmatory** (1 rows): 1 reproduced." in text
    assert "**Exploratory** (1 rows): 1 inconclusive." in text
    assert "*A beats B* (omniglot, map@r, 10 of 10 declared seeds): Δ +1.0 points (...) lies above zero." in text
    assert "C collapses" not in text  # only confirmatory rows are spelled out
    report.write_findings("full", tmp_path)
    assert (tmp_path / "README.md").read_text() == text


def test_findings_leave_a_readme_without_the_profiles_block_alone(tmp_path: Path) -> None:
    _ledger_csv(tmp_path, "quick")
    (tmp_path / "README.md").write_text("# Title\n")
    assert not report.write_findings("quick", tmp_path)
    assert (tmp_path / "README.md").read_text() == "# Title\n"


def test_the_committed_readme_says_what_the_committed_ledger_says() -> None:
    """One voice: the README's findings are the committed full ledger's, word for word."""
    root = Path(__file__).resolve().parent.parent
    text = (root / "README.md").read_text()
    start = report.FINDINGS_START.format(profile="full")
    block = text.split(start, 1)[1].split(report.FINDINGS_END, 1)[0].strip()
    assert block == report.findings("full", root).strip()
