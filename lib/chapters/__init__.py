"""One module per chapter, named as its notebook: the analyses, figures and verdict sentences its
notebook calls (a long chapter keeps its figures beside it, in `<chapter>_figures.py`).

`PLANS` maps each chapter that reads runs to its module's `plan` (lib.runs.plan): the runs it
needs, as data. The claims ledger reads the other chapters' tables and needs no run of its own.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping

# {notebook: module}: the chapters that read runs.
MODULES = {
    "00_quickstart": "quickstart",
    "01_beluga_collapse": "beluga_collapse",
    "02_mining": "mining",
    "03_distance_weighted": "distance_weighted",
    "04_divide_and_conquer": "divide_and_conquer",
    "05_reidentification": "reidentification",
    "06_oneshot_record": "oneshot_record",
}


class _Plans(Mapping):
    """{notebook: its module's `plan`}, importing a chapter's module only when its plan is asked
    for: a notebook imports its own chapter, not all seven (about a second of every render)."""

    def __getitem__(self, chapter: str) -> Callable:
        return importlib.import_module(f"lib.chapters.{MODULES[chapter]}").plan

    def __iter__(self) -> Iterator[str]:
        return iter(MODULES)

    def __len__(self) -> int:
        return len(MODULES)


PLANS: Mapping[str, Callable] = _Plans()
