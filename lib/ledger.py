"""The claims ledger: every claim the study checks, judged from the chapters' per-seed tables.

A claim is data (`Comparison`, `Share`, `Level`): what was claimed, by whom, in what regime, and
which arms of which chapter's table test it. `build(profile)` reads the chapters' per-seed tables
(`lib.records`), pairs arms by seed, corrects every comparative row for the family of all of them
(Holm, `lib.stats.holm`), and gives each row a verdict from one vocabulary (`lib.stats.Verdict`):

  reproduced                   the (corrected) interval lies on the claimed side of zero
  contradicted                 the interval excludes the claim and our regime matches the claim's
  not supported at this scale  the interval excludes the claim, in a regime that differs from it
  inconclusive                 the interval contains the claim and zero, or the seeds could not
                               have detected the claimed effect (minimum detectable effect larger)

No claim here was made in a regime the study's CPU runs match (every paper trained larger,
usually ImageNet-pretrained, networks for longer), so `regime_matches` is false for them; each
row names the claim's regime and ours.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from lib import records, stats
from lib.config import REPO_ROOT, Profile
from lib.stats import Verdict

ALPHA = 0.05
CHOSEN_ONESHOT = "chosen recipe"  # chapter 6 records its chosen recipe's runs under this name


class LedgerError(RuntimeError):
    pass


@dataclass(frozen=True, kw_only=True)
class _Claim:
    """What was claimed, by whom, in what regime, and which chapter's table on which data set tests it.
    `regime_matches`: our runs are in the claim's regime (model, data, budget)."""

    claim: str
    source: str
    regime: str
    chapter: str
    dataset: str
    regime_matches: bool = False


@dataclass(frozen=True, kw_only=True)
class Comparison(_Claim):
    """Arm `a` beats arm `b` on `metric` (direction -1: a is lower), by about `claimed_effect` if given."""

    metric: str
    a: str
    b: str
    direction: int = 1
    claimed_effect: float | None = None


@dataclass(frozen=True, kw_only=True)
class Share(_Claim):
    """`setting` shows `flag` (a per-run boolean such as `collapsed`) in most seeds."""

    setting: str
    flag: str


@dataclass(frozen=True, kw_only=True)
class Level(_Claim):
    """`setting` reaches `level` on `metric` (an accuracy a paper reported)."""

    setting: str
    metric: str
    level: float


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
def share_verdict(flagged: int, seeds: int, regime_matches: bool) -> tuple[Verdict, str]:
    """A claim that a setting shows a flag: reproduced in more than half the seeds (and at least
    two); contradicted / not supported at this scale when no seed shows it out of at least two;
    inconclusive otherwise (half or fewer but some, or a single seed)."""
    said = f"{flagged} of {seeds} seeds"
    if seeds >= 2 and flagged * 2 > seeds:
        return Verdict.REPRODUCED, f"{said}: more than half"
    if seeds >= 2 and flagged == 0:
        return (Verdict.CONTRADICTED if regime_matches else Verdict.NOT_SUPPORTED), f"{said}: none"
    return Verdict.INCONCLUSIVE, f"{said}: too few to decide" if seeds < 2 else f"{said}: not more than half"


def level_verdict(values: list[float], level: float, regime_matches: bool) -> tuple[Verdict, str]:
    """A claim that a recipe reaches `level`: reproduced when the 95 % interval of the mean over
    seeds lies at or above it; contradicted / not supported at this scale when it lies below it;
    inconclusive when it contains it (or there is a single seed)."""
    x = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    if len(x) < 2:
        return Verdict.INCONCLUSIVE, f"{len(x)} seed(s): no interval"
    mean = float(x.mean())
    sem = float(x.std(ddof=1) / math.sqrt(len(x)))
    low, high = (mean, mean) if sem == 0 else sps.t.interval(1 - ALPHA, len(x) - 1, loc=mean, scale=sem)
    said = f"{mean * 100:.1f} % (95 % interval {low * 100:.1f} to {high * 100:.1f}; {len(x)} seeds) vs {level * 100:.1f} %"
    if low >= level:
        return Verdict.REPRODUCED, said
    if high < level:
        return (Verdict.CONTRADICTED if regime_matches else Verdict.NOT_SUPPORTED), said
    return Verdict.INCONCLUSIVE, said


# ----------------------------------------------------------------------------- the claims
def claims(profile: Profile) -> list:
    """The study's claims, with the arm names the chapters of `profile` use."""
    c1, c4, c5 = (profile.chapter(n) for n in ("01_beluga_collapse", "04_divide_and_conquer", "05_reidentification"))
    blog = f"blog (margin {c1['blog']['loss']['kwargs']['margin']})"
    smallest = min(c1["dimensions"])
    centre = f"K={c4['grid_at']['clusters']}, M={c4['grid_at']['recluster_every']}"
    longest = max(c4["budgets"])  # divide and conquer is judged at the budget nearest the paper's
    # and, where chapter 4 runs one, with a warm start (the paper clusters pretrained features)
    judged = records.warm_start_setting(centre) if c4.get("warm_start_epochs", 0) else centre
    blog_regime = "ImageNet-pretrained ResNet-50, full-size beluga photos, 256-d projector"
    facenet = "Inception nets on 100-200 M face images, batches of ~1,800, weeks on a cluster"
    blog_claim = dict(source="the blog", regime=blog_regime, chapter="01_beluga_collapse", dataset="beluga")
    out: list = [
        Share(claim="The blog's configuration collapses the embedding it evaluates (projector dropped)",
              setting=blog, flag="collapsed", **blog_claim),
        Share(claim="The blog's configuration collapses the embedding its loss sees (the projector's output)",
              setting=blog, flag="loss_space_collapsed", **blog_claim),
        Comparison(claim=f"Dimensionality causes the collapse: a {smallest}-d embedding retrieves better than 256-d",
                   metric="map@r", a=f"embedding {smallest}, evaluated at {smallest}-d", b="projector kept at test",
                   **blog_claim),
        Comparison(claim="The minimal fix (chosen on other seeds) beats the blog's configuration on fresh seeds",
                   source="this study, chapter 1", regime="this study's beluga regime", chapter="01_beluga_collapse",
                   dataset="beluga", metric="map@r", a="minimal fix (fresh seeds)", b=f"{blog} (fresh seeds)",
                   regime_matches=True),
    ]
    if c1.get("pretrained"):  # the blog's own regime: the same configuration on an ImageNet-pretrained backbone
        out += [Share(claim="The blog's configuration collapses the embedding it evaluates, on an ImageNet-pretrained "
                            "backbone", setting=f"pretrained: {blog}", flag="collapsed", **blog_claim),
                Share(claim="The blog's configuration collapses the embedding its loss sees, on an ImageNet-pretrained "
                            "backbone", setting=f"pretrained: {blog}", flag="loss_space_collapsed", **blog_claim)]
    c3 = profile.chapter("03_distance_weighted")
    wu, semi = "margin loss, distance-weighted (Wu)", "semi-hard triplet"
    if {wu, semi} <= set((c3.get("pretrained") or {}).get("methods", [])):
        out.append(Comparison(claim="Margin loss + distance-weighted sampling beats semi-hard triplet, on an "
                                    "ImageNet-pretrained backbone", source="Wu et al. 2017",
                              regime="ImageNet-pretrained ResNet-50, CUB/Cars/SOP, 224 px", chapter="03_distance_weighted",
                              dataset=c3["pretrained"]["dataset"], metric="recall@1", a=f"{wu}, pretrained",
                              b=f"{semi}, pretrained"))
    for ds in ("omniglot", "beluga"):
        budget = longest if ds == c4["budget_dataset"] else 1  # chapter 4 runs longer budgets on one data set
        mining = dict(source="FaceNet (Schroff et al. 2015)", regime=facenet, chapter="02_mining", dataset=ds)
        out += [
            Share(claim="Mining the hardest negatives collapses training", setting="hard", flag="collapsed", **mining),
            Comparison(claim="Semi-hard negatives train better than the hardest", metric="map@r", a="semi-hard",
                       b="hard", **mining),
            Comparison(claim="Batch-hard mining trains better than semi-hard", source="Hermans et al. 2017",
                       regime="ImageNet-pretrained ResNet-50 on person re-id, 25k steps", chapter="02_mining",
                       dataset=ds, metric="map@r", a="batch-hard (Hermans)", b="semi-hard"),
            Comparison(claim="Margin loss + distance-weighted sampling beats semi-hard triplet", source="Wu et al. 2017",
                       regime="ImageNet-pretrained ResNet-50, CUB/Cars/SOP, 224 px", chapter="03_distance_weighted",
                       dataset=ds, metric="recall@1", a="margin loss, distance-weighted (Wu)", b="semi-hard triplet"),
            Comparison(claim="Divide and conquer (K learners) beats a single learner", source="Sanakoyeu et al. 2019",
                       regime="ImageNet-pretrained ResNet-50, 200 epochs (the loss on the whole embedding from epoch 80 in the released code), "
                              "clustered on pretrained features",
                       chapter="04_divide_and_conquer", dataset=ds, metric="recall@1",
                       a=records.budget_setting(judged if ds == c4["budget_dataset"] else centre, budget),
                       b=records.budget_setting("K=1 (single learner)", budget)),
        ]
    out += [
        Comparison(claim=f"Divide and conquer adds about {c5['humpback_gain'] * 100:+.0f} points of mAP@5 in whale "
                         "re-identification (judged on closed-set mAP@5, which moves with the embedding)",
                   source="Kaggle humpback team", regime="humpback flukes, large pretrained CNNs, GPU budget",
                   chapter="05_reidentification", dataset="beluga", metric="mAP@5 all photo(s), per image",
                   a=c5["divided"], b=c5["single"], claimed_effect=c5["humpback_gain"]),
        Level(claim="A ConvNet reaches 86.5 % 20-way one-shot accuracy on Lake's 20 runs (measured on these runs)",
              source="Lake et al. 2015 (Science)", regime="a ConvNet trained on the background set, GPU budget",
              chapter="06_oneshot_record", dataset="omniglot", setting=CHOSEN_ONESHOT, metric="oneshot_accuracy",
              level=0.865),
        Level(claim="Metric learning reaches human level, 95.5 %, on Lake's 20 runs (people, measured on these runs)",
              source="Lake et al. 2015 (Science): the level; the study's goal",
              regime="people shown one example each; no training budget",
              chapter="06_oneshot_record", dataset="omniglot", setting=CHOSEN_ONESHOT, metric="oneshot_accuracy",
              level=0.955),
    ]
    return out


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


def build(profile: Profile, root=None) -> pd.DataFrame:
    """One row per claim: claim, source, both regimes, measurement, corrected interval, minimum
    detectable effect, verdict and the reason for it."""
    tables: dict[str, pd.DataFrame] = {}

    def table(chapter: str) -> pd.DataFrame:
        if chapter not in tables:
            tables[chapter] = read_runs(profile.name, chapter, root)
        return tables[chapter]

    listed = claims(profile)
    raw = {}
    for i, c in enumerate(listed):
        if isinstance(c, Comparison):
            t = table(c.chapter)
            try:
                a, b = (records.per_seed(t, s, c.metric, c.dataset) for s in (c.a, c.b))
            except records.RecordsError:
                continue
            raw[i] = stats.paired_difference(a, b, confidence=1 - ALPHA)
    corrected = stats.holm(raw, alpha=ALPHA) if len(raw) > 1 else raw
    rows = []
    for i, c in enumerate(listed):
        t = table(c.chapter)
        arms = [c.a, c.b] if isinstance(c, Comparison) else [c.setting]
        ours = _regime(t[(t.dataset == c.dataset) & t.setting.isin(arms)])
        row = {"claim": c.claim, "source": c.source, "dataset": c.dataset, "claim's regime": c.regime,
               "our regime": ours, "metric": getattr(c, "metric", getattr(c, "flag", "")),
               "diff": math.nan, "low": math.nan, "high": math.nan, "mde": math.nan, "seeds": 0}
        if isinstance(c, Comparison):
            d = corrected.get(i)
            if d is None:
                row.update(verdict=Verdict.INCONCLUSIVE.value, reason=f"not run in the {profile.name} profile")
            else:
                row.update(diff=d.diff, low=d.low, high=d.high, mde=stats.mde_of(d), seeds=d.n,
                           verdict=stats.verdict(d, c.claimed_effect, c.regime_matches, c.direction).value,
                           reason=stats.verdict_reason(d, c.claimed_effect, c.regime_matches, c.direction))
        else:
            rows_of = t[(t.dataset == c.dataset) & (t.setting == c.setting)]
            if rows_of.empty:
                row.update(verdict=Verdict.INCONCLUSIVE.value, reason=f"not run in the {profile.name} profile")
            elif isinstance(c, Share):
                v, why = share_verdict(int(rows_of[c.flag].astype(bool).sum()), len(rows_of), c.regime_matches)
                also = (f"; contracted (the older, scale-dependent spread rule) in {int(rows_of.contracted.astype(bool).sum())}"
                        f" of {len(rows_of)}" if c.flag == "collapsed" and "contracted" in rows_of else "")
                row.update(seeds=len(rows_of), verdict=v.value, reason=f"{c.flag} in {why}{also}")
            else:
                values = rows_of[c.metric].astype(float).tolist()
                v, why = level_verdict(values, c.level, c.regime_matches)
                row.update(seeds=len(rows_of), diff=float(np.nanmean(values)) - c.level, verdict=v.value, reason=why)
        rows.append(row)
    return pd.DataFrame(rows)
