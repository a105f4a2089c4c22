"""Minutes of compute each chapter of a profile spent, summed from its per-seed tables.

    python bench/chapter_minutes.py --profile full

Reads figures/<profile>/<chapter>-runs.csv (what the chapters recorded: every run's training and
final scoring seconds, and its cache key). A run two chapters share (chapter 5 reads chapters 1-4,
chapter 4's one learner on belugas is chapter 3's run) is counted once, for the first chapter in
notebook order that records it: that is the chapter whose cold run trains it. The seconds are each
run's own, measured with whatever thread count its lane had; notebook overheads (kernel start,
figures, t-SNE, chapter 3's gradient analysis, chapter 6's test-time views) are not in them.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from lib.config import CHAPTER_NAMES, REPO_ROOT


def chapter_minutes(profile: str) -> pd.DataFrame:
    seen: set[str] = set()
    rows = []
    for chapter in CHAPTER_NAMES:
        path = REPO_ROOT / "figures" / profile / f"{chapter}-runs.csv"
        if not path.exists():
            continue
        runs = pd.read_csv(path).drop_duplicates("key")
        own = runs[~runs["key"].isin(seen)]
        seen |= set(runs["key"])
        seconds = own.reindex(columns=["train_seconds", "eval_seconds"]).fillna(0).sum()
        rows.append({"chapter": chapter, "runs recorded": len(runs), "runs it trains": len(own),
                     "training min": seconds["train_seconds"] / 60, "scoring min": seconds["eval_seconds"] / 60})
    table = pd.DataFrame(rows).set_index("chapter")
    table.loc["total"] = table.sum()
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="full")
    args = parser.parse_args()
    table = chapter_minutes(args.profile)
    print(f"profile {args.profile}: compute per chapter, from figures/{args.profile}/*-runs.csv")
    print(table.round(1).to_string())


if __name__ == "__main__":
    main()
