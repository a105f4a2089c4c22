"""One module per chapter, named as its notebook: the analyses, figures and verdict sentences its
notebook calls (a long chapter keeps its figures beside it, in `<chapter>_figures.py`).

`PLANS` maps each chapter that reads runs to its module's `plan` (lib.runs.plan): the runs it
needs, as data. The claims ledger reads the other chapters' tables and needs no run of its own.
"""
from __future__ import annotations

from lib.chapters import (beluga_collapse, distance_weighted, divide_and_conquer, mining, oneshot_record, quickstart,
                          reidentification)

PLANS = {
    "00_quickstart": quickstart.plan,
    "01_beluga_collapse": beluga_collapse.plan,
    "02_mining": mining.plan,
    "03_distance_weighted": distance_weighted.plan,
    "04_divide_and_conquer": divide_and_conquer.plan,
    "05_reidentification": reidentification.plan,
    "06_oneshot_record": oneshot_record.plan,
}
