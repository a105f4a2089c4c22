"""lib/arms.py: the arm names the claims and the confirmatory declaration use are arms the chapters
plan, and each name lib/arms.py defines is spelled there only."""
import ast
from pathlib import Path

import pytest

import lib.runs.__main__ as runs_cli
from lib import arms, confirmatory
from lib.claims import Comparison, claims
from lib.config import load_profile

LIB = Path(__file__).resolve().parent.parent / "lib"

# Arms a chapter names only once its earlier stages are trained, so a plan built from nothing lacks
# them: chapter 1's minimal fix (chosen from the ablations' gains) and both arms on its fresh seeds,
# and chapter 6's chosen recipe (the end of its road, recorded again under this name).
LATER_STAGES = ("fresh seeds", arms.MINIMAL_FIX, arms.CHOSEN_ONESHOT)

# The same word for another thing: a negative's band in the triplet-mechanics chapter, not a strategy.
HOMONYMS = {arms.HARD: {"mechanics.py", "chapters/mechanics.py"}}


@pytest.fixture
def folders(tmp_path, monkeypatch):
    monkeypatch.setenv("METRIC_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("METRIC_RESULTS", str(tmp_path / "results"))


def _planned(profile: str, monkeypatch) -> set[tuple[str, str, str]]:
    """Every (chapter, dataset, setting) the profile's chapters plan, a run shared by two chapters
    under each one's own name (the plan itself keeps a run under the first chapter that asks for it)."""
    seen: set[tuple[str, str, str]] = set()

    def recording(plan):
        def stages(ch):
            for stage in plan(ch):
                seen.update((r.chapter, r.dataset, r.setting) for r in stage)
                yield stage
        return stages

    monkeypatch.setattr(runs_cli, "PLANS", {name: recording(p) for name, p in runs_cli.PLANS.items()})
    runs_cli.build_plan(profile)
    return seen


def _missing(named: list[tuple[str, str, str]], planned: set) -> list:
    return [n for n in named if n not in planned and not any(s in n[2] for s in LATER_STAGES)]


@pytest.mark.parametrize("profile", ["smoke", "quick", "full"])
def test_every_arm_the_claims_name_is_planned(profile, folders, shared_data, monkeypatch):
    named = [(c.chapter, c.dataset, arm) for c in claims(load_profile(profile))
             for arm in ((c.a, c.b) if isinstance(c, Comparison) else (c.setting,))]
    assert named and not _missing(named, _planned(profile, monkeypatch))


# The declaration names the full profile's arms (its grid centre K=4, M=2); smoke's grid is smaller.
@pytest.mark.parametrize("profile", ["quick", "full"])
def test_every_arm_the_confirmatory_declaration_names_is_planned(profile, folders, shared_data, monkeypatch):
    named = [(c.chapter, c.dataset, arm) for c in confirmatory.load().claims for arm in (c.a, c.b)]
    assert named and not _missing(named, _planned(profile, monkeypatch))


def _defined() -> dict[str, str]:
    """{value: name} of every string constant lib/arms.py defines at module level."""
    tree = ast.parse((LIB / "arms.py").read_text())
    return {node.value.value: node.targets[0].id for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)}


def test_each_arm_name_is_spelled_in_lib_arms_only():
    defined = _defined()
    assert arms.SEMI_HARD_TRIPLET in defined and arms.CHOSEN_ONESHOT in defined and len(defined) >= 10
    elsewhere = []
    for path in sorted(LIB.rglob("*.py")):
        rel = path.relative_to(LIB).as_posix()
        if rel == "arms.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in defined and rel not in HOMONYMS.get(node.value, ()):
                elsewhere.append(f"lib/{rel}:{node.lineno} spells {node.value!r} (use lib.arms.{defined[node.value]})")
    assert not elsewhere, "\n".join(elsewhere)
