"""How much of each chapter notebook is code, and how long its longest code cell is.

    python scripts/notebook_shape.py            # prints the table; exit 1 if a notebook misses a target

A chapter reads as a chapter when its prose carries it and its cells are short calls into lib/:
at most 35 % of a notebook's source characters are code and no code cell is longer than 15 lines
(the papermill `parameters` cell included). Outputs are not counted.

Exempt from the code share, by name (CODE_SHARE_EXEMPT), only: the mechanics chapter, whose subject is
the code itself (each loss and miner written out beside its formula). Its cells keep the line cap.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

MAX_CODE_SHARE = 0.35
MAX_CELL_LINES = 15
CODE_SHARE_EXEMPT = {"00b_mechanics.ipynb"}
NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def shape(path: Path) -> dict:
    cells = json.loads(path.read_text())["cells"]
    code = [("".join(c["source"])).strip() for c in cells if c["cell_type"] == "code"]
    prose = [("".join(c["source"])).strip() for c in cells if c["cell_type"] != "code"]
    code_chars, prose_chars = sum(map(len, code)), sum(map(len, prose))
    return {"notebook": path.name, "code_share": code_chars / max(1, code_chars + prose_chars),
            "longest_cell": max((len(c.splitlines()) for c in code), default=0), "code_cells": len(code)}


def main() -> int:
    rows = [shape(p) for p in sorted(NOTEBOOKS.glob("*.ipynb"))]
    print(f"{'notebook':36s} {'code share':>10s} {'longest cell':>13s} {'code cells':>10s}")
    failed = []
    for r in rows:
        exempt = r["notebook"] in CODE_SHARE_EXEMPT
        ok = (exempt or r["code_share"] <= MAX_CODE_SHARE) and r["longest_cell"] <= MAX_CELL_LINES
        print(f"{r['notebook']:36s} {r['code_share']:>9.0%} {r['longest_cell']:>9d} ln {r['code_cells']:>10d}"
              f"  {'OVER' if not ok else 'ok (share exempt)' if exempt else 'ok'}")
        if not ok:
            failed.append(r["notebook"])
    print(f"targets: code share <= {MAX_CODE_SHARE:.0%} (exempt: {', '.join(sorted(CODE_SHARE_EXEMPT))}), "
          f"code cell <= {MAX_CELL_LINES} lines")
    if failed:
        print(f"over target: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
