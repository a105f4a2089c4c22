"""Did a change move the study's numbers? Compare each chapter's results tables (mean and sd over
seeds) in figures/<profile>/ with the same tables at a git revision.

    python bench/compare_tables.py --rev HEAD~1 --profile full

For every (table, row, metric) present in both it prints the difference of the means and its
size in standard errors, z = (new - old) / sqrt(sd_new^2/n + sd_old^2/n): two independent sets of
seeded runs of the same setting differ by |z| > 2 about 5 % of the time by chance alone (fewer
with 3 seeds, whose t tails are heavier). It ends with the share of |z| > 2 and the largest |z|."""
from __future__ import annotations

import argparse
import io
import math
import subprocess
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
INDEX = {"02_mining-results": ["dataset", "setting"], "03_distance_weighted-results": ["dataset", "setting"],
         "04_divide_and_conquer-results": ["dataset", "setting"]}


def _read(text: str, stem: str) -> pd.DataFrame:
    table = pd.read_csv(io.StringIO(text))
    keys = INDEX.get(stem) or [table.columns[0]]
    return table.set_index(keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", default="HEAD")
    parser.add_argument("--profile", default="full")
    args = parser.parse_args()
    rows = []
    for path in sorted((REPO / "figures" / args.profile).glob("0[0-5]*.csv")):
        rel = path.relative_to(REPO).as_posix()
        old_text = subprocess.run(["git", "show", f"{args.rev}:{rel}"], cwd=REPO, capture_output=True, text=True)
        if old_text.returncode:
            continue
        new, old = _read(path.read_text(), path.stem), _read(old_text.stdout, path.stem)
        if not (new.index.is_unique and old.index.is_unique):  # a per-seed table: its summaries are compared
            continue
        n = new.get("seeds", pd.Series(3, index=new.index))
        for metric in [c[:-5] for c in new.columns if c.endswith(" mean") and f"{c[:-5]} sd" in new.columns]:
            if f"{metric} mean" not in old.columns:
                continue
            for row in new.index.intersection(old.index):
                a, b = new.loc[row, f"{metric} mean"], old.loc[row, f"{metric} mean"]
                sa, sb, k = new.loc[row, f"{metric} sd"], old.loc[row, f"{metric} sd"], float(n.loc[row])
                se = math.sqrt((sa**2 + sb**2) / k) if k > 1 else math.nan
                z = (a - b) / se if se and math.isfinite(se) and se > 0 else math.nan
                rows.append({"table": path.stem, "row": row if isinstance(row, str) else " / ".join(row),
                             "metric": metric, "old": b, "new": a, "diff": a - b, "z": z})
    table = pd.DataFrame(rows)
    if table.empty:
        print(f"no tables of profile {args.profile} to compare with {args.rev}")
        return
    with pd.option_context("display.max_rows", None, "display.width", 200, "display.float_format", "{:.4f}".format):
        print(table.to_string(index=False))
    finite = table.z.dropna()
    print(f"\n{len(finite)} comparisons with a spread; |z| > 2 in {(finite.abs() > 2).sum()} "
          f"({100 * (finite.abs() > 2).mean():.1f} %); largest |z| {finite.abs().max():.2f} "
          f"({table.loc[finite.abs().idxmax(), ['table', 'row', 'metric']].tolist()})")


if __name__ == "__main__":
    main()
