"""The study's runs as a plan: list it, train what is missing through Ray, keep the results.

    python -m lib.runs plan  --profile full                 # every planned run, and which are missing
    python -m lib.runs train --profile quick [--workers N] [--gpus-per-run F] [--address ADDR]
    python -m lib.runs store --profile full [--prune]       # the run cache's planned runs into results/full/
    python -m lib.runs merge --profile full rows.jsonl      # rows trained elsewhere (--rows-out) into the store
    python -m lib.runs export --profile full runs.jsonl     # the store's runs as JSON lines, for a machine without pyarrow

`train` plans, trains the missing runs longest first, and plans again (a stage that depends on
earlier results, such as chapter 1's minimal fix, is planned once they exist) until nothing is
missing. What it trains is merged into the profile's results store (results/<profile>/).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

from lib import derived, records, train
from lib.cache import read_json
from lib.chapters import PLANS
from lib.config import ConfigError, load_profile, parse_assignment
from lib.paths import runs_dir
from lib.runs import plan as plan_lib
from lib.runs.schedule import EXECUTORS, Resources, train_runs
from lib.runs.store import Store, StoreError, row_from_run_dir
from lib.study import Chapter


def build_plan(profile: str, overrides: dict | None = None, chapters: list[str] | None = None) -> plan_lib.Plan:
    """The profile's plan as far as the results at hand allow (every chapter of the profile that reads runs)."""
    known = load_profile(profile, overrides).chapters.as_dict()
    plans = {name: p for name, p in PLANS.items() if name in known and (not chapters or name in chapters)}

    def make(name: str) -> Chapter:
        ch = Chapter(name, profile, overrides)
        ch.planning = True  # reading earlier stages records nothing to the chapter's table
        return ch

    return plan_lib.build(profile, plans, make)


def finished(run: plan_lib.PlannedRun, store: Store | None) -> bool:
    """Whether a planned run has an outcome: a result in the run cache or the store (for a profile
    that keeps one), or a divergence."""
    run_dir = train.run_dir_for(run.config)
    if run_dir.load_result() is not None or (store is not None and run.key in store.rows):
        return True
    failed = run_dir.file("failed.json")
    return failed.exists() and read_json(failed).get("key") == run.key


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.runs", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["plan", "train", "store", "merge", "export"])
    parser.add_argument("files", nargs="*", help="merge: the JSON-lines files of rows that `train --rows-out` wrote; "
                                                 "export: the file to write")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a profile override, as the notebooks' `overrides` (repeatable)")
    parser.add_argument("--chapter", action="append", default=[], help="only this chapter's runs (repeatable)")
    parser.add_argument("--workers", type=int, default=None, help="runs trained at once (default: per machine)")
    parser.add_argument("--gpus-per-run", type=float, default=None, help="a GPU's share per run (default: per machine)")
    parser.add_argument("--address", default=None, help="a Ray cluster to join (default: start one here)")
    parser.add_argument("--prune", action="store_true", help="store: drop stored runs the plan no longer has")
    parser.add_argument("--executor", choices=EXECUTORS, default="ray",
                        help="train: Ray tasks, or a standard-library process pool where Ray is not installed")
    parser.add_argument("--rows-out", default=None, metavar="FILE",
                        help="train: append each finished run's row to this JSON-lines file instead of the store "
                             "(a machine without pyarrow; `merge` adds them at home)")
    args = parser.parse_intermixed_args(argv)
    try:
        overrides = dict(parse_assignment(a) for a in args.overrides) or None
        keeps = load_profile(args.profile, overrides).results_store
        store = Store(args.profile) if keeps else None
        if args.command in ("merge", "export") and not keeps:
            raise ConfigError(f"profile '{args.profile}' keeps no results store (results_store: false in its params)")
        if args.command == "plan":
            return _show(build_plan(args.profile, overrides, args.chapter), store)
        if args.command == "store":
            return _store(build_plan(args.profile, overrides, args.chapter), store, args.prune)
        if args.command == "merge":
            return _merge(args.files, store)
        if args.command == "export":
            if len(args.files) != 1:
                raise ConfigError("export writes one file: python -m lib.runs export --profile P FILE")
            print(f"{store.export(Path(args.files[0]))} run(s) written to {args.files[0]}")
            return 0
        return _train(args, overrides, store)
    except (ConfigError, StoreError, plan_lib.NotTrained) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a read-only or full run cache or store
        print(f"error: cannot write {exc.filename or 'the run cache'} ({exc.strerror or exc})", file=sys.stderr)
        return 2


def _show(plan: plan_lib.Plan, store: Store | None) -> int:
    missing = plan.missing(lambda r: finished(r, store))
    by_chapter: dict[str, list] = {}
    for run in plan.runs.values():
        by_chapter.setdefault(run.chapter, []).append(run)
    for chapter, runs in by_chapter.items():
        waiting = sum(r in missing for r in runs)
        print(f"{chapter:24s} {len(runs):4d} runs, {waiting:4d} missing"
              + ("" if plan.complete.get(chapter, True) else "  (later stages wait for these)"))
    kept = "no results store" if store is None else \
        f"stored in {store.path}: {sum(k in store.rows for k in plan.keys)}"
    print(f"{'all':24s} {len(plan.runs):4d} runs, {len(missing):4d} missing; {kept}")
    return 0


def _store(plan: plan_lib.Plan, store: Store | None, prune: bool) -> int:
    """Merge the plan's finished runs of the run cache, and what the chapters derived from them,
    into the store (for a profile that keeps one); then check that every run a chapter's per-seed
    table names is planned."""
    if store is not None:
        # a planned run that is finished but not stored is finished in the run cache (its folder)
        local = [row_from_run_dir(runs_dir() / r.key) for r in plan.runs.values()
                 if r.key not in store.rows and finished(r, store)]
        counts = store.merge(local, derived.entries_for(plan.keys))
        if prune:
            print(f"pruned {store.prune(plan.keys)} run(s) the plan no longer has")
        print(f"results store {store.path}: {counts}")
    outside = unplanned_reads(plan)
    if outside:
        raise StoreError(f"{len(outside)} run(s) a chapter read are not in the plan, e.g. {outside[0]}: "
                         "declare them in the chapter's plan()")
    if store is not None and plan.finished_planning:
        store.check(plan.keys)
    return 0


def unplanned_reads(plan: plan_lib.Plan) -> list[str]:
    """'chapter: setting, seed (key)' for every row of the profile's per-seed tables whose run the
    plan does not have (a chapter that read a run outside its plan)."""
    out = []
    for chapter in plan.complete:
        path = records.table_path(plan.profile, chapter)
        if not path.exists():
            continue
        table = pd.read_csv(path)
        for row in table.itertuples():
            if isinstance(row.key, str) and row.key not in plan.runs:
                out.append(f"{chapter}: {row.setting}, seed {row.seed} ({row.key})")
    return out


def _append(path: str, row: dict) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(row) + "\n")


def _merge(files: list[str], store: Store) -> int:
    """Rows trained on another machine (`train --rows-out`) into the store, each verified; a file
    line that is not a row fails with its file and line number, and nothing is written."""
    rows = []
    for name in files:
        for number, line in enumerate(Path(name).read_text().splitlines(), 1):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise StoreError(f"{name}:{number}: not a JSON row ({exc.msg})") from None
    latest = {row.get("key"): row for row in rows}  # a run trained twice there: its last row
    print(f"results store {store.path}: {store.merge(list(latest.values()))}")
    return 0


def _train(args, overrides: dict | None, store: Store) -> int:
    resources = Resources.for_this_machine(args.workers, args.gpus_per_run)
    print(f"lib.runs: {resources.workers} run(s) at once, {resources.threads} thread(s) each"
          + (f", {resources.gpus_per_run:g} GPU each" if resources.gpus_per_run else ""))
    start, trained, failures = time.time(), 0, []
    while True:
        plan = build_plan(args.profile, overrides, args.chapter)
        missing = plan.missing(lambda r: finished(r, store))
        missing = [r for r in missing if r.key not in {f["key"] for f in failures}]
        if not missing:
            break
        print(f"lib.runs: {len(missing)} of {len(plan.runs)} planned run(s) to train"
              + ("" if plan.finished_planning else " (more are planned once these exist)"))
        keep = (lambda row: _append(args.rows_out, row)) if args.rows_out else \
            (lambda row: store.merge([row])) if store is not None else None
        outcomes = train_runs(missing, resources, args.address, on_row=keep, executor=args.executor)
        failures += [o for o in outcomes if "error" in o]
        trained += sum("row" in o for o in outcomes)
    kept = f"rows in {args.rows_out}" if args.rows_out else "the run cache only" if store is None else \
        f"results store {store.path}: {len(store.rows)} run(s)"
    print(f"lib.runs: {trained} run(s) trained in {time.time() - start:.0f} s; {kept}")
    if failures:
        print(f"lib.runs: {len(failures)} run(s) failed, e.g. {failures[0]['key']}: {failures[0]['error']}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
