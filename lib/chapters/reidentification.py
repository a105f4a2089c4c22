"""Chapter 5: the recipes other chapters trained, re-identifying held-out belugas as the whale
competitions scored it.

The chapter trains nothing of its own: `recipes` names other chapters' runs (`borrowed_config`),
`measure` scores every (recipe, seed) with `lib.reid.run_metrics` and records the scores as columns
of the chapter's per-seed table, and every table, figure and verdict below reads that table.
"""
from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd

from lib import compare, derived, reid, records, stats
from lib.config import RunConfig
from lib.splits import load_splits
from lib.study import Chapter, Diverged, borrowed_config, fmt

SCENARIOS = ("top, later encounter", "top, same encounter allowed", "side, same side")  # lib.reid.scenarios
LATER, SAME = SCENARIOS[0], SCENARIOS[1]
CALLED_NEW = "open-set share called new"
TRULY_NEW = "open-set share new"
POST_HOC = "best on the test split, chosen after the fact"
# The humpback team's divide-and-conquer result was on humpback tails with large pretrained networks;
# ours is belugas, a small network trained from scratch at 64x32 pixels.
REGIME_MATCHES_HUMPBACK = False


class Metrics:
    """The chapter's metric names, as `lib.reid.run_metrics` writes them: the columns of its per-seed table."""

    def __init__(self, ch: Chapter):
        s = ch.settings
        self.k20, self.k5, self.photos = s.competition_k, s.humpback_k, list(s.catalogue_photos)
        self.open_set = f"open-set mAP@{self.k5}"
        self.new_first = f"open-set mAP@{self.k5}, 'new' first"
        # The divide-vs-single claim is judged on closed-set metrics, which every query's ranking moves;
        # the first one decides, the second (the beluga competition's score) is a check.
        self.closed_set = [self.individuals(None, "per image"), self.scenario(LATER)]

    def scenario(self, name: str) -> str:
        return f"mAP@{self.k20} {name}"

    def individuals(self, photos: int | None, how: str) -> str:
        return f"mAP@{self.k5} {photos or 'all'} photo(s), {how}"

    @property
    def reported(self) -> list[str]:
        by_photos = [self.individuals(p, how) for p in self.photos for how in ("per image", "averaged")]
        return ([self.scenario(s) for s in SCENARIOS] + by_photos
                + [self.open_set, self.new_first, CALLED_NEW, TRULY_NEW, "new AUC", "new precision", "new recall"])


# ------------------------------------------------------------------ the recipes and the held-out whales


def plan(ch: Chapter):
    """The chapter's runs (lib.runs.plan): the borrowed recipes, which other chapters' plans hold too."""
    yield ch.planned(recipes(ch, ch.overrides))


def recipes(ch: Chapter, overrides: dict | None) -> dict[str, RunConfig]:
    """The borrowed recipes this profile reports (its `only_recipes`, else all), on the beluga split."""
    chosen = ch.settings.only_recipes if ch.settings.only_recipes is not None else list(ch.settings.recipes)
    return {name: borrowed_config(spec.model_dump(exclude_unset=True), ch.profile.name, overrides, ch.dataset)
            for name, spec in ch.settings.recipes.items() if name in chosen}


def held_out_whales(recipes: dict[str, RunConfig], results: dict[str, list]):
    """The held-out split every recipe was scored on; refuses a run whose held-out images differ,
    since the scenarios index into this split."""
    split = load_splits(next(iter(recipes.values()))).test
    ours = hashlib.sha256(np.ascontiguousarray(split.labels, dtype=np.int64).tobytes()).hexdigest()
    for name, runs in results.items():
        for run in runs:
            if not isinstance(run, Diverged) and str(_labels_digest(run)) != ours:
                raise RuntimeError(f"{name}: its held-out images differ from this chapter's; the recipes must "
                                   "share the beluga split")
    return split


def _labels_digest(run) -> str:
    """The sha256 of a run's held-out labels, kept by run (lib.derived)."""
    return str(derived.of_run(run, "test-labels", lambda: {"sha256": hashlib.sha256(np.ascontiguousarray(
        run.arrays["test_labels"], dtype=np.int64).tobytes()).hexdigest()})["sha256"])


def recipe_table(recipes: dict[str, RunConfig], results: dict[str, list]) -> pd.DataFrame:
    return pd.DataFrame({name: [cfg.train.epochs, cfg.loss.name, cfg.miner.name, cfg.divide.clusters,
                                sum(isinstance(r, Diverged) for r in results[name])]
                         for name, cfg in recipes.items()},
                        index=["epochs", "loss", "miner", "learners K", "diverged seeds"]).T


def scenario_table(ch: Chapter, split) -> pd.DataFrame:
    meta, labels = split.meta, split.labels
    return pd.DataFrame({name: {"queries": len(s.query), "catalogue photos": len(s.catalogue),
                                "query whales": meta.iloc[s.query].whale_id.nunique(),
                                "queries with a match": int(np.isin(labels[s.query], labels[s.catalogue]).sum())}
                         for name, s in reid.scenarios(meta, ch.settings.protocol_seed).items()}).T


# ------------------------------------------------------------------ scoring every (recipe, seed)


def _test_half(ch: Chapter, split) -> reid.OpenSet:
    return reid.open_set_halves(split.meta, ch.settings.protocol_seed, ch.settings.new_fraction)["test"]


def new_shares(emb: np.ndarray, labels: np.ndarray, test_half: reid.OpenSet, threshold: float) -> dict:
    """Of the test half's queries, the share the validation threshold calls new and the share that
    are new: when the first is near 1, open-set mAP@5 is the "new first" score whatever the embedding."""
    if not math.isfinite(threshold):
        return {CALLED_NEW: math.nan, TRULY_NEW: math.nan}
    scored = reid.new_scores(emb, labels, test_half, average=False)
    return {CALLED_NEW: float(np.mean(scored["score"] > threshold)), TRULY_NEW: float(np.mean(scored["is_new"]))}


def reid_scores(ch: Chapter, run, split, test_half: reid.OpenSet) -> dict:
    """Every re-identification metric of one run (none for a diverged run, which has no embeddings)."""
    if isinstance(run, Diverged):
        return {}
    s = ch.settings
    protocol = s.model_dump(include={"competition_k", "humpback_k", "catalogue_photos", "new_fraction", "protocol_seed"})

    def compute() -> dict:
        emb = run.arrays["test_embeddings"]
        scores = reid.run_metrics(emb, split.labels, split.meta, competition_k=s.competition_k,
                                  humpback_k=s.humpback_k, catalogue_photos=s.catalogue_photos,
                                  new_fraction=s.new_fraction, seed=s.protocol_seed)
        return {**scores, **new_shares(emb, split.labels, test_half, scores["open-set threshold"])}

    kept = derived.of_run(run, "reid-scores", compute, params=protocol, modules=("reid", "evaluate"))
    return {k: v.item() for k, v in kept.items()}


def measure(ch: Chapter, results: dict[str, list], split) -> pd.DataFrame:
    """Score every (recipe, seed) and record the scores as columns of the chapter's per-seed table
    (figures/<profile>/05_reidentification-runs.csv); returns that table."""
    test_half = _test_half(ch, split)
    for name, runs in results.items():
        for run in runs:
            ch.record(name, run, extra=reid_scores(ch, run, split, test_half))
    ch.save_records()
    return ch.table()


def save_summary(ch: Chapter, table: pd.DataFrame) -> pd.DataFrame:
    """Mean and sd over seeds of every reported metric per recipe, with the collapsed and diverged
    seeds, saved as the chapter's `reid` table; returns the means, for reading."""
    summary = records.summary(table, Metrics(ch).reported, flags=("collapsed", "diverged"))
    ch.save_table(summary, "reid")
    means = [c for c in summary.columns if c.endswith(" mean")]
    return summary[["seeds", "collapsed", "diverged", *means]].droplevel("dataset").round(3)


# ------------------------------------------------------------------ reading the per-seed table


def _values(table: pd.DataFrame, setting: str, metric: str) -> np.ndarray:
    if metric not in table:
        return np.array([])
    values = table.loc[table["setting"] == setting, metric].to_numpy(dtype=float)
    return values[np.isfinite(values)]


def _mean(table: pd.DataFrame, setting: str, metric: str) -> float:
    values = _values(table, setting, metric)
    return float(values.mean()) if len(values) else math.nan


def _fmt(table: pd.DataFrame, setting: str, metric: str, pct: bool = True) -> str:
    values = _values(table, setting, metric)
    if not len(values):
        return "not measured"
    return fmt(values.mean(), values.std(ddof=1) if len(values) > 1 else math.nan, pct)


def _settings(table: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(table["setting"]))


def best_recipe(table: pd.DataFrame, metric: str) -> str:
    """The recipe with the highest mean `metric` on the test split: a choice made after the fact."""
    means = {name: _mean(table, name, metric) for name in _settings(table)}
    return max(means, key=lambda name: means[name] if math.isfinite(means[name]) else -math.inf)


def _first_trained(runs: list):
    return next((r for r in runs if not isinstance(r, Diverged)), None)


# ------------------------------------------------------------------ figures


def scored_queries(split, scenario: reid.Scenario) -> int:
    """The queries a scenario's mAP scores: those whose whale has a photo of the same view in the
    catalogue (as `lib.reid.scenario_map` counts them)."""
    view, labels = split.meta["viewpoint"].to_numpy(), split.labels
    count = 0
    for v in np.unique(view[scenario.query]):
        q = scenario.query[view[scenario.query] == v]
        c = scenario.catalogue[view[scenario.catalogue] == v]
        count += int(np.isin(labels[q], labels[c]).sum()) if len(c) else 0
    return count


def scenario_queries(ch: Chapter) -> dict[str, int]:
    """{scenario: queries scored} on the chapter's held-out whales (the recipes share that split)."""
    split = load_splits(next(iter(recipes(ch, ch.overrides).values()))).test
    return {name: scored_queries(split, sc) for name, sc in reid.scenarios(split.meta, ch.settings.protocol_seed).items()}


# ------------------------------------------------------------------ tables beside the figures


def against_blog(ch: Chapter, table: pd.DataFrame) -> pd.DataFrame:
    """Our two top-view scenarios per recipe, on held-out whales, under the blog's reported number."""
    m = Metrics(ch)
    columns = [m.scenario(SAME), m.scenario(LATER)]
    out = pd.DataFrame({c: {name: _fmt(table, name, c) for name in _settings(table)} for c in columns})
    out.loc["the blog, as reported (on its own training whales)"] = [f"{ch.settings.blog_map * 100:.1f} %",
                                                                     "not reported"]
    return out


def open_set_table(ch: Chapter, table: pd.DataFrame) -> pd.DataFrame:
    """Open-set mAP@5 at the validation threshold beside the trivial "new first" score, the share of
    test queries the threshold calls new and the share that are new, and the ROC AUC, per recipe."""
    m = Metrics(ch)
    columns = {m.open_set: True, m.new_first: True, CALLED_NEW: True, TRULY_NEW: True, "new AUC": False}
    return pd.DataFrame({c: {name: _fmt(table, name, c, pct) for name in _settings(table)}
                         for c, pct in columns.items()})


def divide_vs_single(ch: Chapter, table: pd.DataFrame) -> pd.DataFrame:
    """Divide and conquer minus one learner, paired by seed (`lib.compare.compare`): on the closed-set
    metrics that judge the humpback claim, each with its minimum detectable effect beside the claimed
    gain and the verdict, and on open-set mAP@5, shown but not judged. Saved (as fractions) as the
    chapter's `divide-vs-single` table; returned in points."""
    m, s = Metrics(ch), ch.settings
    pair, gain = (s.divided, s.single), s.humpback_gain
    rows, ruled = [], _ledger_rows(ch)
    for metric in [*m.closed_set, m.open_set]:
        row = compare.compare(table, {metric: pair}, metric).iloc[0][["diff", "low", "high", "seeds", "mde"]]
        judged = metric in m.closed_set
        verdict = (ruled[metric][0] + " (the ledger's)" if metric in ruled else
                   stats.judge(compare.differences(table, {metric: pair}, metric)[metric], gain,
                               regime_matches=REGIME_MATCHES_HUMPBACK).label + " (exploratory)" if judged
                   else "shown, not judged")
        rows.append({"metric": metric, **row, "claimed": gain, "verdict": str(verdict)})
    out = pd.DataFrame(rows).set_index("metric")
    ch.save_table(out, "divide-vs-single")
    points = ["diff", "low", "high", "mde", "claimed"]
    return out.assign(**{c: (out[c] * 100).round(1) for c in points}, seeds=out["seeds"].astype(int))


# ------------------------------------------------------------------ the verdict


def _said(d: stats.Difference) -> str:
    """One paired difference at its level and where its interval lies, with the effect these seeds
    would detect when it includes zero (`lib.stats.verdict_sentence`, the one voice; no claim)."""
    if not math.isfinite(d.diff):
        return "not measured"
    return stats.verdict_sentence(stats.judge(d, claimed=False))


def _ledger_rows(ch: Chapter) -> dict[str, tuple[str, str]]:
    """{metric: (verdict label, verdict sentence)} of the claims ledger's rows on divide and conquer
    against one learner in this chapter, word for word (`lib.ledger.chapter_verdicts`)."""
    from lib import ledger
    pair = (ch.settings.divided, ch.settings.single)
    return {c.metric: (label, said) for c, label, said in ledger.chapter_verdicts(ch) if (c.a, c.b) == pair}


def _paired(table: pd.DataFrame, setting: str, metric_a: str, metric_b: str) -> stats.Difference:
    return stats.paired_difference(records.per_seed(table, setting, metric_a),
                                   records.per_seed(table, setting, metric_b))


def _averaging_lines(ch: Chapter, table: pd.DataFrame, best: str) -> list[str]:
    m = Metrics(ch)
    raw = {p: _paired(table, best, m.individuals(p, "averaged"), m.individuals(p, "per image"))
           for p in m.photos if p != 1}  # with one photo per whale averaging changes nothing
    family = stats.holm(raw) if len(raw) > 1 else raw
    paired = "paired by seed" + (", Holm-corrected over catalogue sizes" if len(raw) > 1 else "")
    return [f"**Averaging each whale's photos** ({best}, {p or 'all'} catalogue photos per whale), against ranking by "
            f"the closest photo ({paired}): mAP@{m.k5} {_said(d)}." for p, d in family.items()]


def _new_individual_line(ch: Chapter, table: pd.DataFrame, best: str) -> str:
    m = Metrics(ch)
    if not len(_values(table, best, m.open_set)):
        return (f"**New individuals** ({best}): not measured in this profile (too few held-out whales for the "
                "new-individual halves).")
    return (f"**New individuals** ({best}): ROC AUC {_fmt(table, best, 'new AUC', pct=False)}; the validation threshold "
            f"calls {_fmt(table, best, CALLED_NEW)} of the test queries new ({_fmt(table, best, TRULY_NEW)} are), with "
            f"precision {_fmt(table, best, 'new precision')} and recall {_fmt(table, best, 'new recall')}; open-set "
            f"mAP@{m.k5} {_fmt(table, best, m.open_set)} against {_fmt(table, best, m.new_first)} for answering "
            f"\"new\" first to every query: {_said(_paired(table, best, m.open_set, m.new_first))}.")


def _open_set_line(ch: Chapter, table: pd.DataFrame) -> str:
    m, arms, gain = Metrics(ch), (ch.settings.divided, ch.settings.single), ch.settings.humpback_gain
    gaps = [abs(_mean(table, a, m.open_set) - _mean(table, a, m.new_first)) for a in arms]
    if not all(math.isfinite(g) for g in gaps):
        return (f"Open-set mAP@{m.k5}, the humpback leaderboard's score, was not measured for both arms in this "
                "profile (too few held-out whales for the new-individual halves).")
    shares = " and ".join(f"{_fmt(table, a, CALLED_NEW)} ({a})" for a in arms)
    resolves = (f"the score sits within {max(gaps) * 100:.1f} points of that trivial score, too close to the floor to "
                f"resolve a {gain * 100:+.0f}-point difference" if max(gaps) < gain else
                f"the score moves up to {max(gaps) * 100:.1f} points away from that trivial score")
    return (f"On open-set mAP@{m.k5}, the humpback leaderboard's score, the validation threshold calls {shares} of the "
            f"test queries new, and {resolves}; so the claim is judged on closed-set metrics, which every query's "
            "ranking moves.")


def pretrained_vs_scratch(ch: Chapter, table: pd.DataFrame) -> pd.DataFrame:
    """Each pretrained recipe minus the same recipe from scratch (`pretrained_pairs`, those both
    run by this profile), paired by seed, on a later encounter and with same-encounter photos
    allowed: one Holm family per metric. Empty when there are no such pairs."""
    m, chosen = Metrics(ch), set(_settings(table))
    pairs = {f"{a} vs {b}": (a, b) for a, b in ch.settings.pretrained_pairs.items() if {a, b} <= chosen}
    if not pairs:
        return pd.DataFrame()
    found = pd.concat([compare.compare(table, pairs, metric) for metric in (m.scenario(LATER), m.scenario(SAME))])
    ch.save_table(found, "pretrained-vs-scratch")
    return found


def _pretrained_line(ch: Chapter, table: pd.DataFrame) -> str | None:
    found = pretrained_vs_scratch(ch, table)
    if not len(found):
        return None
    parts = [f"{name}, {row['metric']}: {compare.said(row)}" for name, row in found.iterrows()]
    return ("**Pretrained against scratch** (the same recipe on chapter 1's ImageNet-pretrained backbone, paired by "
            "seed, Holm-corrected per metric): " + "; ".join(parts) + ".")


def _claim_lines(ch: Chapter, table: pd.DataFrame) -> list[str]:
    """One line per closed-set metric, against the claimed gain: the claims ledger's verdict sentence,
    word for word, where the ledger judges that metric; else this chapter's own (exploratory)
    `lib.stats.verdict_sentence` at its level (the regime qualifies it, never decides it)."""
    s, m = ch.settings, Metrics(ch)
    pair, gain = (s.divided, s.single), s.humpback_gain
    lines, ruled = [], _ledger_rows(ch)
    for role, metric in zip(("decides", "checks"), m.closed_set):
        if metric in ruled:
            lines.append(f"- *{metric}* ({role}), **the ledger's verdict**: {ruled[metric][1]}.")
            continue
        judged = stats.judge(compare.differences(table, {metric: pair}, metric)[metric], gain,
                             regime_matches=REGIME_MATCHES_HUMPBACK)
        lines.append(f"- *{metric}* ({role}, exploratory): {stats.verdict_sentence(judged)}.")
    return lines


def verdict(ch: Chapter, table: pd.DataFrame) -> str:
    """The chapter's conclusions as Markdown, computed from the per-seed table."""
    s, m = ch.settings, Metrics(ch)
    later, same = m.scenario(LATER), m.scenario(SAME)
    best = best_recipe(table, later)
    seeds = len(_values(table, best, later))
    lines = [f"**Highest mAP@{m.k20} at a later encounter:** *{best}* ({POST_HOC}, among {len(_settings(table))} "
             f"recipes, so its score is optimistic), {_fmt(table, best, later)} over {seeds} seed(s); with "
             f"near-duplicates from the same encounter allowed it scores {_fmt(table, best, same)}."]
    blog = next((n for n in _settings(table) if n.startswith("blog")), None)
    if blog is not None:
        lines.append(f"**The blog's configuration** scores {_fmt(table, blog, later)} at a later encounter (the blog "
                     f"reported {s.blog_map * 100:.1f} % on its own training whales, same encounters allowed).")
    if s.winners_map is not None:
        lines.append(f"**Where the winners were.** The Where's Whale-do winners reached mAP@20 {s.winners_map:.2f} "
                     f"(EfficientNet-B5 at 512 px with ArcFace, on the competition's own test set, not these whales); "
                     f"the best recipe here scores {_mean(table, best, later):.2f}, with images of "
                     f"{'x'.join(map(str, np.atleast_1d(ch.config().data.image_size)))} px and this profile's budget.")
    lines += [text for text in (_pretrained_line(ch, table),) if text]
    lines += _averaging_lines(ch, table, best)
    lines.append(_new_individual_line(ch, table, best))
    lines.append(f"**Divide and conquer vs one learner** ({s.divided} vs {s.single}, same budget, paired by "
                 f"seed; the humpback team reported {s.humpback_gain * 100:+.0f} points of mAP@{m.k5}). "
                 + _open_set_line(ch, table) + "\n\n" + "\n".join(_claim_lines(ch, table)))
    if ch.profile.name == "smoke":
        lines.append("*Smoke profile: these numbers are meaningless; the sentences above only prove the chain runs.*")
    return "\n\n".join(lines)
