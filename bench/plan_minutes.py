"""How much of a profile's plan is trained, what it cost, and what the rest will cost on this CPU.

    PYTHONPATH=. .venv/bin/python bench/plan_minutes.py --profile full

Per chapter: planned runs, runs in the results store (or the run cache), their measured training
minutes (each run's own `train_seconds`, one thread each when trained in two lanes), and the
projected minutes of the missing ones: the mean of stored runs of the same setting and data set,
else of the chapter's. Later stages (chapter 1's minimal fix, chapter 6's road) are counted once
they are planned. Lane-minutes: divide by the number of workers for wall time.
"""
from __future__ import annotations

import argparse
import math
import sys

import pandas as pd

from lib import train
from lib.runs.__main__ import build_plan
from lib.runs.store import Store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="full")
    args = parser.parse_args(argv)
    plan = build_plan(args.profile)
    store = Store(args.profile)
    rows = []
    for run in plan.runs.values():
        stored = store.get(run.key)
        metrics = stored.metrics if stored is not None else (train.run_dir_for(run.config).load_result() or [None])[0]
        seconds = float(metrics.get("train_seconds", math.nan)) if metrics else math.nan
        rows.append({"chapter": run.chapter, "setting": run.setting, "dataset": run.dataset,
                     "trained": metrics is not None, "minutes": seconds / 60,
                     "device": (stored.provenance.get("device", "?") if stored is not None else "run cache")})
    table = pd.DataFrame(rows)
    done = table[table.trained]
    by_setting = done.groupby(["chapter", "dataset", "setting"]).minutes.mean()
    by_chapter = done.groupby("chapter").minutes.mean()

    def projected(row) -> float:
        return by_setting.get((row.chapter, row.dataset, row.setting), by_chapter.get(row.chapter, math.nan))

    table.loc[~table.trained, "minutes"] = table[~table.trained].apply(projected, axis=1)
    summary = table.groupby("chapter").apply(lambda t: pd.Series({
        "planned": len(t), "trained": int(t.trained.sum()),
        "measured minutes": t[t.trained].minutes.sum(),
        # NaN: no run of the chapter is trained yet, so nothing to project from
        "projected minutes to go": t[~t.trained].minutes.sum(min_count=1) if (~t.trained).any() else 0.0,
        "stages complete": plan.complete.get(t.name, True)}), include_groups=False)
    summary.loc["all"] = [summary.planned.sum(), summary.trained.sum(), summary["measured minutes"].sum(),
                          summary["projected minutes to go"].sum(min_count=len(summary)), all(plan.complete.values())]
    print(f"profile {args.profile}: the plan as far as the results at hand allow; devices of the stored runs: "
          f"{', '.join(sorted(done.device.unique()))}")
    print(summary.round(1).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
