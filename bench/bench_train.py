"""Training throughput: the whole trainer step vs the bare backbone on the same batches.

    python bench/bench_train.py [--profile quick] [--dataset omniglot] [--steps 60]

The trainer's step includes sampling, batch gathering, augmentation, the miner, the
loss, the diagnostics, gradient-norm clipping and the optimiser step. The reference is
the embedding network's forward + backward alone on identical, pre-made batches.
Goal: a ratio of at least 0.90.
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from lib.config import load_profile
from lib.batching import make_batches
from lib.trainer import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--dataset", default="omniglot")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    from lib.config import parse_assignment
    cfg = load_profile(args.profile).run_config(args.dataset, train__steps_per_epoch=args.steps)
    cfg = cfg.with_overrides(dict(parse_assignment(a) for a in args.overrides))
    trainer = Trainer(cfg, progress=False)
    np.random.seed(0)
    batches = make_batches(cfg, trainer.splits.train.labels, args.steps)
    inputs = [trainer.prepare(trainer.splits.train.read(b), None if trainer.splits.train.extra_channel is None
                               else torch.from_numpy(trainer.splits.train.extra_channel[b]), augment=False)
              for b in batches]
    model = trainer.model

    def bare() -> float:
        model.train()
        start = time.perf_counter()
        for x in inputs:
            with trainer.autocast():
                out = model(x)
            out.float().square().mean().backward()
            model.zero_grad(set_to_none=True)
        if trainer.cuda:
            torch.cuda.synchronize()
        return len(inputs) * cfg.train.batch_size / (time.perf_counter() - start)

    def full(epoch: int) -> float:
        start = time.perf_counter()
        trainer.train_epoch(epoch)
        if trainer.cuda:
            torch.cuda.synchronize()
        return args.steps * cfg.train.batch_size / (time.perf_counter() - start)

    bare()  # warm-up: allocator, kernels, thread pools
    full(0)
    bare_rates, full_rates = [], []
    for r in range(args.repeats):  # interleaved, so drift in machine load hits both alike
        bare_rates.append(bare())
        full_rates.append(full(r + 1))
    b, f = float(np.median(bare_rates)), float(np.median(full_rates))
    parts = breakdown(trainer, batches, inputs)
    print(f"device {trainer.device}, threads {torch.get_num_threads()}, backbone {cfg.model.backbone}, "
          f"batch {cfg.train.batch_size}, image {tuple(inputs[0].shape[1:])}, "
          f"loss {cfg.loss.name} + {cfg.miner.name}, {args.steps} steps x {args.repeats} repeats (median)")
    print(f"bare forward+backward : {b:8.0f} img/s")
    print(f"full trainer step     : {f:8.0f} img/s")
    print(f"ratio                 : {f / b:8.3f}   (goal >= 0.90)")
    step_ms = 1000 * cfg.train.batch_size / b
    print(f"per step, ms          : forward+backward {step_ms:.2f}; " +
          "; ".join(f"{k} {v:.2f}" for k, v in parts.items()))


def breakdown(trainer: Trainer, batches, inputs, repeats: int = 20) -> dict[str, float]:
    """Milliseconds per step of the trainer's work beyond the bare forward+backward."""
    split = trainer.splits.train
    idx = batches[0]
    extra = None if split.extra_channel is None else torch.from_numpy(split.extra_channel[idx])
    labels = torch.from_numpy(split.labels[idx]).to(trainer.device)
    emb = trainer.model(inputs[0]).float().detach()
    tuples = trainer.miner(emb, labels) if trainer.miner is not None else None
    emb.requires_grad_(True)
    trainer.model(inputs[0]).float().sum().backward()

    def ms(fn) -> float:
        fn()
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        return 1000 * (time.perf_counter() - start) / repeats

    return {
        "read+augment": ms(lambda: trainer.prepare(split.read(idx), extra, augment=True)),
        "miner": ms(lambda: trainer.miner(emb, labels)) if trainer.miner is not None else 0.0,
        "loss fwd+bwd": ms(lambda: trainer.loss_fn(emb, labels, tuples).backward()),
        "optimizer step": ms(trainer.optimizer.step),
        "grad-norm": ms(lambda: torch.nn.utils.clip_grad_norm_(trainer.model.parameters(), math.inf, foreach=True)),
    }


if __name__ == "__main__":
    main()
