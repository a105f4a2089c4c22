"""Train the plan's missing runs as Ray tasks, longest first, and bring their results back.

On a laptop Ray starts embedded (`ray.init()` with `workers x threads` CPUs): N tasks of
`nproc / N` threads each, because on a small CPU two one-thread runs side by side train 1.2-1.5x
faster than one run with two threads (bench/bench_lanes.py). On a GPU machine each task also asks
for a fraction of a GPU, so several runs share the card. On a cluster, `address` joins it; every
node then needs this checkout and the data at the same paths.

Each task trains one run through `lib.train.run` (which keeps the run cache, its lock and resume
logic) and returns the run's store row, so results come back even from another machine; the
caller merges them into the results store.

Where Ray cannot be installed, `executor="processes"` runs the same tasks in the standard library's
`concurrent.futures.ProcessPoolExecutor`: Ray's wheel is 79 MB and a bare GPU machine is lent with
at most 64 MiB of carried files (scripts/gpu_plan.sh), so there the plan trains without Ray.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from lib.runs.plan import PlannedRun


@dataclass(frozen=True)
class Resources:
    workers: int  # runs trained at once
    threads: int  # torch threads per run
    gpus_per_run: float = 0.0  # a fraction of a GPU per run (0: the CPU)

    @classmethod
    def for_this_machine(cls, workers: int | None = None, gpus_per_run: float | None = None) -> "Resources":
        import torch

        cores = os.cpu_count() or 1
        gpus = torch.cuda.device_count()
        if gpus_per_run is None:
            gpus_per_run = 0.0 if not gpus else min(1.0, gpus / (workers or 8))
        if workers is None:  # one-thread runs side by side on a small CPU, two-thread ones on a larger
            workers = int(gpus / gpus_per_run) if gpus_per_run else (cores if cores <= 2 else cores // 2)
        return cls(workers, max(1, cores // workers), gpus_per_run)


def _train_task(config: dict, threads: int) -> dict:
    """One planned run, in a Ray worker: its store row, or a row saying it diverged."""
    import torch

    from lib import train
    from lib.config import RunConfig
    from lib.runs.store import row_from_run_dir

    torch.set_num_threads(threads)
    cfg = RunConfig.validate_dict(config)
    start = time.time()
    try:
        result = train.run(cfg, progress=False)
    except train.TrainingDiverged as exc:  # an outcome to report: its row says so
        run_dir = train.run_dir_for(cfg)
        return {"row": row_from_run_dir(run_dir.path), "diverged": str(exc), "key": run_dir.key,
                "seconds": time.time() - start}
    return {"row": row_from_run_dir(result.path), "key": result.key, "seconds": time.time() - start}


EXECUTORS = ("ray", "processes")


def train_runs(runs: list[PlannedRun], resources: Resources, address: str | None = None,
               report: Callable[[str], None] = print, on_row: Callable[[dict], None] | None = None,
               executor: str = "ray") -> list[dict]:
    """Train `runs` (longest first) as Ray tasks (or, with executor "processes", in a process
    pool); returns what each task returned. `on_row` gets each finished run's store row as it
    arrives, so a long batch keeps what it has trained."""
    if not runs:
        return []
    ordered = sorted(runs, key=lambda r: -r.cost)
    if executor == "processes":
        return _in_processes(ordered, resources, report, on_row)
    import ray

    if not ray.is_initialized():
        if address:
            ray.init(address=address, logging_level="ERROR", log_to_driver=False)
        else:
            gpus = max(1, round(resources.workers * resources.gpus_per_run)) if resources.gpus_per_run else 0
            ray.init(num_cpus=resources.workers * resources.threads, num_gpus=gpus, include_dashboard=False,
                     logging_level="ERROR", log_to_driver=False,
                     runtime_env={"env_vars": {k: v for k, v in os.environ.items()
                                               if k.startswith("METRIC_") or k == "PYTHONPATH"}})
    task = ray.remote(_train_task).options(num_cpus=resources.threads, num_gpus=resources.gpus_per_run,
                                           max_retries=0)
    pending = {task.remote(run.config.to_dict(), resources.threads): run for run in ordered}
    done: list[dict] = []
    start = time.time()
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        run = pending.pop(ready[0])
        try:
            outcome = ray.get(ready[0])
        except Exception as exc:  # a bad run is reported and the others go on
            outcome = _failure(run, exc)
        _arrived(outcome, run, done, len(pending), start, report, on_row)
    return done


def _in_processes(ordered: list[PlannedRun], resources: Resources, report, on_row) -> list[dict]:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    done: list[dict] = []
    start = time.time()
    # spawn: CUDA cannot be used in a forked child; each worker trains runs one after another
    with ProcessPoolExecutor(resources.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending = {pool.submit(_train_task, run.config.to_dict(), resources.threads): run for run in ordered}
        while pending:
            ready, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for future in ready:
                run = pending.pop(future)
                try:
                    outcome = future.result()
                except Exception as exc:
                    outcome = _failure(run, exc)
                _arrived(outcome, run, done, len(pending), start, report, on_row)
    return done


def _failure(run: PlannedRun, exc: Exception) -> dict:
    """A run whose task raised: reported, and the others go on."""
    return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[-1] if str(exc) else ''}", "key": run.key}


def _arrived(outcome: dict, run: PlannedRun, done: list, left: int, start: float, report, on_row) -> None:
    done.append(outcome)
    if on_row is not None and "row" in outcome:
        on_row(outcome["row"])
    what = "diverged" if "diverged" in outcome else "trained" if "row" in outcome else "FAILED"
    report(f"[{len(done)}/{len(done) + left}] {what} {run.chapter} '{run.setting}' on {run.dataset}, "
           f"seed {run.seed} ({run.key}) in {outcome.get('seconds', 0):.0f} s; {time.time() - start:.0f} s so far"
           + (f": {outcome['error']}" if "error" in outcome else ""))
    sys.stdout.flush()
