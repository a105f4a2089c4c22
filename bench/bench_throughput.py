"""Paper-scale training throughput: ResNet-50 at 224 px through the study's own Trainer.

    python bench/bench_throughput.py [--steps 50] [--batch-size 70] [--image-size 224]
                                     [--workers 8] [--device auto] [--compile] [--synthetic-only]

Both measurements run `Trainer.train_epoch` of the paper_wu profile (margin loss +
distance-weighted miner, bf16 autocast and channels_last on CUDA): host-to-device copy, batch
augmentation, forward and backward, miner, loss, diagnostics and optimiser step.

(a) synthetic: random uint8 images held in memory, so nothing is decoded: the ceiling the
    GPU side allows.
(b) real JPEG pipeline: beluga photos from the shared zip, written once to a folder with a
    labels.csv and read through lib.data's `csv` data set, i.e. decoded from files by
    DataLoader workers into pinned memory, exactly as CUB, Cars196 and SOP are read. The
    zip's photos are at most 256 px long; by default they are re-encoded at CUB's typical
    area (about 500 x 375 px, --photo-pixels) so that decoding costs what CUB's would.

Prints images/second, milliseconds per step and, on CUDA, the peak GPU memory; then compares
(b) with the goal: at least 1,500 img/s on one H100 with the real pipeline.
"""
from __future__ import annotations

import argparse
import io
import math
import os
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from lib import data as data_lib
from lib import trainer as trainer_lib
from lib.splits import Splits
from lib.trainer import Trainer
from lib.config import ConfigError, load_profile, parse_assignment

GOAL_IMAGES_PER_SECOND = 1500
CUB_PIXELS = 500 * 375


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=50, help="timed training steps per measurement")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (cuDNN, allocator, compile)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the profile's (70)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers decoding JPEGs, for (b)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (train.compile)")
    parser.add_argument("--synthetic-only", action="store_true", help="skip (b), the JPEG pipeline")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (train.threads)")
    parser.add_argument("--images", type=int, default=2000, help="beluga photos written for (b)")
    parser.add_argument("--photo-pixels", type=int, default=CUB_PIXELS,
                        help="re-encode each photo at about this many pixels (0: the zip's files as they are)")
    parser.add_argument("--profile", default="paper_wu")
    parser.add_argument("--dataset", default="cub200", help="whose overlay of the profile to use")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    try:
        cfg = bench_config(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results = {}
    try:
        results["synthetic"] = measure(synthetic_trainer(cfg, args), args)
        if not args.synthetic_only:
            folder = beluga_photos(args.images, args.photo_pixels)
            trainer = jpeg_trainer(cfg, folder)
            results["jpeg"] = measure(trainer, args)
            results["jpeg"]["decode"] = decode_rate(trainer)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report(cfg, args, results)
    return 0


# --------------------------------------------------------------------------- configuration


def bench_config(args):
    cfg = load_profile(args.profile).run_config(args.dataset)
    batch = args.batch_size or cfg.train.batch_size
    m = cfg.sampler.m
    if batch % m:  # keep m-per-class batches: the largest m' <= m dividing the batch
        m = max(d for d in range(1, m + 1) if batch % d == 0)
        print(f"note: batch {batch} is not a multiple of sampler.m={cfg.sampler.m}; using m={m}")
    cfg = cfg.with_overrides({
        "model.pretrained": False,  # throughput does not depend on the weights' values
        "data.image_size": args.image_size,
        "train.batch_size": batch, "sampler.m": m, "train.steps_per_epoch": args.steps,
        "train.device": args.device, "train.compile": args.compile, "train.num_workers": args.workers,
        "train.threads": args.threads,
    })
    return cfg.with_overrides(dict(parse_assignment(a) for a in args.overrides))


def _with_classes(cfg, n_classes: int):
    """Class-specific MarginLoss beta (paper_wu) needs at least as many betas as classes."""
    if "num_classes" in cfg.loss.kwargs:
        cfg = cfg.with_overrides({"loss.kwargs": {**cfg.loss.kwargs, "num_classes": n_classes}})
    return cfg


# --------------------------------------------------------------------------- the two inputs


def synthetic_trainer(cfg, args) -> Trainer:
    """(a): random uint8 images in memory, at least 4 batches' worth, m per class."""
    m, size = cfg.sampler.m, args.image_size
    n = max(4 * cfg.train.batch_size, min(args.steps * cfg.train.batch_size, 1024))
    n_classes = max(2, n // (2 * m))
    labels = np.arange(n) % n_classes
    images = np.random.default_rng(0).integers(0, 256, (n, 3, size, size), dtype=np.uint8)
    split = data_lib.Split(labels, pd.DataFrame({"label": labels}), images, None, (size, size), channels=3)
    return Trainer(_with_classes(cfg, n_classes), splits=Splits(split, split, split, 3), progress=False)


def beluga_photos(count: int, pixels: int) -> Path:
    """`count` beluga photos (whole whales, at least 2 photos each) as JPEG files with a
    labels.csv (path,label), written once under lib.data.cache_dir() and reused."""
    folder = data_lib.cache_dir() / f"bench_beluga-{count}-{pixels}"
    if (folder / "labels.csv").exists():
        return folder
    zip_path = data_lib.data_root() / "beluga" / "beluga_whaledo_max256.zip"
    if not zip_path.exists():
        raise data_lib.DataNotFoundError(f"{zip_path} not found; set METRIC_DATA (see /work/shared/README.md)")
    start = time.perf_counter()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".part"))
    try:
        with zipfile.ZipFile(zip_path) as z:
            meta = pd.read_csv(z.open("metadata.csv"), dtype=str)
            sizes = meta.groupby("whale_id").size()
            whales = np.random.default_rng(0).permutation(sizes[sizes >= 2].index.to_numpy())
            keep = whales[: np.searchsorted(np.cumsum(sizes[whales].to_numpy()), count) + 1]
            rows = meta[meta["whale_id"].isin(keep)].head(count)
            for rel in rows["path"]:
                blob = z.read(rel)
                out = tmp / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                if pixels:
                    with Image.open(io.BytesIO(blob)) as img:
                        scale = math.sqrt(pixels / (img.width * img.height))
                        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
                        img.convert("RGB").resize(size, Image.Resampling.BICUBIC).save(out, quality=90)
                else:
                    out.write_bytes(blob)
        rows[["path", "whale_id"]].rename(columns={"whale_id": "label"}).to_csv(tmp / "labels.csv", index=False)
        os.rename(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"wrote {len(rows)} photos of {rows['whale_id'].nunique()} whales to {folder} "
          f"in {time.perf_counter() - start:.1f} s (once)")
    return folder


def jpeg_trainer(cfg, folder: Path) -> Trainer:
    """(b): the `csv` data set over the photos: file paths, decoded by DataLoader workers."""
    n_classes = pd.read_csv(folder / "labels.csv", dtype=str)["label"].nunique()
    cfg = _with_classes(cfg.with_overrides({
        "data.name": "csv", "data.root": str(folder), "data.max_train_images": None,
        "data.options": {"path": "labels.csv", "test_fraction": 0.1},
    }), n_classes)
    return Trainer(cfg, progress=False)


# --------------------------------------------------------------------------- measuring


def measure(trainer: Trainer, args) -> dict:
    """A warm-up epoch, then one timed epoch of --steps through Trainer.train_epoch."""
    first_batch = {}
    original = trainer_lib.iterate_batches

    def timed(*a, **kw):  # when the first batch arrives: worker start-up + its decoding
        for i, item in enumerate(original(*a, **kw)):
            if i == 0:
                first_batch["t"] = time.perf_counter()
            yield item

    trainer_lib.iterate_batches = timed
    try:
        trainer.steps = max(1, args.warmup)
        trainer.train_epoch(0)
        trainer.steps = args.steps
        if trainer.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        record = trainer.train_epoch(1)
        if trainer.cuda:
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
    finally:
        trainer_lib.iterate_batches = original
    images = args.steps * trainer.cfg.train.batch_size
    startup = first_batch["t"] - start
    return {
        "images_per_second": images / elapsed,
        "ms_per_step": 1000 * elapsed / args.steps,
        "startup_seconds": startup,
        "after_first_batch": images / max(elapsed - startup, 1e-9),
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if trainer.cuda else None,
        "loss": record["loss"],
        "train_images": len(trainer.splits.train),
        "train_classes": trainer.splits.train.num_classes,
    }


def decode_rate(trainer: Trainer, batches: int = 2) -> float:
    """Images/second one process decodes (read + resize + crop), for sizing --workers."""
    split, bs = trainer.splits.train, trainer.cfg.train.batch_size
    idx = np.arange(min(len(split), batches * bs))
    start = time.perf_counter()
    split.read(idx)
    return len(idx) / (time.perf_counter() - start)


def report(cfg, args, results: dict) -> None:
    device = "cpu"
    if torch.cuda.is_available() and args.device != "cpu":
        device = f"cuda ({torch.cuda.get_device_name()})"
    cuda = device != "cpu"
    amp = "bf16 autocast" if cuda and cfg.train.amp else "fp32"
    layout = ", channels_last" if cuda and cfg.train.channels_last else ""
    print(f"device {device}, torch threads {torch.get_num_threads()}, {cfg.model.backbone} "
          f"(pretrained=False), {amp}{layout}{', torch.compile' if args.compile else ''}")
    print(f"batch {cfg.train.batch_size} (m={cfg.sampler.m}), image {args.image_size} px, "
          f"{cfg.loss.name} + {cfg.miner.name}, {args.warmup} warm-up + {args.steps} timed steps")

    def mem(r):
        return f", peak GPU memory {r['peak_gib']:.2f} GiB" if r["peak_gib"] is not None else ""

    s = results["synthetic"]
    print(f"(a) synthetic, in-memory uint8     : {s['images_per_second']:8.1f} img/s  "
          f"{s['ms_per_step']:8.1f} ms/step{mem(s)}")
    if "jpeg" in results:
        j = results["jpeg"]
        photos = f"~{args.photo_pixels / 1e3:.0f} kpx" if args.photo_pixels else "as in the zip (<= 256 px)"
        loader = f"{args.workers} worker{'s' if args.workers != 1 else ''}{', pinned' if cuda else ''}"
        print(f"(b) JPEG files, {loader}: {j['images_per_second']:8.1f} img/s  "
              f"{j['ms_per_step']:8.1f} ms/step{mem(j)}")
        print(f"    {j['train_images']} beluga photos ({photos}) of {j['train_classes']} whales; "
              f"first batch after {j['startup_seconds']:.2f} s (worker start-up), "
              f"{j['after_first_batch']:.1f} img/s after it; one process decodes {j['decode']:.1f} img/s")
        rate = j["images_per_second"]
        verdict = "met" if rate >= GOAL_IMAGES_PER_SECOND else "not met"
        on_h100 = "H100" in device
        where = "" if on_h100 else " (not measured on an H100: this run says nothing about the goal)"
        print(f"goal: >= {GOAL_IMAGES_PER_SECOND:,} img/s on one H100 with the real pipeline at 224 px: "
              f"{rate:.0f} img/s here -> {verdict if on_h100 and args.image_size == 224 else 'n/a'}{where}")
    else:
        print(f"goal: >= {GOAL_IMAGES_PER_SECOND:,} img/s on one H100 with the real pipeline: "
              "not measured (--synthetic-only)")


if __name__ == "__main__":
    sys.exit(main())
