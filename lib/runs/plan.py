"""The plan: every run a profile's chapters read, as data, apart from the analyses that read them.

Each chapter module has a `plan(ch)` generator that yields lists of `PlannedRun` (setting name,
data set, seed and RunConfig), a stage at a time. A stage that depends on earlier results (chapter
1's minimal fix is chosen from its ablations; chapter 6's road keeps an ingredient only when it
helped on validation) reads them through `Chapter.results`, which raises `NotTrained` while they
are missing: the plan then ends there, `python -m lib.runs train` trains what it has, and plans
again, until nothing is missing.

    plan = build(profile, chapter_plans)     # {chapter: plan function}
    plan.missing()                           # the planned runs with no result yet, longest first
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from lib.config import RunConfig


class NotTrained(LookupError):
    """A run a chapter reads has no result in the run cache or the results store."""

    def __init__(self, missing: list["PlannedRun"], profile: str):
        self.missing = missing
        first = missing[0]
        super().__init__(f"{first.chapter}: {len(missing)} run(s) not trained yet, e.g. '{first.setting}' on "
                         f"{first.dataset}, seed {first.seed} (run {first.key}); train the plan first: "
                         f"python -m lib.runs train --profile {profile}")


@dataclass(frozen=True)
class PlannedRun:
    chapter: str
    setting: str
    dataset: str
    seed: int
    config: RunConfig = field(repr=False, compare=False)
    key: str = ""
    stage: int = 0

    @property
    def cost(self) -> float:
        """A rough relative training cost, to start the longest runs first: images seen, times
        the backbone's weight (a pretrained network fine-tuned whole is about 10x a frozen one)."""
        cfg = self.config
        images = cfg.train.steps_per_epoch * cfg.train.batch_size if cfg.train.steps_per_epoch else \
            (cfg.data.max_train_images or 20_000)
        whole = cfg.model.pretrained and not cfg.model.frozen_stages
        return cfg.train.epochs * images * (10.0 if whole else 1.0) * max(1, cfg.divide.clusters) ** 0.5


@dataclass
class Plan:
    profile: str
    runs: dict[str, PlannedRun]  # key -> the first chapter and setting that asked for it
    complete: dict[str, bool]  # chapter -> whether its plan ran to its last stage
    readers: dict[str, set[str]] = field(default_factory=dict)  # key -> every chapter that reads it

    @property
    def keys(self) -> set[str]:
        return set(self.runs)

    def missing(self, have: Callable[[PlannedRun], bool]) -> list[PlannedRun]:
        """The planned runs `have` says are not finished, longest first."""
        return sorted((r for r in self.runs.values() if not have(r)), key=lambda r: -r.cost)

    @property
    def finished_planning(self) -> bool:
        return all(self.complete.values())


def build(profile: str, chapter_plans: dict[str, Callable[[object], Iterator[list[PlannedRun]]]],
          make_chapter: Callable[[str], object]) -> Plan:
    """Run every chapter's plan generator as far as the results at hand allow."""
    runs: dict[str, PlannedRun] = {}
    readers: dict[str, set[str]] = {}
    complete = {}
    for name, chapter_plan in chapter_plans.items():
        ch = make_chapter(name)
        complete[name] = True
        try:
            for stage, planned in enumerate(chapter_plan(ch)):
                for run in planned:
                    run = PlannedRun(run.chapter, run.setting, run.dataset, run.seed, run.config, run.key, stage)
                    runs.setdefault(run.key, run)
                    readers.setdefault(run.key, set()).add(name)
        except NotTrained:
            complete[name] = False
    return Plan(profile, runs, complete, readers)
