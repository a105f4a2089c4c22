"""Where one run's time goes: cProfile of a chapter's run, grouped by the study's own steps.

    python bench/profile_run.py --profile full --chapter 02_mining --dataset omniglot --setting strategies semi-hard
    python bench/profile_run.py --profile quick --chapter 01_beluga_collapse --setting blog

Trains in a temporary cache (never the study's), so the run is always measured cold."""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
import time

# (label, file suffix, function): cumulative seconds of these calls; nested ones are shown indented.
STEPS = [
    ("data: load and decode", "lib/splits.py", "load_splits"),
    ("training epochs", "lib/trainer.py", "train_epoch"),
    ("  forward + backward (autograd)", "torch/_tensor.py", "backward"),
    ("  optimizer step", "torch/optim/optimizer.py", "wrapper"),
    ("  miner", "pytorch_metric_learning/miners/base_miner.py", "forward"),
    ("  diagnostics", "lib/trainer.py", "_diagnose"),
    ("scoring (every validation and the final test)", "lib/scoring.py", "score"),
    ("  embedding held-out images", "lib/trainer.py", "embed"),
    ("  retrieval metrics (faiss k-NN)", "lib/evaluate/metrics.py", "retrieval_metrics"),
    ("    NMI (faiss k-means)", "lib/evaluate/metrics.py", "_nmi"),
    ("  validation loss", "lib/scoring.py", "validation_loss"),
    ("  Lake's one-shot runs", "lib/scoring.py", "oneshot_accuracy"),
    ("checkpoints and results", "lib/cache.py", "save_torch"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--chapter", default="02_mining")
    parser.add_argument("--dataset", default=None)
    parser.add_argument("--setting", nargs="*", default=[], help="keys into the chapter's settings, e.g. strategies hard")
    parser.add_argument("--top", type=int, default=0, help="also list the N functions with the most own time")
    args = parser.parse_args()
    os.environ["METRIC_RUNS"] = tempfile.mkdtemp(prefix="profile-run-")
    from lib import train
    from lib.study import Chapter

    ch = Chapter(args.chapter, args.profile)
    layer = ch.settings
    for key in args.setting:
        layer = layer[key]
    cfg = ch.config(args.dataset, layer if args.setting else {})
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.runcall(train.run, cfg, progress=False)
    wall = time.perf_counter() - start
    stats = pstats.Stats(profiler).stats
    print(f"{args.profile} {args.chapter} {cfg.data.name} {' / '.join(args.setting) or '(chapter run)'}: "
          f"{wall:.1f} s wall, {cfg.train.epochs} epochs, backbone {cfg.model.backbone}")
    for label, suffix, function in STEPS:
        seconds = sum(v[3] for (file, _, fn), v in stats.items() if fn == function and file.endswith(suffix))
        print(f"  {label:48s} {seconds:7.1f} s  {100 * seconds / wall:5.1f} %")
    if args.top:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
