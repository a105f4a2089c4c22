"""Lanes: two runs side by side with one thread each against one run with every thread.

    python bench/bench_lanes.py [--profile quick] [--dataset beluga] [--steps 40]

Runs bench/bench_train.py (the whole trainer step) once with all $(nproc) threads, then twice at
once with $(nproc)/2 threads each, and prints the images per second of each and their ratio: the
speed-up run_all.sh's two lanes give when every lane trains.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent / "bench_train.py"


def _launch(args: argparse.Namespace, threads: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, str(BENCH), "--profile", args.profile, "--dataset", args.dataset,
           "--steps", str(args.steps), "--repeats", str(args.repeats), *sum((["--set", s] for s in args.overrides), [])]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _rate(proc: subprocess.Popen) -> float:
    out, _ = proc.communicate()
    found = re.search(r"full trainer step\s*:\s*([\d.]+) img/s", out)
    if proc.returncode != 0 or not found:
        raise SystemExit(f"bench_train.py failed:\n{out}")
    return float(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--dataset", default="beluga")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    one = _rate(_launch(args, cores))
    pair = [_launch(args, max(1, cores // 2)) for _ in range(2)]
    two = [_rate(p) for p in pair]
    print(f"{args.profile} {args.dataset} {' '.join(args.overrides)}")
    print(f"one run, {cores} threads           : {one:8.0f} img/s")
    print(f"two runs at once, {max(1, cores // 2)} thread(s) each: {sum(two):8.0f} img/s ({two[0]:.0f} + {two[1]:.0f})")
    print(f"lanes speed-up                    : {sum(two) / one:8.2f}x")


if __name__ == "__main__":
    main()
