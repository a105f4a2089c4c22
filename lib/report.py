"""The figure index: one self-contained HTML page per profile listing every saved figure; and the
README's findings, written from the claims ledger's table.

    python -m lib.report quick        # writes figures/quick/index.html and prints its path

The README's findings block (between FINDINGS_START and FINDINGS_END, for the profile it names)
is rewritten from figures/<profile>/07_claims_ledger-ledger.csv: the verdict counts and each
confirmatory row's verdict sentence, word for word as the ledger has it (one voice).

The page lives beside the figures, so its links are relative (`<chapter>-<name>.png`,
`../../reports/<profile>/<chapter>.ipynb`) and work both when opened from disk and on
the GitHub web page. Chapters are the notebook stems (`01_beluga_collapse`), in notebook
order; each figure's one-line caption comes from the `.json` sidecar that `Chapter.save`
writes next to it, else the figure's name is shown.
"""
from __future__ import annotations

import argparse
import html
import json
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from lib.paths import REPO_ROOT, atomic_write_bytes

_PROFILE_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass
class _Figure:
    file: str      # the PNG's file name, relative to the index
    name: str      # the figure name, without the chapter prefix
    caption: str
    svg: str | None = None
    captioned: bool = True   # False: the caption is only the humanised name


@dataclass
class _Chapter:
    name: str
    status: str = "missing"     # "ok", "FAILED" or "missing"
    report: str | None = None   # the executed notebook, relative to the index
    figures: list[_Figure] = field(default_factory=list)


def _humanise(name: str) -> str:
    text = re.sub(r"[-_]+", " ", name).strip()
    return text[:1].upper() + text[1:] if text else name


def _read_sidecar(path: Path) -> dict:
    """The sidecar's fields, or {} when it is absent or unreadable (the index must still be written)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _split_stem(stem: str, known: list[str]) -> tuple[str, str]:
    """`00_quickstart-negative-distances` -> ("00_quickstart", "negative-distances"): the longest
    known chapter that prefixes the stem, else the part before the first hyphen."""
    for chapter in sorted(known, key=len, reverse=True):
        if stem.startswith(chapter + "-"):
            return chapter, stem[len(chapter) + 1:]
    chapter, _, name = stem.partition("-")
    return chapter, name or stem


def _collect(profile: str, root: Path) -> dict[str, _Chapter]:
    figure_dir = root / "figures" / profile
    report_dir = root / "reports" / profile
    notebooks = [p.stem for p in (root / "notebooks").glob("[0-9]*.ipynb")]
    reports = sorted(p for p in report_dir.glob("*.ipynb") if not p.name.startswith(".")) if report_dir.is_dir() else []
    ok = {p.stem for p in reports if not p.name.startswith("FAILED-")}
    failed = {p.stem[len("FAILED-"):] for p in reports if p.name.startswith("FAILED-")}

    chapters: dict[str, _Chapter] = {}

    def chapter(name: str) -> _Chapter:
        return chapters.setdefault(name, _Chapter(name))

    for name in [*notebooks, *ok, *failed]:
        chapter(name)
    known = list(chapters)
    for png in sorted(figure_dir.glob("*.png")) if figure_dir.is_dir() else []:
        meta = _read_sidecar(png.with_suffix(".json"))
        chapter_name, figure_name = _split_stem(png.stem, known)
        chapter_name = str(meta.get("chapter") or chapter_name)
        figure_name = str(meta.get("figure") or figure_name)
        caption = " ".join(str(meta.get("caption") or "").split())
        svg = png.with_suffix(".svg")
        chapter(chapter_name).figures.append(
            _Figure(png.name, figure_name, caption or _humanise(figure_name), svg.name if svg.is_file() else None,
                    captioned=bool(caption)))

    for ch in chapters.values():
        # A fresh success wins over a FAILED file left by an older run (run_all.sh removes it, but
        # a notebook run by hand does not).
        if ch.name in ok:
            ch.status, ch.report = "ok", f"../../reports/{profile}/{ch.name}.ipynb"
        elif ch.name in failed:
            ch.status, ch.report = "FAILED", f"../../reports/{profile}/FAILED-{ch.name}.ipynb"
    return dict(sorted(chapters.items()))


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 72em;
       padding: 0 1em; color: #222; line-height: 1.4; }
header { border-bottom: 1px solid #ccc; margin-bottom: 1.5em; }
h1 { margin-bottom: 0.2em; }
.meta { color: #666; font-size: 0.9em; }
.problems { background: #fff3f3; border-left: 4px solid #c33; padding: 0.5em 1em; }
.problems.none { background: #f3fff3; border-left-color: #3a3; }
nav ol { columns: 2; }
section { margin: 2em 0; }
h2 { border-bottom: 1px solid #eee; padding-bottom: 0.2em; }
h2 small { font-weight: normal; font-size: 0.6em; }
.status-FAILED, .status-missing { color: #c33; }
.figures { display: flex; flex-wrap: wrap; gap: 1.5em; }
figure { margin: 0; flex: 1 1 30em; max-width: 100%; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #333; }
figcaption code { color: #888; font-size: 0.85em; }
"""


def _href(path: str) -> str:
    """A relative link, percent-encoded and then escaped for an HTML attribute."""
    return html.escape(quote(path), quote=True)


def _render(profile: str, chapters: dict[str, _Chapter], generated: datetime) -> str:
    e = html.escape
    n_figures = sum(len(ch.figures) for ch in chapters.values())
    problems = [ch for ch in chapters.values() if ch.status != "ok"]
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Figures — profile {e(profile)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        "<header>",
        f"<h1>Figures — profile <code>{e(profile)}</code></h1>",
        f'<p class="meta">Generated {e(generated.strftime("%Y-%m-%d %H:%M:%S %Z"))} — '
        f"{n_figures} figure(s) in {len(chapters)} chapter(s). "
        f'Executed notebooks: <a href="{_href("../../reports/" + profile + "/")}">reports/{e(profile)}/</a></p>',
    ]
    if problems:
        items = "; ".join(
            f'<a href="#{_href(ch.name)}">{e(ch.name)}</a> '
            f'(<span class="status-{ch.status}">{"FAILED" if ch.status == "FAILED" else "no report"}</span>)'
            for ch in problems)
        out.append(f'<p class="problems">Chapters whose report is missing or FAILED: {items}. '
                   "Their figures, if any, may be from an earlier run.</p>")
    else:
        out.append('<p class="problems none">Every chapter has an executed report.</p>')
    if chapters:
        out.append("<nav><ol>")
        out += [f'<li><a href="#{_href(ch.name)}">{e(ch.name)}</a> ({len(ch.figures)})</li>'
                for ch in chapters.values()]
        out.append("</ol></nav>")
    out.append("</header>")

    for ch in chapters.values():
        out.append(f'<section id="{e(ch.name, quote=True)}">')
        if ch.status == "ok":
            link = f'<a href="{_href(ch.report)}">executed notebook</a>'
        elif ch.status == "FAILED":
            link = f'<a class="status-FAILED" href="{_href(ch.report)}">FAILED notebook</a>'
        else:
            link = '<span class="status-missing">no executed notebook</span>'
        out.append(f"<h2>{e(ch.name)} <small>— {link}</small></h2>")
        if not ch.figures:
            out.append('<p class="meta">No figures saved.</p>')
        else:
            out.append('<div class="figures">')
            for fig in ch.figures:
                img = f'<img src="{_href(fig.file)}" alt="{e(fig.caption, quote=True)}" loading="lazy">'
                if fig.svg:
                    img = f'<a href="{_href(fig.svg)}" title="SVG version">{img}</a>'
                name = f" <code>{e(fig.name)}</code>" if fig.captioned else ""
                out.append(f"<figure>{img}<figcaption>{e(fig.caption)}{name}</figcaption></figure>")
            out.append("</div>")
        out.append("</section>")
    out += ["</body>", "</html>", ""]
    return "\n".join(out)


def write_figure_index(profile: str, repo_root: Path | None = None) -> Path:
    """Write figures/<profile>/index.html (atomically) and return its path."""
    if not _PROFILE_RE.match(profile) or profile in {".", ".."}:
        raise ValueError(f"not a profile name: {profile!r}")
    root = Path(repo_root) if repo_root is not None else REPO_ROOT
    chapters = _collect(profile, root)
    page = _render(profile, chapters, datetime.now(timezone.utc))
    path = root / "figures" / profile / "index.html"
    atomic_write_bytes(path, page.encode("utf-8"))
    return path


LEDGER_TABLE = "07_claims_ledger-ledger.csv"
FINDINGS_START = "<!-- findings from figures/{profile}/" + LEDGER_TABLE + ": written by python -m lib.report -->"
FINDINGS_END = "<!-- end of findings -->"


def findings(profile: str, repo_root: Path | None = None) -> str:
    """The README's findings, from the ledger's table of `profile`: the verdict counts per section,
    then one line per confirmatory row (its seeds and verdict sentence, as the ledger says it)."""
    root = Path(repo_root) if repo_root is not None else REPO_ROOT
    ledger = pd.read_csv(root / "figures" / profile / LEDGER_TABLE)
    lines = []
    for section, rows in ledger.groupby("section", sort=False):
        counts = rows["verdict"].value_counts()
        lines.append(f"- **{section.capitalize()}** ({len(rows)} rows): "
                     + ", ".join(f"{n} {verdict}" for verdict, n in counts.items()) + ".")
    lines.append("")
    for _, r in ledger[ledger["section"] == "confirmatory"].iterrows():
        seeds = f"{int(r['seeds'])} of {int(r['declared seeds'])} declared seeds"
        lines.append(f"- *{r['claim']}* ({r['dataset']}, {r['metric']}, {seeds}): {str(r['reason']).rstrip('.')}.")
    return "\n".join(lines)


def write_findings(profile: str, repo_root: Path | None = None) -> bool:
    """Rewrite the README's findings block for `profile`; False when the README has no block for
    it (only the committed profile's numbers belong in the README) or the ledger has not run."""
    root = Path(repo_root) if repo_root is not None else REPO_ROOT
    readme, start = root / "README.md", FINDINGS_START.format(profile=profile)
    text = readme.read_text() if readme.exists() else ""
    if (start not in text or FINDINGS_END not in text.split(start, 1)[1]
            or not (root / "figures" / profile / LEDGER_TABLE).exists()):
        return False
    head, rest = text.split(start, 1)
    _, tail = rest.split(FINDINGS_END, 1)
    atomic_write_bytes(readme, f"{head}{start}\n{findings(profile, root)}\n{FINDINGS_END}{tail}".encode())
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.report",
                                     description="Write figures/<profile>/index.html, the figure index, "
                                                 "and the README's findings block for <profile> if it has one.")
    parser.add_argument("profile")
    args = parser.parse_args(argv)
    try:
        path = write_figure_index(args.profile)
    except ValueError as exc:
        parser.error(str(exc))
    write_findings(args.profile)
    try:
        path = path.relative_to(Path.cwd())
    except ValueError:
        pass
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
