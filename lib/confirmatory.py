"""The confirmatory family, declared as data before its runs (params/confirmatory.yaml).

For each claim the ledger judges comparatively the declaration fixes one arm pair, one metric, one
budget (epochs), the smallest effect of interest (the claimed effect where the claim states one,
otherwise a stated and justified size) and the seeds. The seed count comes from a prospective
power calculation (`seeds_needed`) on the pilot's standard deviation of the paired differences,
σ_d, read from the committed 3-seed per-seed tables (figures/<pilot>/<chapter>-runs.csv): the
smallest n >= `min_seeds` whose two-sided paired t-test has `power` against the smallest effect of
interest at the family's most stringent Holm level, alpha / m (so every step of the step-down has
at least that power), capped at `max_seeds`. The pilot's seeds are the first declared seeds (an
internal pilot: it set only n, from σ_d alone). Every other comparison in the ledger is exploratory.

    python -m lib.confirmatory          # the power table: claim, pilot σ_d, seeds needed, declared

This module reads YAML and CSV only (no torch), so the run planner can import it:
`schedule()` -> [(chapter, dataset, setting_a, setting_b, seeds), ...].
"""
from __future__ import annotations

import io
import math
import subprocess
from pathlib import Path

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lib import stats
from lib.errors import ConfigError
from lib.paths import REPO_ROOT

PATH = REPO_ROOT / "params" / "confirmatory.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Seeds(_Strict):
    """Consecutive seeds first, first + 1, ..., first + count - 1."""

    first: int = Field(ge=0)
    count: int = Field(ge=2)

    @property
    def values(self) -> tuple[int, ...]:
        return tuple(range(self.first, self.first + self.count))


class Claim(_Strict):
    id: str
    claim: str
    source: str
    chapter: str
    dataset: str
    a: str  # setting names exactly as the chapter's per-seed table names them
    b: str
    metric: str
    direction: int = 1  # +1: the claim is a - b > 0
    budget: int = Field(ge=1)  # epochs every run of both arms trains for
    claimed_effect: float | None = None  # a - b as a magnitude, when the claim states a size
    smallest_effect: float = Field(gt=0)  # the smallest effect of interest, a magnitude
    justification: str
    regime_matches: bool = False
    seeds: Seeds

    @field_validator("direction")
    @classmethod
    def _direction(cls, v: int) -> int:
        if v not in (1, -1):
            raise ValueError(f"direction must be +1 or -1, got {v}")
        return v

    @model_validator(mode="after")
    def _claimed_is_smallest(self) -> "Claim":
        if self.claimed_effect is not None and not math.isclose(abs(self.claimed_effect), self.smallest_effect):
            raise ValueError(f"{self.id}: the smallest effect of interest must be the claimed effect where the claim "
                             f"states one ({self.claimed_effect} vs {self.smallest_effect})")
        return self

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        """What identifies the comparison in the ledger: chapter, data set, arms, metric."""
        return self.chapter, self.dataset, self.a, self.b, self.metric


class Declaration(_Strict):
    profile: str  # the profile whose per-seed tables the family is judged on
    pilot: str  # the profile whose committed 3-seed tables give the pilot σ_d
    alpha: float = Field(gt=0, lt=1)  # family-wise error rate (Holm over `claims`)
    power: float = Field(gt=0, lt=1)
    min_seeds: int = Field(ge=2)
    max_seeds: int = Field(ge=2)
    claims: list[Claim]

    @model_validator(mode="after")
    def _consistent(self) -> "Declaration":
        ids = [c.id for c in self.claims]
        if len(set(ids)) != len(ids):
            raise ValueError(f"claim ids repeat: {sorted(i for i in ids if ids.count(i) > 1)}")
        keys = [c.key for c in self.claims]
        if len(set(keys)) != len(keys):
            raise ValueError("two claims declare the same comparison (chapter, data set, arms, metric)")
        if self.max_seeds < self.min_seeds:
            raise ValueError(f"max_seeds {self.max_seeds} < min_seeds {self.min_seeds}")
        short = [c.id for c in self.claims if c.seeds.count < self.min_seeds]
        if short:
            raise ValueError(f"fewer than min_seeds = {self.min_seeds} seeds declared for {short}")
        return self

    @property
    def family_size(self) -> int:
        return len(self.claims)

    @property
    def power_level(self) -> float:
        """The level the seeds are powered at: Holm's most stringent step, alpha / m."""
        return self.alpha / self.family_size

    def by_id(self, claim_id: str) -> Claim:
        for c in self.claims:
            if c.id == claim_id:
                return c
        raise KeyError(f"no declared claim {claim_id!r}; declared: {[c.id for c in self.claims]}")


def load(path: Path | str | None = None) -> Declaration:
    path = Path(path or PATH)
    try:
        raw = yaml.safe_load(path.read_text())
        return Declaration.model_validate(raw)
    except FileNotFoundError as exc:
        raise ConfigError(f"{path} is missing: the confirmatory family is declared there") from exc
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ConfigError(f"{path}: {exc}") from exc


def _git(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=20)


def commit(path: Path | str | None = None) -> str:
    """The short hash of the last commit that touched the declaration; "uncommitted" when it never
    was committed (or git cannot tell), with "+ uncommitted changes" when the file differs from it."""
    path = Path(path or PATH)
    try:
        rel = path.resolve().relative_to(REPO_ROOT)
    except ValueError:
        return "uncommitted"

    def git(*args: str) -> str:
        done = _git(*args)
        return done.stdout.strip() if done.returncode == 0 else ""

    try:
        found = git("log", "-n1", "--format=%h", "--", str(rel))
        if not found:
            return "uncommitted"
        changed = git("status", "--porcelain", "--", str(rel))
    except (OSError, subprocess.SubprocessError):
        return "uncommitted"
    return f"{found} + uncommitted changes" if changed else found


def schedule(declaration: Declaration | None = None) -> list[tuple[str, str, str, str, tuple[int, ...]]]:
    """Per declared claim: (chapter, dataset, setting_a, setting_b, seeds), for the run planner."""
    d = declaration or load()
    return [(c.chapter, c.dataset, c.a, c.b, c.seeds.values) for c in d.claims]


def declared_seeds(profile: str, chapter: str, declaration: Declaration | None = None) -> dict[tuple[str, str], tuple[int, ...]]:
    """{(dataset, setting): its declared seeds} for every arm of `chapter`'s confirmatory claims, when
    `profile` is the one the family is judged on (else {}: other profiles are exploratory). The
    chapter plans and reads these seeds beside its profile's own (lib.study.Chapter.planned)."""
    d = declaration or load()
    if profile != d.profile:
        return {}
    out: dict[tuple[str, str], set[int]] = {}
    for c in d.claims:
        if c.chapter == chapter:
            for arm in (c.a, c.b):
                out.setdefault((c.dataset, arm), set()).update(c.seeds.values)
    return {k: tuple(sorted(v)) for k, v in out.items()}


# ----------------------------------------------------------------------------- the power calculation
def seeds_needed(sd: float, effect: float, *, alpha: float, power: float = 0.8, min_seeds: int = 10,
                 max_seeds: int = 40) -> tuple[int, bool]:
    """The smallest n in [min_seeds, max_seeds] at which the two-sided paired t-test at level `alpha`
    detects a true mean difference `effect` with probability >= `power` when the differences have
    standard deviation `sd` (`lib.stats.paired_power`). Returns (n, capped): capped is True when
    even max_seeds falls short (n is then max_seeds). A NaN or zero sd needs min_seeds."""
    if not (math.isfinite(sd) and sd > 0):
        return min_seeds, False
    for n in range(min_seeds, max_seeds + 1):
        if stats.paired_power(effect, sd, n, alpha=alpha) >= power:
            return n, False
    return max_seeds, True


PILOT_SEEDS = 3  # the pilot: the first 3 of a claim's declared seeds (params/confirmatory.yaml says so)


def pilot_difference(claim: Claim, pilot: str, root: Path | str | None = None,
                     declared_at: str | None = None) -> stats.Difference:
    """The pilot's paired difference a - b of one claim, from the per-seed table
    figures/<pilot>/<chapter>-runs.csv as committed at `declared_at` (the declaring commit: the
    committed tables have since gained the runs the pilot sized; None: the file as it is now), at
    the declared budget, on the first PILOT_SEEDS of the declared seeds."""
    rel = f"figures/{pilot}/{claim.chapter}-runs.csv"
    path = Path(root or REPO_ROOT) / rel
    if declared_at is None:
        if not path.exists():
            raise ConfigError(f"{path} is missing: the pilot's per-seed table of {claim.chapter}")
        t = pd.read_csv(path)
    else:
        shown = _git("show", f"{declared_at}:{rel}", cwd=Path(root or REPO_ROOT))
        if shown.returncode != 0:
            raise ConfigError(f"{rel} at commit {declared_at}: {shown.stderr.strip() or 'not found'} "
                              "(the pilot's per-seed table when the family was declared)")
        t = pd.read_csv(io.StringIO(shown.stdout))
    t = t[t["dataset"] == claim.dataset]
    if "epochs" in t:
        t = t[t["epochs"] == claim.budget]

    def arm(setting: str) -> dict[int, float]:
        rows = t[t["setting"] == setting]
        if rows.empty or claim.metric not in rows:
            raise ConfigError(f"{claim.id}: no pilot runs of {setting!r} on {claim.dataset} at {claim.budget} epochs "
                              f"with {claim.metric!r} in {rel}" + (f" at {declared_at}" if declared_at else ""))
        pilot_seeds = set(claim.seeds.values[:PILOT_SEEDS])
        return {int(s): float(v) for s, v in zip(rows["seed"], rows[claim.metric]) if int(s) in pilot_seeds}

    return stats.paired_difference(arm(claim.a), arm(claim.b))


def power_table(declaration: Declaration | None = None, root: Path | str | None = None) -> pd.DataFrame:
    """Per declared claim: the pilot's seeds and σ_d, the smallest effect of interest, the seeds the
    power calculation asks for, the seeds declared, and the power those declared seeds give
    (effects and σ_d in points)."""
    d = declaration or load()
    # The repository's own pilot is read as committed when the family was declared; another root's
    # (a test's) as its files are.
    declared_at = commit().split(" ")[0] if root is None else None
    declared_at = None if declared_at == "uncommitted" else declared_at
    rows = []
    for c in d.claims:
        pilot = pilot_difference(c, d.pilot, root, declared_at)
        n, capped = seeds_needed(pilot.sd, c.smallest_effect, alpha=d.power_level, power=d.power,
                                 min_seeds=d.min_seeds, max_seeds=d.max_seeds)
        rows.append({"id": c.id, "claim": c.claim, "dataset": c.dataset, "pilot seeds": pilot.n,
                     "pilot σ_d": pilot.sd * 100, "smallest effect": c.smallest_effect * 100,
                     "seeds needed": n, "capped": capped, "seeds declared": c.seeds.count,
                     "power at declared": stats.paired_power(c.smallest_effect, pilot.sd, c.seeds.count,
                                                             alpha=d.power_level),
                     "pilot seeds reused": sorted(set(pilot.seeds) & set(c.seeds.values))})
    return pd.DataFrame(rows).set_index("id")


def main() -> None:
    d = load()
    table = power_table(d)
    pd.set_option("display.width", 200)
    pd.set_option("display.max_colwidth", 60)
    print(f"Confirmatory family: {d.family_size} claims, Holm at alpha {d.alpha:g}; seeds for {d.power:.0%} power at "
          f"alpha/m = {d.alpha:g}/{d.family_size} = {d.power_level:.5f} (two-sided), pilot σ_d from figures/{d.pilot}/; "
          f"declared in {PATH.relative_to(REPO_ROOT)} @ {commit()}")
    shown = table[["claim", "dataset", "pilot seeds", "pilot σ_d", "smallest effect", "seeds needed", "seeds declared",
                   "power at declared"]]
    print(shown.to_string(float_format=lambda x: f"{x:.2f}"))


if __name__ == "__main__":
    main()
