"""Run one configuration: return its cached result, or train, score and cache it.

    python -m lib.train params/quick.yaml --dataset omniglot --set optim.lr=1e-4
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import pandas as pd
import torch.distributed as dist

from lib import components, scoring
from lib import data as data_lib
from lib.augment import AUGMENT_PRESETS, BatchAugment, make_augment
from lib.cache import RunDir, provenance
from lib.config import TIMM_BACKBONES, ConfigError, RunConfig, load_profile, parse_assignment
from lib.config.messages import did_you_mean
from lib.config.run import add_run_check
from lib.data.registry import loader_options
from lib.results import RunResult
from lib.splits import Splits
from lib.trainer import Trainer, TrainingDiverged, dist_info

__all__ = ["RunResult", "TrainingDiverged", "check_run", "load_trained", "main", "run", "run_dir_for"]

_checked_runs: set[str] = set()


def check_run(cfg: RunConfig) -> None:
    """What the schema cannot see, checked where a run's config is built rather than when it
    trains: the named components (loss, miner, distance, optimiser, scheduler) are built once
    with their keyword arguments, the backbone is 'convnet' or a timm model, the augmentation a
    preset or BatchAugment's arguments, and the data options the loader's. Raises ConfigError
    naming the dotted key. Each distinct combination is checked once per process.

    Importing this module adds it to every RunConfig's validation (`lib.config.run.add_run_check`),
    so lib.config itself imports no torch, pytorch-metric-learning, timm or lib.data."""
    d = cfg.to_dict()
    fingerprint = json.dumps([d["loss"], d["miner"], d["distance"], d["optim"], d["model"]["backbone"],
                              d["data"]["augment"], d["data"]["name"], sorted(d["data"]["options"])],
                             sort_keys=True, default=str)
    if fingerprint in _checked_runs:
        return
    components.validate(cfg)
    backbone = cfg.model.backbone
    if backbone != "convnet" and backbone not in TIMM_BACKBONES:
        import timm  # 2 s: only for a backbone the profiles do not name

        if not timm.is_model(backbone):
            raise ConfigError(f"model.backbone: unknown backbone {backbone!r}; give convnet or a timm model name "
                              f"(timm.list_models()){did_you_mean(backbone, timm.list_models())}")
    augment = cfg.data.augment
    if isinstance(augment, str) and augment not in AUGMENT_PRESETS:
        raise ConfigError(f"data.augment: unknown preset {augment!r}{did_you_mean(augment, list(AUGMENT_PRESETS))}; "
                          f"presets: {', '.join(AUGMENT_PRESETS)}")
    if isinstance(augment, dict):
        accepted = components._parameters(BatchAugment)
        components._check_arguments("data.augment", "BatchAugment", "BatchAugment", accepted,
                                    {k: v for k, v in augment.items() if k in accepted})
        try:
            make_augment(augment)
        except (TypeError, ValueError) as exc:
            raise ConfigError("data.augment: " + " ".join(str(exc).split())) from None
    valid = loader_options(cfg.data.name)
    unknown = sorted(set(cfg.data.options) - set(valid))
    if unknown:
        raise ConfigError(f"data.options: {cfg.data.name} has no option {', '.join(unknown)}"
                          f"{did_you_mean(unknown[0], valid)}; valid options: {', '.join(valid) or 'none'}")
    _checked_runs.add(fingerprint)


add_run_check(check_run)  # every RunConfig validated from here on, in this process


def run(cfg: RunConfig, *, progress: bool | None = None, force: bool = False,
        splits: Splits | None = None) -> RunResult:
    """Train `cfg` or return its cached result; resumes an interrupted run from its checkpoint.

    The progress bar shows on a terminal only (None), so executed notebooks stay readable."""
    if progress is None:
        progress = sys.stderr.isatty()
    run_dir = run_dir_for(cfg)
    rank, world = dist_info()
    if not force:
        cached = run_dir.load_result()
        if cached is not None:
            return RunResult(cfg, run_dir.key, run_dir.path, *cached)
    # Build the trainer (data, components, one-shot runs) before anything is written, so a bad
    # setting leaves nothing behind.
    trainer = Trainer(cfg, splits=splits, progress=progress)
    if world > 1:  # the ranks of one run share its folder; a lock would keep all but one waiting
        return _train(cfg, run_dir, trainer, rank, world)
    with run_dir.lock():
        cached = None if force else run_dir.load_result()  # trained meanwhile by another process
        if cached is not None:
            return RunResult(cfg, run_dir.key, run_dir.path, *cached)
        return _train(cfg, run_dir, trainer, rank, world)


def _train(cfg: RunConfig, run_dir: RunDir, trainer: Trainer, rank: int, world: int) -> RunResult:
    started = time.time()
    if rank == 0:
        run_dir.start()
    final: dict = {}

    def validate(t: Trainer, last: bool) -> dict:
        if last and t.splits.validates_on_test:  # the last validation is the final test: score it once
            final["test"] = scoring.score(t, t.splits.test, final=True)
            return scoring.as_epoch_record(final["test"][0])
        return scoring.as_epoch_record(scoring.score(t, t.splits.val_each_epoch, final=False)[0])

    history = trainer.fit(run_dir, validate)
    if rank != 0:
        dist.barrier()
        return RunResult(cfg, run_dir.key, run_dir.path, {}, pd.DataFrame(history))
    metrics, test_emb, test_loss_side = final.get("test") or scoring.score(trainer, trainer.splits.test, final=True)
    steps = trainer.steps * cfg.train.epochs
    metrics = {**metrics, **_training_summary(history), "train_steps": steps,
               "train_images_seen": steps * cfg.train.batch_size, "key": run_dir.key}
    arrays = _arrays(trainer, test_emb, test_loss_side) if cfg.eval.save_embeddings else {}
    # wall seconds to train and score here (a resumed run: since it resumed)
    made_by = {**provenance(trainer.device), "seconds": round(time.time() - started, 1)}
    run_dir.finish(metrics, history, arrays, made_by)
    if world > 1:
        dist.barrier()
    return RunResult(cfg, run_dir.key, run_dir.path, metrics, pd.DataFrame(history), arrays or None)


def run_dir_for(cfg: RunConfig) -> RunDir:
    """The cache folder of `cfg`, keyed by its settings and the content of its data files."""
    d = cfg.data
    return RunDir(cfg.to_dict(), data_lib.data_fingerprint(d.name, d.root, **d.options), key_config=cfg.key_dict())


def _training_summary(history: list[dict]) -> dict:
    last = history[-1] if history else {}
    out = {f"train_{k}": last[k] for k in ("loss", "loss_over_margin", "nonzero_fraction", "d_ap_mean",
                                           "d_an_mean", "grad_norm") if k in last}
    out["train_seconds"] = float(sum(h["train_seconds"] for h in history))
    return out


def _arrays(trainer: Trainer, test_emb: np.ndarray, test_loss_side: np.ndarray | None) -> dict:
    arrays = {"test_embeddings": test_emb.astype(np.float32), "test_labels": trainer.splits.test.labels}
    if test_loss_side is not None:
        arrays["test_loss_space_embeddings"] = test_loss_side.astype(np.float32)
    if trainer.assignment is not None:  # what each learner trained on, for a map coloured by learner
        sample = np.random.default_rng(0).permutation(len(trainer.splits.train))[:2000]
        arrays["train_sample_embeddings"] = trainer.embed(trainer.splits.train.subset(sample)).astype(np.float32)
        arrays["train_sample_learner"] = trainer.assignment[sample]
        arrays["train_sample_labels"] = trainer.splits.train.labels[sample]
    return arrays


def load_trained(result: RunResult) -> Trainer:
    """A Trainer holding a finished run's final weights (from its last checkpoint), for analyses."""
    checkpoint = run_dir_for(result.config).load_checkpoint()
    if checkpoint is None:
        raise FileNotFoundError(f"run {result.key} has no checkpoint in {result.path}; rerun it with force=True")
    trainer = Trainer(result.config, progress=False)
    trainer.restore(checkpoint)
    return trainer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", help="a params file or profile name (smoke, quick, full, paper)")
    parser.add_argument("--dataset", default=None, help="which data set's settings (default: the profile's first)")
    parser.add_argument("--chapter", default=None, help="use a chapter's run overlay, chapters.<name>.runs.<dataset>")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one run key, e.g. --set optim.lr=1e-4 (repeatable)")
    parser.add_argument("--force", action="store_true", help="retrain even if the result is cached")
    args = parser.parse_args(argv)
    try:
        profile = load_profile(args.profile)
        dataset = args.dataset or next(iter(profile.datasets))
        layers = [profile.chapter(args.chapter).get("runs", {}).get(dataset, {})] if args.chapter else []
        cfg = profile.run_config(dataset, *layers)
        cfg = cfg.with_overrides(dict(parse_assignment(a) for a in args.overrides))
        result = run(cfg, force=args.force)
    except (ConfigError, data_lib.DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        print(f"diverged: {exc}", file=sys.stderr)
        return 3
    except OSError as exc:  # a read-only or full run cache: one line (a cached run is still served above)
        print(f"error: cannot write {exc.filename or 'the run cache'} ({exc.strerror or exc}); "
              "set METRIC_RUNS to a writable folder", file=sys.stderr)
        return 2
    if dist_info()[0] == 0:
        shown = {k: v for k, v in result.metrics.items() if isinstance(v, (int, float, bool))}
        print(f"run {result.key} -> {result.path}")
        for k, v in shown.items():
            print(f"  {k:28s} {v:.4f}" if isinstance(v, float) else f"  {k:28s} {v}")
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
