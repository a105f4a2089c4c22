"""The claims ledger: every claim the study checks, judged from the chapters' per-seed tables.

A claim is data (`Comparison`, `Share`, `Level`, listed by `claims(profile)`, in `lib.claims`): what
was claimed, by whom, in what regime, and which arms of which chapter's table test it.
`build(profile)` reads the chapters' per-seed tables (`lib.records`) and gives every row one verdict
sentence, `lib.stats.verdict_sentence` (the one voice the chapters quote too), in one vocabulary
(`lib.stats.Verdict`):

  reproduced                         the interval lies on the claimed side of zero
  reproduced (smaller than claimed)  ... and below the claimed effect (or the smallest effect of interest)
  contradicted                       the interval lies on the opposite side of zero
  no effect as large as claimed      two one-sided tests (TOST) rule out the smallest effect of interest
  inconclusive                       anything else

The ledger has two sections:

  confirmatory  the claims declared, before their runs, in params/confirmatory.yaml
                (`lib.confirmatory`): one arm pair, metric, budget, smallest effect of interest and
                set of seeds each, Holm-corrected over the declared family (each row at its exact
                Holm step level). A row is judged only on all of its declared seeds: until they have
                all run it stays "inconclusive (awaiting seeds: k of M declared)". Each row cites the
                commit of the declaration.
  exploratory   everything else: comparisons not declared (Holm over those), and the share rows
                (exact Clopper-Pearson interval of the rate) and level rows (hierarchical bootstrap
                over seeds x Lake's runs x trials), each at 95 %.

The regime is a column and a qualifier of every sentence, never a verdict: no claim here was made
in a regime the study's CPU runs match (every paper trained larger, usually ImageNet-pretrained,
networks for longer), so `regime_matches` is false for them; each row names the claim's regime and
ours.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from lib import confirmatory, records, stats
from lib.claims import Comparison, Level, Share, claims  # noqa: F401
from lib.config import Profile
from lib.paths import REPO_ROOT
from lib.stats import Verdict

ALPHA = 0.05


class LedgerError(RuntimeError):
    pass


def check_chapter_ran(profile: str, chapter: str, root=None) -> None:
    """Refuse a chapter whose last run failed: run_all.sh leaves reports/<profile>/FAILED-<chapter>.ipynb
    (and removes it when the chapter next succeeds), and the tables in figures/<profile>/ are then
    an older run's, or a half-finished one's. A report of a success newer than the FAILED file
    (a notebook rerun outside run_all.sh) counts as the last run."""
    reports = Path(root or REPO_ROOT) / "reports" / profile
    failed, ok = reports / f"FAILED-{chapter}.ipynb", reports / f"{chapter}.ipynb"
    if failed.exists() and not (ok.exists() and ok.stat().st_mtime > failed.stat().st_mtime):
        raise LedgerError(f"chapter {chapter} failed in its last run in the {profile} profile (see {failed}); the "
                          f"ledger will not read its tables in figures/{profile}/, which are an older run's or the "
                          f"failed run's. Rerun it: `./run_all.sh --profile {profile} --only {chapter}`")


def read_runs(profile: str, chapter: str, root=None) -> pd.DataFrame:
    check_chapter_ran(profile, chapter, root)
    try:
        return records.read(profile, chapter, root)
    except records.RecordsError as exc:
        raise LedgerError(str(exc)) from exc


# ----------------------------------------------------------------------------- verdict rules
def share_verdict(flagged: int, seeds: int, regime_matches: bool | None, claimed_rate: float = 0.5,
                  what: str = "flagged") -> tuple[Verdict, str]:
    """A claim that a setting shows a flag in most seeds, judged on the exact two-sided 95 %
    Clopper-Pearson interval of the rate (`lib.stats.judge_share`): reproduced when it lies above
    `claimed_rate`, contradicted when below, inconclusive when it straddles it. 0 of 3 seeds is
    inconclusive (the rate may be up to 71 %, two-sided; 63 % one-sided); 0 of 10 contradicts."""
    j = stats.judge_share(flagged, seeds, claimed_rate=claimed_rate, what=what, regime_matches=regime_matches)
    return j.verdict, stats.verdict_sentence(j)


def trials_of(rows: pd.DataFrame, metric: str) -> tuple[np.ndarray, str]:
    """(seeds, runs, trials) 0/1 array of a one-shot setting's answers, from its per-seed rows: per
    Lake run when the table records `<metric>_run_<i>` columns, else from the overall accuracy as
    one block of 400 trials (with a note saying so). Seeds with no finite value are dropped."""
    per_run = sorted((c for c in rows.columns if c.startswith(f"{metric}_run_")),
                     key=lambda c: int(c.rsplit("_", 1)[1]) if c.rsplit("_", 1)[1].isdigit() else c)
    if per_run:
        values = rows[per_run].astype(float).to_numpy()
        values = values[np.isfinite(values).all(axis=1)]
        return stats.trials_from_accuracies(values), ""
    values = rows[metric].astype(float).to_numpy()
    return (stats.trials_from_accuracies(values[np.isfinite(values)]),
            "; per-run scores not recorded, so the 400 trials are resampled as one block, aligned across seeds")


def level_verdict(values, level: float, regime_matches: bool | None, note: str = "") -> tuple[Verdict, str]:
    """A claim that a recipe reaches `level`, judged on the 95 % hierarchical bootstrap interval of
    its accuracy over seeds x Lake's runs x trials (`lib.stats.judge_level`): reproduced when the
    interval lies at or above the level, contradicted when below, inconclusive when it straddles it
    (or there is a single seed). `values`: per-seed accuracies, or a (seeds, runs, trials) array."""
    x = np.asarray(values, dtype=float)
    if x.ndim != 3:
        x = stats.trials_from_accuracies(x[np.isfinite(x)])
    j = stats.judge_level(x, level, regime_matches=regime_matches, note=note)
    return j.verdict, stats.verdict_sentence(j)


# ----------------------------------------------------------------------------- building it
def _regime(rows: pd.DataFrame) -> str:
    if rows.empty:
        return "not run"
    r = rows.iloc[0]
    pre = "ImageNet-pretrained" if bool(r.get("pretrained")) else "from scratch"
    images = rows["train_images_seen"].median() if "train_images_seen" in rows else float("nan")
    seen = f", {images / 1000:.0f}k images seen" if math.isfinite(images) else ""
    def most(column: str) -> float:  # over both arms: the one that has it (not K = 1's, say)
        value = rows[column].max() if column in rows else math.nan
        return value if math.isfinite(value) else 0

    shown = f", {most('test_time_views'):.0f} test-time views" if most("test_time_views") > 1 else ""
    if most("frozen_stages") > 0:
        shown += f", stem and first {most('frozen_stages'):.0f} stages frozen"
    if most("warmup_epochs") > 0:
        shown += f", the first {most('warmup_epochs'):.0f} on the whole embedding before clustering"
    return (f"{r['backbone']} ({pre}), {r['image_size']} px, {r['evaluated_dim']:.0f}-d evaluated, "
            f"{int(r['epochs'])} epochs{seen}{shown}")


DECLARED = "params/confirmatory.yaml"
COLUMNS = ["section", "id", "claim", "source", "dataset", "claim's regime", "our regime", "metric", "diff", "low",
           "high", "level", "mde", "seeds", "declared seeds", "verdict", "reason", "declared"]


def declaration_for(profile: Profile, declaration: confirmatory.Declaration | None = None
                    ) -> confirmatory.Declaration | None:
    """The confirmatory declaration when it covers `profile` (its `profile` field), else None: in
    other profiles every row is exploratory."""
    d = declaration if declaration is not None else confirmatory.load()
    return d if d.profile == profile.name else None


@dataclass
class _Row:
    """One comparative row before it becomes a table row: its section, the claim, the declared claim
    (confirmatory rows), the rows of the table it read and its judgement."""

    section: str
    claim: Comparison
    declared: confirmatory.Claim | None = None
    rows: pd.DataFrame | None = None
    judgement: stats.Judgement | None = None
    why_not: str = ""


def _as_comparison(c: confirmatory.Claim, listed: list) -> Comparison:
    """A declared claim as a ledger Comparison; the claim's regime from the ledger's own list."""
    twin = next((x for x in listed if isinstance(x, Comparison) and
                 (x.chapter, x.dataset, x.a, x.b, x.metric) == c.key), None)
    return Comparison(claim=c.claim, source=c.source, regime=twin.regime if twin else "as the source states",
                      chapter=c.chapter, dataset=c.dataset, regime_matches=c.regime_matches, metric=c.metric, a=c.a,
                      b=c.b, direction=c.direction, claimed_effect=c.claimed_effect, smallest_effect=c.smallest_effect)


def _comparative(profile: Profile, listed: list, table, declaration: confirmatory.Declaration | None,
                 alpha: float = ALPHA) -> list[_Row]:
    """Every comparative row, judged: first the confirmatory family (the declaration's claims, Holm over
    all of them, each judged only on all of its declared seeds), then the exploratory comparisons
    (every listed comparison not declared, Holm over those that have data). `table(chapter)` returns
    the chapter's per-seed table or None when it cannot be read."""
    declared = {c.key: c for c in declaration.claims} if declaration else {}
    out: list[_Row] = []
    # the confirmatory family: m is the number declared, whatever has run
    family, rows = {}, []
    for c in (declaration.claims if declaration else []):
        row = _Row("confirmatory", _as_comparison(c, listed), declared=c)
        t = table(c.chapter)
        nan = stats.Difference(math.nan, math.nan, math.nan, 0, (), math.nan, math.nan)
        if t is None:
            row.why_not = f"not run in the {profile.name} profile"
            family[c.id] = nan
        else:
            at = t[(t["dataset"] == c.dataset) & t["setting"].isin([c.a, c.b]) & t["seed"].isin(c.seeds.values)]
            if "epochs" in at:
                at = at[at["epochs"] == c.budget]
            row.rows = at
            a, b = ({int(s): float(v) for s, v in zip(r["seed"], r[c.metric])} if c.metric in r else {}
                    for r in (at[at["setting"] == c.a], at[at["setting"] == c.b]))
            ran = len(a.keys() & b.keys())
            d = stats.paired_difference(a, b, confidence=1 - declaration.alpha)
            if ran < c.seeds.count:
                row.judgement = stats.judge(d, c.claimed_effect, smallest_effect=c.smallest_effect,
                                            direction=c.direction, regime_matches=c.regime_matches,
                                            awaiting=(ran, c.seeds.count))
                d = replace(d, p_value=math.nan)  # not judged, but it counts in the family's m
            family[c.id] = d
        rows.append(row)
    corrected = stats.holm(family, alpha=declaration.alpha) if len(family) > 1 else family
    for row in rows:
        c = row.declared
        if row.judgement is None and row.rows is not None:
            row.judgement = stats.judge(corrected[c.id], c.claimed_effect, smallest_effect=c.smallest_effect,
                                        direction=c.direction, regime_matches=c.regime_matches)
        out.append(row)
    # the exploratory comparisons
    raw, rows = {}, []
    for i, c in enumerate(listed):
        if not isinstance(c, Comparison) or (c.chapter, c.dataset, c.a, c.b, c.metric) in declared:
            continue
        row = _Row("exploratory", c)
        t = table(c.chapter)
        if t is None:
            row.why_not = f"not run in the {profile.name} profile"
        else:
            try:
                a, b = (records.per_seed(t, s, c.metric, c.dataset) for s in (c.a, c.b))
            except records.RecordsError:
                row.why_not = f"not run in the {profile.name} profile"
            else:
                row.rows = t[(t["dataset"] == c.dataset) & t["setting"].isin([c.a, c.b])]
                raw[i] = stats.paired_difference(a, b, confidence=1 - alpha)
        rows.append((i, row))
    corrected = stats.holm(raw, alpha=alpha) if len(raw) > 1 else raw
    for i, row in rows:
        c = row.claim
        if i in corrected:
            row.judgement = stats.judge(corrected[i], c.claimed_effect, smallest_effect=c.smallest_effect,
                                        direction=c.direction, regime_matches=c.regime_matches)
        out.append(row)
    return out


def _tables(profile: Profile, root, missing_ok: bool):
    cache: dict[str, pd.DataFrame | None] = {}

    def table(chapter: str) -> pd.DataFrame | None:
        if chapter not in cache:
            try:
                cache[chapter] = read_runs(profile.name, chapter, root)
            except LedgerError:
                if not missing_ok:
                    raise
                cache[chapter] = None
        return cache[chapter]

    return table


def claim_sentence(profile: Profile, chapter: str, dataset: str, a: str, b: str, metric: str, root=None,
                   declaration: confirmatory.Declaration | None = None) -> str | None:
    """The ledger's verdict sentence for the comparison a - b (chapter, data set, metric), for a chapter
    to print word for word; None when the ledger has no such row. Computed as `build` computes it,
    from the tables in figures/<profile>/ (a chapter whose table cannot be read counts as not run)."""
    listed = claims(profile)
    rows = _comparative(profile, listed, _tables(profile, root, missing_ok=True), declaration_for(profile, declaration))
    for row in rows:
        c = row.claim
        if (c.chapter, c.dataset, c.a, c.b, c.metric) == (chapter, dataset, a, b, metric):
            return _sentence(row, profile)
    return None


def chapter_sentence(ch, dataset: str, a: str, b: str, metric: str, root=None) -> str | None:
    """`claim_sentence` for a chapter (`lib.study.Chapter`) about its own arms: the words it prints
    for a comparison the ledger judges, so that chapter and ledger say the same."""
    return claim_sentence(ch.profile, ch.name, dataset, a, b, metric, root)


def chapter_verdicts(ch, dataset: str | None = None, root=None) -> list[tuple[Comparison, str, str]]:
    """Every comparison the ledger judges on chapter `ch`'s arms (on `dataset`, if given): the claim,
    the ledger's verdict label and its verdict sentence, word for word, for the chapter to print."""
    listed = claims(ch.profile)
    rows = _comparative(ch.profile, listed, _tables(ch.profile, root, missing_ok=True), declaration_for(ch.profile))
    return [(row.claim, row.judgement.label if row.judgement else Verdict.INCONCLUSIVE.value, _sentence(row, ch.profile))
            for row in rows if row.claim.chapter == ch.name and (dataset is None or row.claim.dataset == dataset)]


def _sentence(row: _Row, profile: Profile) -> str:
    if row.judgement is None:
        return f"{Verdict.INCONCLUSIVE.value}: {row.why_not or f'not run in the {profile.name} profile'}"
    return stats.verdict_sentence(row.judgement)


def build(profile: Profile, root=None, declaration: confirmatory.Declaration | None = None) -> pd.DataFrame:
    """One row per claim, confirmatory section first: section, claim, source, both regimes, the
    measurement at the row's own level, its minimum detectable effect at that level, the seeds
    used and declared, the verdict, and the verdict sentence (`reason`, `lib.stats.verdict_sentence`).
    `DataFrame.attrs["declared"]` cites the declaration's commit."""
    table = _tables(profile, root, missing_ok=False)
    listed = claims(profile)
    decl = declaration_for(profile, declaration)
    cited = f"{DECLARED} @ {confirmatory.commit()}" if decl is not None else ""
    out = []
    for row in _comparative(profile, listed, table, decl):
        c, j = row.claim, row.judgement
        arms = row.rows if row.rows is not None else pd.DataFrame()
        record = {"section": row.section, "id": row.declared.id if row.declared else "", "claim": c.claim,
                  "source": c.source, "dataset": c.dataset, "claim's regime": c.regime,
                  "our regime": _regime(arms) if len(arms) else "not run", "metric": c.metric, "diff": math.nan,
                  "low": math.nan, "high": math.nan, "level": math.nan, "mde": math.nan, "seeds": 0,
                  "declared seeds": row.declared.seeds.count if row.declared else math.nan,
                  "verdict": j.verdict.value if j else Verdict.INCONCLUSIVE.value, "reason": _sentence(row, profile),
                  "declared": cited if row.declared else ""}
        if j is not None:
            d = j.difference
            record.update(diff=d.diff, seeds=d.n)
            if j.awaiting is None:
                record.update(low=d.low, high=d.high, level=d.level, mde=stats.mde_of(d))
        out.append(record)
    for c in listed:
        if isinstance(c, Comparison):
            continue
        t = table(c.chapter)
        rows_of = t[(t.dataset == c.dataset) & (t.setting == c.setting)]
        record = {"section": "exploratory", "id": "", "claim": c.claim, "source": c.source, "dataset": c.dataset,
                  "claim's regime": c.regime, "our regime": _regime(rows_of), "metric": getattr(c, "metric", c.flag if
                  isinstance(c, Share) else ""), "diff": math.nan, "low": math.nan, "high": math.nan,
                  "level": math.nan, "mde": math.nan, "seeds": len(rows_of), "declared seeds": math.nan,
                  "declared": ""}
        if rows_of.empty:
            record.update(verdict=Verdict.INCONCLUSIVE.value,
                          reason=f"{Verdict.INCONCLUSIVE.value}: not run in the {profile.name} profile")
        elif isinstance(c, Share):
            v, why = share_verdict(int(rows_of[c.flag].astype(bool).sum()), len(rows_of), c.regime_matches,
                                   c.claimed_rate, what=c.flag)
            also = (f" (contracted, the older, scale-dependent spread rule, in {int(rows_of.contracted.astype(bool).sum())}"
                    f" of {len(rows_of)})" if c.flag == "collapsed" and "contracted" in rows_of else "")
            record.update(level=ALPHA, verdict=v.value, reason=why + also)
        else:
            x, note = trials_of(rows_of, c.metric)
            v, why = level_verdict(x, c.level, c.regime_matches, note)
            record.update(seeds=x.shape[0], diff=float(x.mean()) - c.level, level=ALPHA, verdict=v.value, reason=why)
        out.append(record)
    frame = pd.DataFrame(out, columns=COLUMNS)
    frame.attrs["declared"] = cited
    return frame
