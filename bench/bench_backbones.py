"""CPU throughput of candidate backbones: EfficientNet-Lite0 by image size against the study's own.

    python bench/bench_backbones.py [--sizes 64 96 128 160 224] [--batch-size 32] [--steps 5]
                                    [--repeats 3] [--threads 2] [--frozen-stages 3 4 5]
                                    [--beluga-sizes 128x64 192x96]

For each backbone and input size: images/second for a training step's forward + backward
(train mode; the loss is the mean squared pooled feature, no optimiser) and for an evaluation
forward (eval mode, torch.inference_mode), each the median of --repeats timings of --steps
batches after one untimed warm-up batch. Everything in channels_last, as the study runs on CPU.
Weights are random (pretrained or not costs the same). The study's current backbones are timed
at their own inputs: timm's test_resnet on 64x32 beluga crops with 4 channels (RGB + viewpoint
mask), the Conv-4 'convnet' on 28-px one-channel Omniglot characters.

With --frozen-stages, EfficientNet-Lite0 on 4-channel beluga crops (--beluga-sizes, height x
width) is also timed with its stem and first N stages frozen (model.frozen_stages): "train" is
then a training step of the stages after them on the trunk's cached output, and "trunk" the
one-time forward of the frozen stages per image and view.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from lib.models import make_backbone, split_backbone


def images_per_second(model: torch.nn.Module, x: torch.Tensor, steps: int, repeats: int,
                      train: bool) -> float:
    def step() -> None:
        if train:
            model.zero_grad(set_to_none=True)
            model(x).float().pow(2).mean().backward()
        else:
            with torch.inference_mode():
                model(x)

    model.train(train)
    step()  # warm-up: allocator, oneDNN kernel choice
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(steps * x.shape[0] / (time.perf_counter() - start))
    return statistics.median(rates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 128, 160, 224],
                        help="square image sizes for efficientnet_lite0")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="timed batches per repeat")
    parser.add_argument("--repeats", type=int, default=3, help="timings; the median is reported")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frozen-stages", type=int, nargs="*", default=[], help="frozen-trunk cases to time")
    parser.add_argument("--beluga-sizes", nargs="+", default=["64x32", "128x64", "192x96"],
                        help="HEIGHTxWIDTH of the 4-channel beluga crops for the frozen-trunk cases")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    cases = [("efficientnet_lite0", 3, (size, size)) for size in args.sizes]
    cases += [("test_resnet", 4, (64, 32)), ("convnet", 1, (28, 28))]
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch_size}, "
          f"{args.steps} steps x median of {args.repeats}, channels_last")
    header = f"{'backbone':20s} {'input':>11s} {'params':>7s} {'train img/s':>12s} {'eval img/s':>11s}"
    print(header)
    print("-" * len(header))
    for name, chans, (height, width) in cases:
        model = make_backbone(name, chans, pretrained=False).to(memory_format=torch.channels_last)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        x = torch.rand(args.batch_size, chans, height, width).contiguous(memory_format=torch.channels_last)
        train = images_per_second(model, x, args.steps, args.repeats, train=True)
        evaluate = images_per_second(model, x, args.steps, args.repeats, train=False)
        print(f"{name:20s} {f'{chans}x{height}x{width}':>11s} {params:6.2f}M {train:12.1f} {evaluate:11.1f}",
              flush=True)
    if args.frozen_stages:
        print()
        header = f"{'efficientnet_lite0':20s} {'input':>11s} {'frozen':>6s} {'trained':>8s} {'train img/s':>12s} " \
                 f"{'trunk img/s':>12s} {'trunk out':>11s}"
        print(header)
        print("-" * len(header))
    for size in args.beluga_sizes if args.frozen_stages else []:
        height, width = (int(v) for v in size.split("x"))
        x = torch.rand(args.batch_size, 4, height, width).contiguous(memory_format=torch.channels_last)
        for stages in [0, *args.frozen_stages]:
            rest = make_backbone("efficientnet_lite0", 4, pretrained=False).to(memory_format=torch.channels_last)
            inputs, trunk_rate, shape = x, float("nan"), "-"
            if stages:
                trunk, rest = split_backbone(rest, stages, pretrained=True)
                with torch.no_grad():
                    inputs = trunk(x).contiguous(memory_format=torch.channels_last)
                trunk_rate = images_per_second(trunk, x, args.steps, args.repeats, train=False)
                shape = "x".join(map(str, inputs.shape[1:]))
            trained = sum(p.numel() for p in rest.parameters()) / 1e6
            train = images_per_second(rest, inputs, args.steps, args.repeats, train=True)
            print(f"{'':20s} {f'4x{height}x{width}':>11s} {stages:6d} {trained:7.2f}M {train:12.1f} "
                  f"{trunk_rate:12.1f} {shape:>11s}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
