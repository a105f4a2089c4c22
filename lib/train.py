"""The one trainer of the study: a RunConfig in, a cached RunResult out.

    python -m lib.train params/quick.yaml --dataset omniglot --set optim.lr=1e-4

Per epoch it records the diagnostics that tell a collapsing run from a learning one
(see `EpochStats` and `COLLAPSE_RULE`), evaluates, and checkpoints, so an
interrupted run resumes where it stopped. Under `torchrun` it trains with
DistributedDataParallel and pml's distributed loss/miner wrappers.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from pytorch_metric_learning import samplers
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu
from pytorch_metric_learning.utils.distributed import DistributedLossWrapper, DistributedMinerWrapper
from tqdm import tqdm

from lib import data as data_lib
from lib import divide, evaluate
from lib.augment import make_augment
from lib.cache import RunDir, read_json
from lib.components import SAMPLERS, build_distance, build_loss, build_miner, build_optimizer, build_scheduler
from lib.config import ConfigError, RunConfig, load_profile, parse_assignment
from lib.models import EmbeddingNet

COLLAPSE_RULE = (
    "collapsed = the spread ratio (mean pairwise distance / (2 x RMS norm)) of the held-out "
    "embeddings, in the evaluation space or in the space the loss sees (they differ when a "
    "projector is dropped at test), is below eval.collapse_threshold (0.05 by default): every "
    "image has been mapped to nearly the same point. Random unit vectors give ~0.7."
)
HIST_BINS = 40


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the run's diagnostics are in its failed.json."""


# ---------------------------------------------------------------- data
@lru_cache(maxsize=8)
def _load(name: str, root: str | None, image_size, options: tuple) -> data_lib.Dataset:
    return data_lib.load_dataset(name, root=root, image_size=image_size, **dict(options))


def _first_classes(split: data_lib.Split, max_images: int | None) -> data_lib.Split:
    """The first classes (by label) holding at most max_images images: a class-disjoint cut."""
    if not max_images or len(split) <= max_images:
        return split
    counts = np.bincount(split.labels)
    keep = np.flatnonzero(np.cumsum(counts) <= max_images)
    if len(keep) < 2:
        keep = np.arange(2)
    return split.subset(np.flatnonzero(np.isin(split.labels, keep)))


@dataclass
class Splits:
    train: data_lib.Split
    val: data_lib.Split  # what is evaluated during training (the test split when val_fraction = 0)
    test: data_lib.Split
    in_chans: int


def load_splits(cfg: RunConfig) -> Splits:
    d = cfg.data
    size = tuple(d.image_size) if isinstance(d.image_size, list) else d.image_size
    ds = _load(d.name, d.root, size, tuple(sorted((k, _freeze(v)) for k, v in d.options.items())))
    train, test = ds.train, _first_classes(ds.test, d.max_test_images)
    train = _first_classes(train, d.max_train_images)
    val = test
    if d.val_fraction > 0:
        train, val = data_lib.class_disjoint_split(train, d.val_fraction, seed=0)
    extra = 1 if train.extra_channel is not None else 0
    return Splits(train, val, test, train.channels + extra)


def _freeze(value):
    return tuple(value) if isinstance(value, list) else value


def make_batches(cfg: RunConfig, labels: np.ndarray, steps: int) -> list[np.ndarray]:
    """Index batches for one epoch, drawn from numpy's global RNG (seeded per epoch).

    A set with too few classes for a full m-per-class batch (a small held-out split, a
    Divide-and-Conquer cluster) gets smaller batches: every class it has, m images each."""
    bs = cfg.train.batch_size
    if cfg.sampler.name == "m_per_class":
        m = cfg.sampler.m
        if bs % m:
            raise ConfigError(f"train.batch_size ({bs}) must be a multiple of sampler.m ({m})")
        bs = min(bs, m * len(np.unique(labels)))
        sampler = samplers.MPerClassSampler(labels, m=m, batch_size=bs, length_before_new_iter=steps * bs)
        order = np.fromiter(iter(sampler), dtype=np.int64)
    elif cfg.sampler.name == "shuffle":
        bs = min(bs, len(labels))
        reps = math.ceil(steps * bs / len(labels))
        order = np.concatenate([np.random.permutation(len(labels)) for _ in range(reps)])
    else:
        raise ConfigError(f"unknown sampler '{cfg.sampler.name}'; valid choices: {', '.join(SAMPLERS)}")
    return [order[i * bs:(i + 1) * bs] for i in range(steps)]


class _BatchReader(torch.utils.data.Dataset):
    """Reads a whole batch per item, so DataLoader workers decode batches in parallel."""

    def __init__(self, split: data_lib.Split, batches: list[np.ndarray]):
        self.split, self.batches = split, batches

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, i):
        idx = self.batches[i]
        extra = None if self.split.extra_channel is None else torch.from_numpy(self.split.extra_channel[idx])
        return self.split.read(idx), extra, torch.from_numpy(self.split.labels[idx])


def iterate_batches(split: data_lib.Split, batches: list[np.ndarray], workers: int, pin: bool):
    reader = _BatchReader(split, batches)
    if split.images is not None or workers == 0:
        return (reader[i] for i in range(len(reader)))
    return torch.utils.data.DataLoader(reader, batch_size=None, shuffle=False, num_workers=workers,
                                       pin_memory=pin, persistent_workers=False)


# ---------------------------------------------------------------- diagnostics
class EpochStats:
    """Accumulates the per-step diagnostics of one epoch.

    Hooks on the miner and the loss's reducer see exactly what pml computed: the
    mined tuples (or, without a miner, every pair in the batch) and the per-tuple
    losses, so "fraction of non-zero losses" is the loss's own count.
    """

    def __init__(self, hist_max: float):
        self.hist_edges = np.linspace(0.0, hist_max, HIST_BINS + 1)
        self.hist = np.zeros(HIST_BINS)
        self.sums: dict[str, list[float]] = {}
        self.dap: list[np.ndarray] = []
        self.dan: list[np.ndarray] = []

    def add(self, **values: float) -> None:
        for k, v in values.items():
            self.sums.setdefault(k, []).append(float(v))

    def add_distances(self, distance, embeddings: torch.Tensor, labels: torch.Tensor, tuples) -> None:
        with torch.no_grad():
            emb = embeddings.detach().float()
            pairs = lmu.convert_to_pairs(tuples, labels) if tuples is not None else lmu.get_all_pairs_indices(labels)
            a1, p, a2, n = pairs
            mat = distance(emb)
            dap, dan = mat[a1, p].cpu().numpy(), mat[a2, n].cpu().numpy()
        self.dap.append(dap)
        self.dan.append(dan)
        self.hist += np.histogram(np.clip(dan, 0, self.hist_edges[-1]), bins=self.hist_edges)[0]

    def summary(self) -> dict:
        out = {k: float(np.mean(v)) for k, v in self.sums.items()}
        for name, chunks in (("d_ap", self.dap), ("d_an", self.dan)):
            values = np.concatenate(chunks) if chunks else np.array([])
            out[f"{name}_mean"] = float(values.mean()) if values.size else math.nan
            out[f"{name}_std"] = float(values.std()) if values.size else math.nan
        out["d_an_hist"] = self.hist.tolist()
        out["d_an_hist_edges"] = self.hist_edges.tolist()
        return out


class _Recorder:
    """Forward hooks that copy what the miner mined and the per-tuple losses of the reducer."""

    def __init__(self, loss_fns, miner):
        self.tuples = None
        self.per_tuple: list[torch.Tensor] = []
        self.handles = [fn.reducer.register_forward_pre_hook(self._on_reduce) for fn in loss_fns]
        if miner is not None:
            self.handles.append(miner.register_forward_hook(self._on_mine))
        self.mined_embeddings = self.mined_labels = None

    def _on_reduce(self, module, args):
        loss_dict = args[0]
        self.per_tuple = [v["losses"].detach() for v in loss_dict.values()
                          if torch.is_tensor(v.get("losses")) and v["losses"].ndim > 0]

    def _on_mine(self, module, args, output):
        self.mined_embeddings, self.mined_labels = args[0], args[1]
        self.tuples = output

    def reset(self):
        self.tuples = self.mined_embeddings = self.mined_labels = None
        self.per_tuple = []


# ---------------------------------------------------------------- results
@dataclass
class RunResult:
    config: RunConfig
    key: str
    path: Path
    metrics: dict
    history: pd.DataFrame
    _arrays: dict | None = field(default=None, repr=False)

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """Saved held-out embeddings ('test_embeddings', 'test_labels', ...), loaded on first use."""
        if self._arrays is None:
            path = self.path / "embeddings.npz"
            self._arrays = dict(np.load(path)) if path.exists() else {}
        return self._arrays

    @classmethod
    def load(cls, config: RunConfig, run_dir: RunDir) -> "RunResult":
        history = pd.DataFrame(read_json(run_dir.file("history.json")))
        return cls(config, run_dir.key, run_dir.path, read_json(run_dir.file("metrics.json")), history)


# ---------------------------------------------------------------- training
def _device(cfg: RunConfig) -> torch.device:
    if cfg.train.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if cfg.train.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    return torch.device(cfg.train.device)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _dist_info() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class Trainer:
    def __init__(self, cfg: RunConfig, splits: Splits | None = None, progress: bool = True):
        self.cfg = cfg
        self.rank, self.world = _dist_info()
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        self.device = _device(cfg)
        if self.world > 1 and self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(self.device)
        self.cuda = self.device.type == "cuda"
        self.progress = progress and self.rank == 0
        self.splits = splits or load_splits(cfg)
        divide.check(cfg)
        _seed_everything(cfg.train.seed)
        self.model = EmbeddingNet(cfg.model, self.splits.in_chans, slices=cfg.divide.clusters).to(self.device)
        if self.cuda and cfg.train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.distance = build_distance(cfg)
        self.loss_fn = build_loss(cfg, self.distance).to(self.device)  # the whole embedding's
        # Divide and Conquer: one loss instance per learner (each its own MarginLoss beta).
        self.learner_losses = torch.nn.ModuleList(
            build_loss(cfg, self.distance) for _ in range(cfg.divide.clusters if cfg.divide.clusters > 1 else 0)
        ).to(self.device)
        self.miner = build_miner(cfg, self.distance)
        self.optimizer = build_optimizer(cfg, self.model, torch.nn.ModuleList([self.loss_fn, *self.learner_losses]))
        self.scheduler = build_scheduler(cfg, self.optimizer)
        self.recorder = _Recorder([self.loss_fn, *self.learner_losses], self.miner)
        self.assignment: np.ndarray | None = None  # training image -> learner, while dividing
        self.train_model, self.train_miner = self.model, self.miner
        self.train_losses = [self.loss_fn, *self.learner_losses]  # index 0: whole embedding; k + 1: learner k
        if self.world > 1:
            ids = [self.device.index] if self.cuda else None
            self.train_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=ids, find_unused_parameters=cfg.divide.clusters > 1)
            self.train_losses = [DistributedLossWrapper(fn) for fn in self.train_losses]
            self.train_miner = DistributedMinerWrapper(self.miner) if self.miner is not None else None
        if cfg.train.compile:  # the backbone only: a Divide-and-Conquer head changes shape per learner
            self.model.backbone.compile()
        if self.cuda:
            torch.backends.cudnn.benchmark = True  # fixed input sizes
        self.augment = make_augment(cfg.data.augment).to(self.device)
        pretrained = cfg.model.pretrained and self.splits.train.channels == 3
        self.mean, self.std = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)) if pretrained else (None, None)
        self.margin = getattr(self.loss_fn, "margin", None)
        normalized = getattr(self.distance, "normalize_embeddings", False) and cfg.distance.kwargs.get("p", 2) == 2
        self.hist_max = 2.0 if normalized else 4.0
        train_n = len(self.splits.train)
        self.steps = cfg.train.steps_per_epoch or max(1, train_n // cfg.train.batch_size)
        self.generator = torch.Generator(device=self.device)

    # -- one batch in, float images out
    def _prepare(self, images: torch.Tensor, extra, augment: bool) -> torch.Tensor:
        x = images.to(self.device, non_blocking=True).float().div_(255)
        if augment:
            x = self.augment(x, generator=self.generator)
        x = _normalize(x, extra.to(self.device) if extra is not None else None, self.mean, self.std)
        if self.cuda and self.cfg.train.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _autocast(self):
        if self.cuda and self.cfg.train.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train_epoch(self, epoch: int) -> dict:
        cfg = self.cfg
        _seed_everything(cfg.train.seed * 100_003 + epoch)
        self.generator.manual_seed(cfg.train.seed * 100_003 + epoch)
        clustering = self.recluster(epoch) if divide.reclusters_at(cfg, epoch) else {}
        if epoch < divide.divided_epochs(cfg):
            learners, batches = zip(*divide.learner_batches(cfg, self.splits.train.labels, self.assignment, self.steps, make_batches))
        else:
            batches = make_batches(cfg, self.splits.train.labels, self.steps)
            learners = [None] * len(batches)
        if self.world > 1:
            batches = [np.array_split(b, self.world)[self.rank] for b in batches]
        stats = EpochStats(self.hist_max)
        self.train_model.train()
        start, seen = time.perf_counter(), 0
        loader = iterate_batches(self.splits.train, batches, cfg.train.num_workers, self.cuda)
        bar = tqdm(loader, total=len(batches), desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
                   disable=not self.progress, leave=False)
        for step, ((images, extra, labels), learner) in enumerate(zip(bar, learners)):
            x = self._prepare(images, extra, augment=True)
            labels = labels.to(self.device)
            self.recorder.reset()
            with self._autocast():
                emb = self.train_model(x) if learner is None else self.train_model(x, learner)
            emb = emb.float()
            tuples = self.train_miner(emb, labels) if self.train_miner is not None else None
            loss = self.train_losses[0 if learner is None else learner + 1](emb, labels, tuples)
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"loss became {loss.item()} at epoch {epoch + 1}, step {step + 1} "
                    f"(lr {self.optimizer.param_groups[0]['lr']:g}); lower optim.lr or set optim.grad_clip")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.world > 1:
                self._sync_loss_grads()
            diagnose = step % cfg.train.diagnostics_every == 0
            if cfg.optim.grad_clip or diagnose:
                grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip or math.inf,
                                                           foreach=True)
            self.optimizer.step()
            seen += len(labels)
            stats.add(loss=loss.item() / self.world)
            if diagnose:
                self._diagnose(stats, emb, labels, grad_norm)
            if self.progress:
                bar.set_postfix(loss=f"{loss.item():.4f}")
        elapsed = time.perf_counter() - start
        summary = stats.summary()
        summary.update(epoch=epoch + 1, lr=self.optimizer.param_groups[0]["lr"],
                       train_seconds=elapsed, images_per_second=seen * self.world / elapsed, **clustering)
        if self.margin is not None:
            summary["loss_over_margin"] = summary["loss"] / float(self.margin)
        if hasattr(self.loss_fn, "beta"):
            summary["beta"] = float(self.loss_fn.beta.detach().float().mean())
        return summary

    def _sync_loss_grads(self) -> None:
        """Learnable loss parameters (MarginLoss's beta) sit outside DDP. pml's wrapper scales
        each rank's loss by the world size, so their gradients are averaged and unscaled here.
        Every rank trains the same learner at a step, so the same parameters have gradients."""
        for fn in (self.loss_fn, *self.learner_losses):
            for p in fn.parameters():
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad /= self.world**2

    def recluster(self, epoch: int) -> dict:
        """k-means the training images into the learners' clusters, keeping each learner's data
        as far as possible (Hungarian matching); what changed goes into the epoch's history."""
        cfg, start = self.cfg, time.perf_counter()
        labels = self.splits.train.labels
        if self.rank == 0:
            features = self.embed(self.splits.train, space="backbone" if cfg.divide.features == "backbone" else "eval")
            new = divide.cluster(features, cfg.divide.clusters, restarts=cfg.divide.kmeans_restarts,
                                 iterations=cfg.divide.kmeans_iterations, seed=cfg.train.seed * 1000 + epoch)
            new = divide.match_to_learners(self.assignment, divide.drop_singletons(new, labels), cfg.divide.clusters)
        else:
            new = np.empty(len(labels), dtype=np.int64)
        if self.world > 1:  # every rank must train the same learners on the same data
            shared = torch.from_numpy(new).to(self.device)
            dist.broadcast(shared, src=0)
            new = shared.cpu().numpy()
        record = {"cluster_seconds": time.perf_counter() - start,
                  "cluster_sizes": np.bincount(new[new >= 0], minlength=cfg.divide.clusters).tolist(),
                  "cluster_dropped": int((new < 0).sum())}
        if self.assignment is not None:
            record["cluster_kept_fraction"] = divide.kept_fraction(self.assignment, new)
            record["cluster_contingency"] = divide.contingency(self.assignment, new, cfg.divide.clusters).tolist()
        self.assignment = new
        return record

    def _diagnose(self, stats: EpochStats, emb: torch.Tensor, labels: torch.Tensor, grad_norm) -> None:
        """What the miner picked and what the loss made of it, from the recorder's hooks."""
        rec = self.recorder
        per_tuple = torch.cat([t.flatten() for t in rec.per_tuple]) if rec.per_tuple else torch.empty(0)
        stats.add(grad_norm=grad_norm.item(),
                  nonzero_fraction=(per_tuple > 0).float().mean().item() if per_tuple.numel() else 0.0,
                  tuples=_count(rec.tuples) if self.train_miner is not None else math.nan)
        if hasattr(self.miner, "zero_weight_fraction"):  # lib.miners.WuDistanceWeightedMiner
            stats.add(zero_weight_fraction=self.miner.zero_weight_fraction)
        mined_emb = rec.mined_embeddings if rec.mined_embeddings is not None else emb
        mined_labels = rec.mined_labels if rec.mined_labels is not None else labels
        stats.add_distances(self.distance, mined_emb, mined_labels, rec.tuples)

    @torch.no_grad()
    def embed(self, split: data_lib.Split, space: str = "eval") -> np.ndarray:
        """Embeddings of a split: "eval" (what is evaluated), "loss" (what the loss sees) or
        "backbone" (the pooled features before the embedding layer)."""
        forward = {"eval": self.model.embed, "loss": self.model, "backbone": self.model.backbone}[space]
        self.model.eval()
        bs = self.cfg.eval.batch_size
        batches = [np.arange(i, min(i + bs, len(split))) for i in range(0, len(split), bs)]
        out = []
        for images, extra, _ in iterate_batches(split, batches, self.cfg.train.num_workers, self.cuda):
            x = self._prepare(images, extra, augment=False)
            with self._autocast():
                z = forward(x)
            out.append(z.float().cpu())
        return torch.cat(out).numpy()

    @torch.no_grad()
    def validation_loss(self, split: data_lib.Split, max_batches: int = 20) -> float:
        """The training loss (with its miner and sampler) on held-out classes."""
        state = np.random.get_state()
        np.random.seed(12345)
        try:
            steps = min(max_batches, max(1, len(split) // self.cfg.train.batch_size))
            batches = make_batches(self.cfg, split.labels, steps)
        finally:
            np.random.set_state(state)
        self.model.eval()
        values = []
        for images, extra, labels in iterate_batches(split, batches, self.cfg.train.num_workers, self.cuda):
            labels = labels.to(self.device)
            emb = self.model(self._prepare(images, extra, augment=False)).float()
            tuples = self.miner(emb, labels) if self.miner is not None else None
            values.append(self.loss_fn(emb, labels, tuples).item())
        return float(np.mean(values))

    def evaluate(self, split: data_lib.Split, final: bool) -> tuple[dict, np.ndarray, np.ndarray | None]:
        """Metrics, evaluation embeddings and, when a projector is dropped at test, the
        embeddings the loss sees (else None)."""
        start = time.perf_counter()
        emb = self.embed(split)
        metrics = evaluate.retrieval_metrics(emb, split.labels, recall_ks=tuple(self.cfg.eval.recall_ks),
                                             nmi=self.cfg.eval.nmi and final)
        spread = evaluate.embedding_spread(emb)
        metrics.update(spread)
        metrics["loss_space_spread_ratio"] = spread["spread_ratio"]
        loss_side = None
        if self.model.projector is not None and not self.model.projector_at_test:
            loss_side = self.embed(split, space="loss")
            metrics["loss_space_spread_ratio"] = evaluate.embedding_spread(loss_side)["spread_ratio"]
        worst = min(spread["spread_ratio"], metrics["loss_space_spread_ratio"])
        metrics["collapsed"] = bool(worst < self.cfg.eval.collapse_threshold)
        metrics["val_loss"] = self.validation_loss(split)
        if final and self.cfg.eval.oneshot:
            metrics["oneshot_accuracy"] = self.oneshot_accuracy()
        metrics["eval_seconds"] = time.perf_counter() - start
        return metrics, emb, loss_side

    def oneshot_accuracy(self) -> float:
        size = self.cfg.data.image_size if isinstance(self.cfg.data.image_size, int) else 28
        runs = data_lib.load_oneshot_runs(self.cfg.data.root, image_size=size or 28)
        support, query = [], []
        for run in runs:
            support.append(self._embed_array(run.support))
            query.append(self._embed_array(run.query))
        return evaluate.oneshot_accuracy(support, query, [r.answers for r in runs])

    @torch.no_grad()
    def _embed_array(self, images: np.ndarray) -> np.ndarray:
        self.model.eval()
        return self.model.embed(self._prepare(torch.from_numpy(images), None, augment=False)).cpu().numpy()

    def state(self, epoch: int, history: list[dict]) -> dict:
        return {"epoch": epoch, "history": history, "model": self.model.state_dict(),
                "loss": self.loss_fn.state_dict(), "learner_losses": self.learner_losses.state_dict(),
                "optimizer": self.optimizer.state_dict(), "assignment": self.assignment,
                "scheduler": self.scheduler.state_dict() if self.scheduler else None}

    def restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.loss_fn.load_state_dict(state["loss"])
        self.learner_losses.load_state_dict(state["learner_losses"])
        self.assignment = state["assignment"]
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler and state["scheduler"]:
            self.scheduler.load_state_dict(state["scheduler"])

    def fit(self, run_dir: RunDir | None = None) -> tuple[dict, list[dict], dict]:
        cfg, history, first = self.cfg, [], 0
        checkpoint = run_dir.load_checkpoint() if run_dir is not None else None
        if checkpoint is not None:
            self.restore(checkpoint)
            history, first = checkpoint["history"], checkpoint["epoch"] + 1
        for epoch in range(first, cfg.train.epochs):
            try:
                record = self.train_epoch(epoch)
            except TrainingDiverged as exc:
                if run_dir is not None and self.rank == 0:
                    run_dir.fail({"error": str(exc), "history": history})
                raise
            last = epoch == cfg.train.epochs - 1
            if self.rank == 0 and (last or (epoch + 1) % cfg.eval.every == 0):
                metrics, _, _ = self.evaluate(self.splits.val, final=False)
                record.update({f"val_{k}" if not k.startswith("val_") else k: v for k, v in metrics.items()})
            history.append(record)
            if self.scheduler is not None:
                if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    self.scheduler.step(record["loss"])
                else:
                    self.scheduler.step()
            if run_dir is not None and self.rank == 0:
                run_dir.save_checkpoint(self.state(epoch, history))
            if self.world > 1:
                dist.barrier()
        if self.rank != 0:
            return {}, history, {}
        metrics, test_emb, test_loss_side = self.evaluate(self.splits.test, final=True)
        final = history[-1] if history else {}
        for key in ("loss", "loss_over_margin", "nonzero_fraction", "d_ap_mean", "d_an_mean", "grad_norm"):
            if key in final:
                metrics[f"train_{key}"] = final[key]
        metrics["train_seconds"] = float(sum(h["train_seconds"] for h in history))
        arrays = {}
        if cfg.eval.save_embeddings:
            arrays = {"test_embeddings": test_emb.astype(np.float32), "test_labels": self.splits.test.labels}
            if test_loss_side is not None:
                arrays["test_loss_space_embeddings"] = test_loss_side.astype(np.float32)
            if self.assignment is not None:  # what each learner trained on, for a map coloured by learner
                sample = np.random.default_rng(0).permutation(len(self.splits.train))[:2000]
                arrays["train_sample_embeddings"] = self.embed(self.splits.train.subset(sample)).astype(np.float32)
                arrays["train_sample_learner"] = self.assignment[sample]
                arrays["train_sample_labels"] = self.splits.train.labels[sample]
        return metrics, history, arrays


def _normalize(x: torch.Tensor, extra: torch.Tensor | None, mean, std) -> torch.Tensor:
    """Centre [0, 1] images (ImageNet statistics for pretrained backbones) and append the
    constant extra channel (the beluga viewpoint mask), which augmentation never touches."""
    if mean is not None:
        x = (x - x.new_tensor(mean).view(1, -1, 1, 1)) / x.new_tensor(std).view(1, -1, 1, 1)
    else:
        x = (x - 0.5) / 0.5
    if extra is not None:
        x = torch.cat([x, extra.to(x.dtype).view(-1, 1, 1, 1).expand(-1, 1, *x.shape[2:])], dim=1)
    return x


def _count(tuples) -> float:
    return float(len(tuples[0])) if tuples is not None and len(tuples) else 0.0


def run(cfg: RunConfig, *, progress: bool | None = None, force: bool = False,
        splits: Splits | None = None) -> RunResult:
    """Train `cfg` or return its cached result; resumes an interrupted run from its checkpoint.

    The progress bar shows on a terminal only (None), so executed notebooks stay readable."""
    if progress is None:
        progress = sys.stderr.isatty()
    run_dir = RunDir(cfg.to_dict())
    rank, world = _dist_info()
    if run_dir.complete and not force:
        return RunResult.load(cfg, run_dir)
    if rank == 0:
        run_dir.start()
    trainer = Trainer(cfg, splits=splits, progress=progress)
    metrics, history, arrays = trainer.fit(run_dir)
    if rank == 0:
        metrics["key"] = run_dir.key
        run_dir.finish(metrics, history, arrays)
    if world > 1:
        dist.barrier()
        if rank != 0:
            return RunResult(cfg, run_dir.key, run_dir.path, {}, pd.DataFrame(history))
    return RunResult(cfg, run_dir.key, run_dir.path, metrics, pd.DataFrame(history), arrays or None)


def load_trained(result: RunResult) -> Trainer:
    """A Trainer holding a finished run's final weights (from its last checkpoint), for analyses."""
    checkpoint = RunDir(result.config.to_dict()).load_checkpoint()
    if checkpoint is None:
        raise FileNotFoundError(f"run {result.key} has no checkpoint in {result.path}; rerun it with force=True")
    trainer = Trainer(result.config, progress=False)
    trainer.restore(checkpoint)
    return trainer


# ---------------------------------------------------------------- CLI
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
    if _dist_info()[0] == 0:
        shown = {k: v for k, v in result.metrics.items() if isinstance(v, (int, float, bool))}
        print(f"run {result.key} -> {result.path}")
        for k, v in shown.items():
            print(f"  {k:28s} {v:.4f}" if isinstance(v, float) else f"  {k:28s} {v}")
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
