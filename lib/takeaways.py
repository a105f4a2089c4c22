"""A teacher's edition of each chapter: its "write this down" box, its time, its terms.

    display(Markdown(takeaways.box(ch)))                 # the last cells of a chapter notebook
    display(Markdown(takeaways.box(ch, checks=checks)))  # 00b: its agreement table; 06: road=...; 07: claims=...

The box holds the chapter's take-home sentences, generated, never typed: for every comparison the
claims ledger judges on the chapter's arms, the ledger's own verdict sentence word for word
(`lib.ledger.chapter_verdicts`); for the ledger's share and level rows on the chapter's settings
(chapter 1's and 2's collapse shares, chapter 6's one-shot levels), the sentence `lib.ledger.build`
writes, from the same rules on the same per-seed rows; and, where the chapter finds something the
ledger does not judge, a sentence computed from the chapter's own table (chapter 1: which one-factor
changes leave no seed collapsed, each share with its exact Clopper-Pearson interval; chapter 2: the
margin sweep; chapters 0, 0b, 6 and 7: their own tables). Every number in it comes from a table,
so the sentences read differently when the numbers do.

Below the box: the chapter's time on a laptop and on a GPU (`time_line`, read from
reports/quick/timings.tsv and docs/chapter_times.csv, "not measured" where neither has it) and
its terms, linked to docs/glossary.md (`terms_line`).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from lib import ledger, stats
from lib.config import REPO_ROOT
from lib.study import fmt

GLOSSARY = Path("docs") / "glossary.md"
TIMES = Path("docs") / "chapter_times.csv"
QUICK_TIMINGS = Path("reports") / "quick" / "timings.tsv"
# The box is read in an executed notebook, reports/<profile>/<chapter>.ipynb: docs/ is two folders up.
GLOSSARY_LINK = "../../docs/glossary.md"
CONFIDENCE = 0.95
TIME_COLUMNS = ["chapter", "profile", "machine", "seconds", "measured_on", "command", "source"]

# The glossary entries (docs/glossary.md headings) each chapter's prose and box use.
TERMS = {
    "00_quickstart": ["Recall@K", "MAP@R", "NMI", "Effective rank", "Collapse",
                      "Triplet loss and its negative bands"],
    "00b_mechanics": ["Triplet loss and its negative bands", "Collapse"],
    "01_beluga_collapse": ["Collapse", "Effective rank", "Triplet loss and its negative bands", "Paired seed difference",
                           "Holm (Holm-Bonferroni)", "Minimum detectable effect (MDE)", "Clopper-Pearson interval"],
    "02_mining": ["Triplet loss and its negative bands", "MAP@R", "Recall@K", "Collapse", "Effective rank",
                  "Paired seed difference", "Holm (Holm-Bonferroni)", "Minimum detectable effect (MDE)",
                  "Clopper-Pearson interval"],
    "03_distance_weighted": ["Recall@K", "MAP@R", "Paired seed difference", "Holm (Holm-Bonferroni)",
                             "Minimum detectable effect (MDE)", "Equivalence test (TOST)"],
    "04_divide_and_conquer": ["Recall@K", "MAP@R", "Paired seed difference", "Holm (Holm-Bonferroni)",
                              "Minimum detectable effect (MDE)", "Equivalence test (TOST)"],
    "05_reidentification": ["mAP@k (re-identification)", "Collapse", "Paired seed difference",
                            "Minimum detectable effect (MDE)"],
    "06_oneshot_record": ["Recall@K", "Paired seed difference"],
    "07_claims_ledger": ["Paired seed difference", "Holm (Holm-Bonferroni)", "Minimum detectable effect (MDE)",
                         "Equivalence test (TOST)", "Clopper-Pearson interval"],
}


# ----------------------------------------------------------------------------- the glossary
def anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation other than - and _
    dropped, spaces as hyphens ('Holm (Holm-Bonferroni)' -> 'holm-holm-bonferroni')."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def glossary_headings(root: Path | None = None) -> list[str]:
    """The glossary's entries: its third-level headings, in order."""
    text = (Path(root or REPO_ROOT) / GLOSSARY).read_text()
    return [line[4:].strip() for line in text.splitlines() if line.startswith("### ")]


def terms_line(chapter: str, root: Path | None = None, link: str = GLOSSARY_LINK) -> str:
    """'**Terms:** [Recall@K](../../docs/glossary.md#recallk), ...': the chapter's glossary entries,
    each checked against the glossary's headings (a term it lacks raises)."""
    known = set(glossary_headings(root))
    missing = [t for t in TERMS[chapter] if t not in known]
    if missing:
        raise KeyError(f"{GLOSSARY} has no entry {missing} (it has: {sorted(known)})")
    return "**Terms** (`docs/glossary.md`): " + ", ".join(f"[{t}]({link}#{anchor(t)})" for t in TERMS[chapter]) + "."


# ----------------------------------------------------------------------------- times
def read_timings(path: Path) -> dict[str, float]:
    """{chapter: seconds} from a run_all.sh timings file ('<seconds> <chapter>.ipynb' a line); {} if absent."""
    if not Path(path).exists():
        return {}
    out = {}
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[1].removesuffix(".ipynb")] = float(parts[0])
            except ValueError:
                continue
    return out


def chapter_times(root: Path | None = None) -> pd.DataFrame:
    """docs/chapter_times.csv: the chapters' measured wall times, one row per (chapter, profile,
    machine), each with the day it was measured, the command and the file the number comes from."""
    path = Path(root or REPO_ROOT) / TIMES
    if not path.exists():
        return pd.DataFrame(columns=TIME_COLUMNS)
    return pd.read_csv(path, dtype={"measured_on": str}, keep_default_na=False)


def duration(seconds: float) -> str:
    """'61 s' under two minutes, else '4.1 min'."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _cited(row: pd.Series) -> str:
    day = f"measured {row['measured_on']}" if row["measured_on"] else "date not recorded"
    return f"{day}; from {row['source']} via `{TIMES.as_posix()}`"


def quick_time(chapter: str, root: Path | None = None) -> str:
    """The chapter's measured quick wall time: the last cold `./run_all.sh --profile quick` run's
    (reports/quick/timings.tsv) when it recorded the chapter, else docs/chapter_times.csv's quick
    row, else 'not measured'."""
    root = Path(root or REPO_ROOT)
    measured = read_timings(root / QUICK_TIMINGS)
    if chapter in measured:
        return f"{duration(measured[chapter])} (`{QUICK_TIMINGS.as_posix()}`, the last cold run of " \
               "`./run_all.sh --profile quick`)"
    times = chapter_times(root)
    rows = times[(times.chapter == chapter) & (times.profile == "quick") & ~times.machine.str.contains("GPU")]
    if len(rows):
        row = rows.iloc[-1]
        return f"{duration(float(row['seconds']))} ({_cited(row)})"
    return "not measured"


def gpu_time(chapter: str, root: Path | None = None) -> str:
    """The chapter's GPU time from docs/chapter_times.csv, else 'not measured' (naming what was
    timed on a GPU instead, when the file has a whole-plan row, chapter 'all')."""
    times = chapter_times(root)
    gpu = times[times.machine.str.contains("GPU")]
    own = gpu[gpu.chapter == chapter]
    if len(own):
        row = own.iloc[-1]
        return f"{duration(float(row['seconds']))} on {row['machine']}, {row['profile']} profile ({_cited(row)})"
    whole = gpu[gpu.chapter == "all"]
    if len(whole):
        row = whole.iloc[-1]
        return (f"not measured for this chapter (only the whole {row['profile']} plan has been timed on a GPU: "
                f"{row['command']}, {duration(float(row['seconds']))} on {row['machine']}; {_cited(row)})")
    return "not measured"


def time_line(chapter: str, root: Path | None = None) -> str:
    """'**Time.** On a laptop (...): 61 s (...). On a GPU: not measured ...', read from data."""
    return (f"**Time.** On a laptop (quick profile, 2-core CPU, from an empty run cache): {quick_time(chapter, root)}. "
            f"On a GPU: {gpu_time(chapter, root)}.")


# ----------------------------------------------------------------------------- the ledger's sentences
def _truth(value) -> bool:
    """A per-run flag as a table holds it (bool, 0/1, 'True'/'False' from a CSV, NaN when missing)."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return bool(value) if value is not None and not (isinstance(value, float) and np.isnan(value)) else False


def ledger_lines(ch, frame: pd.DataFrame | None = None, root: Path | None = None) -> list[str]:
    """'*claim* (data set): the ledger's sentence.' for every ledger row on chapter `ch`'s arms:
    the comparisons through `ledger.chapter_verdicts` (word for word), then the share and level rows
    computed as `ledger.build` computes them, from the chapter's per-seed rows (`frame`, default
    `ch.table()`)."""
    lines = [f"*{c.claim}* ({c.dataset}): {said}." for c, _, said in ledger.chapter_verdicts(ch, root=root)]
    frame = ch.table() if frame is None else frame
    for c in ledger.claims(ch.profile):
        if isinstance(c, ledger.Comparison) or c.chapter != ch.name:
            continue
        rows = frame[(frame["dataset"] == c.dataset) & (frame["setting"] == c.setting)] if len(frame) else frame
        if rows.empty or (isinstance(c, ledger.Share) and c.flag not in rows):
            said = f"{stats.Verdict.INCONCLUSIVE.value}: not run in the {ch.profile.name} profile"
        elif isinstance(c, ledger.Share):
            _, said = ledger.share_verdict(int(rows[c.flag].astype(bool).sum()), len(rows), c.regime_matches,
                                           c.claimed_rate, what=c.flag)
            if c.flag == "collapsed" and "contracted" in rows:
                said += (f" (contracted, the older, scale-dependent spread rule, in "
                         f"{int(rows.contracted.astype(bool).sum())} of {len(rows)})")
        else:
            x, note = ledger.trials_of(rows, c.metric)
            _, said = ledger.level_verdict(x, c.level, c.regime_matches, note)
        lines.append(f"*{c.claim}* ({c.dataset}): {said}.")
    return lines


# ----------------------------------------------------------------------------- chapter 1: what removes the collapse
def collapse_shares(frame: pd.DataFrame, settings: list[str], flag: str,
                    confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Per setting: the seeds whose run raised `flag` (`loss_space_collapsed`, `collapsed`) out of
    those that finished (a diverged seed counts in neither), with the exact two-sided
    Clopper-Pearson interval of the share (`lib.stats.clopper_pearson`)."""
    rows = []
    for setting in settings:
        runs = frame[frame["setting"] == setting] if len(frame) else frame
        if runs.empty or flag not in runs:
            continue
        diverged = runs["diverged"].map(_truth) if "diverged" in runs else pd.Series(False, index=runs.index)
        values = runs.loc[~diverged, flag]
        values = values[values.notna()]
        k, n = int(values.map(_truth).sum()), len(values)
        low, high = stats.clopper_pearson(k, n, confidence)
        rows.append({"setting": setting, "flagged": k, "seeds": n, "diverged": int(diverged.sum()),
                     "low": low, "high": high})
    return pd.DataFrame(rows, columns=["setting", "flagged", "seeds", "diverged", "low", "high"]).set_index("setting")


def _share(row: pd.Series, confidence: float = CONFIDENCE) -> str:
    if row["seeds"] < 1:
        return f"no finished seed ({int(row['diverged'])} diverged)"
    text = (f"{int(row['flagged'])} of {int(row['seeds'])} seed(s), exact {confidence * 100:g} % interval "
            f"{row['low'] * 100:.0f}–{row['high'] * 100:.0f} %")
    return text + (f"; {int(row['diverged'])} diverged" if row["diverged"] else "")


def removes_collapse(shares: pd.DataFrame, reference: str, space: str) -> str:
    """Which changes leave 0 of their seeds collapsed in `space`, which do not, against `reference`."""
    if reference not in shares.index:
        return f"In {space}: {reference} was not run."
    ref = shares.loc[reference]
    changes = shares.drop(index=reference)
    clean = [n for n, r in changes.iterrows() if r["seeds"] > 0 and r["flagged"] == 0]
    still = [n for n, r in changes.iterrows() if r["flagged"] > 0]
    listed = lambda names: "; ".join(f"{n} ({_share(changes.loc[n])})" for n in names) or "none"  # noqa: E731
    text = f"In {space}, {reference} collapsed in {_share(ref)}. "
    if ref["flagged"] == 0:
        return text + ("With no collapse to remove, no change can be credited with removing one here; changes "
                       f"that collapse where it did not: {listed(still)}.")
    return (text + f"Changes after which 0 seeds collapse: {listed(clean)}. Changes after which some still do: "
            f"{listed(still)}.")


def collapse_lines(ch, frame: pd.DataFrame | None = None) -> list[str]:
    """Chapter 1's own finding, from its per-seed table: in each space, which one-factor changes to the
    blog (its margins and ablations; and on the pretrained backbone, where run) leave no seed collapsed."""
    from lib.chapters import beluga_collapse as collapse

    frame = ch.table() if frame is None else frame
    blog = collapse.blog_name(ch)
    groups = [(blog, [*collapse.margin_arms(ch), *collapse.ablation_arms(ch)], "")]
    if ch.settings.pretrained is not None:
        groups.append((collapse.PRETRAINED + blog, list(collapse.pretrained_arms(ch)), " on the pretrained backbone"))
    lines = []
    for reference, settings, where in groups:
        for flag, space in (("loss_space_collapsed", "the space the loss sees (the projector's output)"),
                            ("collapsed", "the evaluated features (the projector dropped, as the blog did)")):
            shares = collapse_shares(frame, [reference, *[s for s in settings if s != reference]], flag)
            if len(shares):
                lines.append(f"**What removes the collapse{where}** — " + removes_collapse(shares, reference, space))
    return lines


# ----------------------------------------------------------------------------- the other chapters' own tables
def quickstart_lines(ch, frame: pd.DataFrame | None = None) -> list[str]:
    """Chapter 0's run, from its per-seed table, judged by the chapter's own rule (one-shot accuracy
    above twice chance and no seed collapsed)."""
    from lib.chapters import quickstart

    frame = ch.table() if frame is None else frame
    runs = frame[frame["setting"] == quickstart.SETTING] if len(frame) else frame
    if runs.empty:
        return [f"*{quickstart.SETTING}*: not run in the {ch.profile.name} profile."]
    col = lambda m: runs[m].astype(float)  # noqa: E731
    shares = collapse_shares(runs, [quickstart.SETTING], "collapsed").iloc[0]
    shot, chance = col("oneshot_accuracy").mean(), quickstart.CHANCE_ONE_SHOT
    learned = shot > 2 * chance and shares["flagged"] == 0
    return [f"Semi-hard triplets on Omniglot's background alphabets, over {len(runs)} seed(s): Recall@1 "
            f"{fmt(col('recall@1').mean(), col('recall@1').std())} and MAP@R {fmt(col('map@r').mean(), col('map@r').std())} "
            f"on the unseen alphabets; 20-way one-shot accuracy {fmt(shot, col('oneshot_accuracy').std())}, "
            f"{shot / chance:.1f} times chance ({chance:.0%}); {col('effective_rank').mean():.1f} effective dimensions; "
            f"collapsed in {_share(shares)}.",
            "By the chapter's rule (one-shot accuracy above twice chance, no seed collapsed) the chain "
            + ("**learns** at this budget." if learned else "does **not** yet learn at this budget.")]


def mechanics_lines(checks: pd.DataFrame) -> list[str]:
    """Chapter 0b's agreement table (`mechanics.random_checks`) and its worked example's bands."""
    from lib.chapters import mechanics

    batches = checks.shape[1] - 1  # the worked example and the random batches; the last column is "worst"
    bad = checks.index[checks["worst"] > mechanics.TOLERANCE].tolist()
    agree = (f"The hand-written pieces agree with pytorch-metric-learning on all {len(checks)} checks, on the worked "
             f"example and {batches - 1} random batches (worst difference {checks['worst'].max():.0e})."
             if not bad else f"The hand-written pieces and pytorch-metric-learning **disagree** on {', '.join(bad)}.")
    t = mechanics.triplet_table()
    bands = t["band (by hand)"].value_counts()
    hard, semi, easy = (int(bands.get(b, 0)) for b in mechanics.BANDS)
    with_loss = set(t.index[t["triplet loss"] > 0])
    exact = with_loss == set(t.index[t["band (by hand)"] != "easy"])
    return [agree, f"On the six points at α = {mechanics.MARGIN}, {hard} of {len(t)} triplets are hard, {semi} semi-hard "
                   f"and {easy} easy; the {len(with_loss)} with a loss above zero are "
                   + ("exactly the hard and semi-hard ones: an easy negative gives no gradient." if exact else
                      "**not** the hard and semi-hard ones.")]


def margin_lines(ch, frame: pd.DataFrame | None = None) -> list[str]:
    """Chapter 2's margin sweep (not judged by the ledger): per strategy, in how many seeds MAP@R is
    the same at every margin, and its largest change across margins."""
    from lib.chapters import mining

    frame = ch.table() if frame is None else frame
    sweep = ch.settings.margin_sweep
    if frame.empty:
        return []
    parts = []
    for name in sweep.strategies:
        rows = frame[(frame["dataset"] == sweep.dataset) &
                     frame["setting"].isin([mining.margin_setting(name, m) for m in sweep.margins])]
        if rows.empty:
            continue
        spread = rows.pivot_table(index="seed", columns="setting", values="map@r", aggfunc="first")
        spread = (spread.max(axis=1) - spread.min(axis=1)).dropna()
        parts.append(f"{name}: the same MAP@R at every margin in {int((spread == 0).sum())} of {len(spread)} seed(s), "
                     f"largest change {spread.max() * 100:.1f} points")
    if not parts:
        return []
    return [f"**Margin** ({sweep.dataset}, margins {', '.join(map(str, sweep.margins))}; the chapter's own table, "
            "not judged by the ledger): " + "; ".join(parts) + "."]


def road_lines(ch, road: pd.DataFrame) -> list[str]:
    """Chapter 6's road (`oneshot_record.road_table`): what it kept and dropped."""
    steps = road.iloc[1:]
    kept = [str(s) for s, r in steps.iterrows() if bool(r["kept"])]
    dropped = [str(s) for s, r in steps.iterrows() if not bool(r["kept"])]
    return [f"The road kept {', '.join(kept) or 'nothing beyond its start'}"
            + (f" and dropped {', '.join(dropped)}" if dropped else "")
            + f", each on its mean paired gain in {ch.settings.select_on} over validation characters, "
              "never on Lake's runs."]


def ledger_tally_lines(claims: pd.DataFrame) -> list[str]:
    """Chapter 7's ledger (`claims.build`): the verdicts counted, and the claims that got one other than
    inconclusive."""
    counts = claims["verdict"].value_counts()
    lines = [f"Of {len(claims)} claim rows: " + ", ".join(f"{int(counts.get(v.value, 0))} {v.value}"
                                                          for v in stats.Verdict) + "."]
    for v in stats.Verdict:
        if v is stats.Verdict.INCONCLUSIVE:
            continue
        rows = claims[claims["verdict"] == v.value]
        if len(rows):
            lines.append(f"*{v.value.capitalize()}*: " + "; ".join(f"{r['claim']} ({r['dataset']})"
                                                                   for _, r in rows.iterrows()) + ".")
    return lines


# ----------------------------------------------------------------------------- the box
def take_home(ch, *, checks: pd.DataFrame | None = None, claims: pd.DataFrame | None = None,
              road: pd.DataFrame | None = None, root: Path | None = None) -> list[str]:
    """The chapter's take-home sentences: the ledger's, then the chapter's own findings."""
    name = ch.name
    if name == "00b_mechanics":
        return mechanics_lines(checks)
    if name == "07_claims_ledger":
        return ledger_tally_lines(claims)
    lines = ledger_lines(ch, root=root)
    if name == "00_quickstart":
        lines = quickstart_lines(ch) + lines
    elif name == "01_beluga_collapse":
        lines += collapse_lines(ch)
    elif name == "02_mining":
        lines += margin_lines(ch)
    elif name == "06_oneshot_record" and road is not None:
        lines += road_lines(ch, road)
    return lines


def box(ch, *, checks: pd.DataFrame | None = None, claims: pd.DataFrame | None = None,
        road: pd.DataFrame | None = None, root: Path | None = None, docs_root: Path | None = None) -> str:
    """The "write this down" box (a Markdown blockquote), then the chapter's time and its terms.
    `root`: where the ledger reads the chapters' tables (figures/<profile>/); `docs_root`: where
    docs/ and reports/ are read (both default to the repository). The chapter closes here, so its
    per-seed table is published first (`Chapter.save_records`): the box quotes the ledger with it."""
    if getattr(ch, "records", None):
        ch.save_records(publish=True)
    lines = take_home(ch, checks=checks, claims=claims, road=road, root=root)
    profile = ch.profile
    # the ledger chapter reads another profile's tables (only its section has `tables_from`)
    if claims is not None and getattr(ch.settings, "tables_from", None):
        from lib.config import load_profile
        profile = load_profile(ch.settings.tables_from)
    quote = ["> **Write this down.**", ">", *[f"> - {line}" for line in lines], ">",
             f"> *Generated from the {profile.name} profile's tables ({profile.description}); the ledger's sentences "
             "are `lib.ledger`'s, word for word.*"]
    return "\n".join(quote) + "\n\n" + time_line(ch.name, docs_root) + "\n\n" + terms_line(ch.name, docs_root)
