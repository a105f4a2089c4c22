"""The one voice: `verdict_sentence`, the one source of every verdict sentence (chapters, ledger)."""
from __future__ import annotations

import math

from lib.stats.levels import LevelJudgement
from lib.stats.paired import Difference, _finite, mde_of
from lib.stats.shares import ShareJudgement
from lib.stats.verdicts import Judgement, Verdict, _pct, _seeds, judge, measurement

def _regime(matches: bool | None) -> str:
    if matches is None:
        return ""
    return "; in the claim's regime" if matches else "; in a regime other than the claim's"


def _paired_sentence(j: Judgement) -> str:
    d, scale, unit = j.difference, j.scale, j.unit

    def num(x: float) -> str:
        return f"{x * scale:+.1f}"

    def size(x: float) -> str:
        return f"{x * scale:.1f} {unit}".rstrip()

    meas = measurement(d, scale, unit)
    side, other = ("above", "below") if j.direction == 1 else ("below", "above")
    claim_txt = None if j.claimed_effect is None else f"the claimed {num(j.direction * j.claimed_effect)} {unit}".rstrip()
    sesoi_txt = None if j.smallest_effect is None else (
        claim_txt if j.claimed_effect is not None and j.smallest_effect == j.claimed_effect
        else f"the smallest effect of interest, {num(j.direction * j.smallest_effect)} {unit}".rstrip())
    ref_txt = claim_txt or sesoi_txt
    mde = mde_of(d, power=j.power)
    mde_txt = (f"at this level {_seeds(d.n)} would detect " + ("no effect" if math.isinf(mde) else f"{size(mde)}")
               + f" with {j.power * 100:g} % power") if (_finite(mde) and mde > 0) or math.isinf(mde) else ""
    if j.awaiting is not None:
        got = f"{num(d.diff)} {unit} over the {_seeds(d.n)} run so far" if _finite(d.diff) else "nothing run yet"
        return (f"Δ {got}; a confirmatory row is judged only on all {j.awaiting[1]} of its declared seeds"
                f"{_regime(j.regime_matches)}")
    if d.n < 2 or not (_finite(d.low) and _finite(d.high)):
        return f"{meas}: nothing can be concluded{_regime(j.regime_matches)}"
    if not j.claimed:  # a comparison that tests no claim: only where the interval lies
        if d.low > 0:
            return f"{meas} lies above zero"
        if d.high < 0:
            return f"{meas} lies below zero"
        return f"{meas} includes zero" + (f"; {mde_txt}" if mde_txt else "")
    v = j.verdict
    if v == Verdict.REPRODUCED:
        text = f"{meas} lies {side} zero, on the claimed side"
    elif v == Verdict.REPRODUCED_SMALLER:
        text = f"{meas} lies {side} zero, on the claimed side, but short of {ref_txt}"
    elif v == Verdict.CONTRADICTED:
        text = f"{meas} lies {other} zero, against the claimed direction" + (f" ({claim_txt})" if claim_txt else "")
    elif v == Verdict.NO_EFFECT:
        text = (f"{meas} includes zero, and two one-sided tests at the same level rule out effects of "
                f"±{size(j.smallest_effect)} or more (TOST p = {j.tost_p:.2g})")
    else:
        text = f"{meas} includes zero"
        if ref_txt:
            text += f" and does not rule out {ref_txt}"
        if mde_txt:
            text += f"; {mde_txt}"
    return text + _regime(j.regime_matches)


def _share_sentence(j: ShareJudgement) -> str:
    said = f"{j.what} in {j.flagged} of {_seeds(j.seeds)}"
    if j.awaiting is not None:
        return (f"{said} so far; a confirmatory row is judged only on all {j.awaiting[1]} of its declared seeds"
                f"{_regime(j.regime_matches)}")
    if j.seeds < 1:
        return f"{said}: nothing can be concluded{_regime(j.regime_matches)}"
    rate = (f"{said}: the rate lies between {j.low * 100:.0f} % and {j.high * 100:.0f} % (two-sided exact "
            f"{_pct(j.confidence)} Clopper-Pearson interval)")
    claimed = f"the claimed majority (more than {j.claimed_rate * 100:.0f} % of seeds)"
    where = {Verdict.REPRODUCED: f"above {claimed}", Verdict.CONTRADICTED: f"below {claimed}"}.get(
        j.verdict, f"which straddles {j.claimed_rate * 100:.0f} %: it neither shows nor rules out {claimed}")
    return f"{rate}, {where}{_regime(j.regime_matches)}"


def _level_sentence(j: LevelJudgement) -> str:
    if not _finite(j.low):
        return (f"{j.mean * 100:.1f} % from {_seeds(j.seeds)} against the claimed {j.level * 100:.1f} %: "
                f"no interval{_regime(j.regime_matches)}")
    interval = (f"{j.mean * 100:.1f} % ({_pct(j.confidence)} hierarchical bootstrap interval {j.low * 100:.1f} to "
                f"{j.high * 100:.1f} over {_seeds(j.seeds)} x {j.runs} run(s) x {j.trials} trials{j.note})")
    if j.awaiting is not None:
        return (f"{interval} so far; a confirmatory row is judged only on all {j.awaiting[1]} of its declared "
                f"seeds{_regime(j.regime_matches)}")
    where = {Verdict.REPRODUCED: "lies at or above", Verdict.CONTRADICTED: "lies below"}.get(j.verdict, "straddles")
    return f"{interval} {where} the claimed {j.level * 100:.1f} %{_regime(j.regime_matches)}"


def verdict_sentence(judgement: Judgement | ShareJudgement | LevelJudgement) -> str:
    """THE verdict sentence of one comparison: chapters, ledger and README all print this string.

    '<verdict>: <measurement at the row's exact level> <where it lies against zero / the claim>
    <; regime qualifier>', e.g. 'contradicted: Δ -2.1 points (97.5 % (Holm level 0.05/2, family of
    2) interval -3.8 to -0.4; 10 seeds) lies below zero, against the claimed direction (the claimed
    +2.0 points); in a regime other than the claim's'. A comparison that tests no claim
    (`judge(..., claimed=False)`) gets no verdict word, only where its interval lies."""
    if isinstance(judgement, ShareJudgement):
        return f"{judgement.label}: {_share_sentence(judgement)}"
    if isinstance(judgement, LevelJudgement):
        return f"{judgement.label}: {_level_sentence(judgement)}"
    if not judgement.claimed:
        return _paired_sentence(judgement)
    return f"{judgement.label}: {_paired_sentence(judgement)}"


def verdict(difference: Difference, claimed_effect: float | None, regime_matches: bool | None = None,
            direction: int = +1, *, smallest_effect: float | None = None, power: float = 0.8) -> Verdict:
    """The verdict word of `judge` (see its table of rules); `regime_matches` never changes it."""
    return judge(difference, claimed_effect, smallest_effect=smallest_effect, direction=direction,
                 regime_matches=regime_matches, power=power).verdict


def verdict_reason(difference: Difference, claimed_effect: float | None, regime_matches: bool | None = None,
                   direction: int = +1, *, smallest_effect: float | None = None, power: float = 0.8,
                   scale: float = 100.0, unit: str = "points") -> str:
    """`verdict_sentence` of `judge(...)`: the verdict and why, quoting the interval at its exact level."""
    return verdict_sentence(judge(difference, claimed_effect, smallest_effect=smallest_effect, direction=direction,
                                  regime_matches=regime_matches, power=power, scale=scale, unit=unit))
