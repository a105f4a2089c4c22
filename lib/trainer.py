"""The Trainer: an embedding network, its loss, miner and optimiser, trained epoch by epoch.

It trains and embeds; scoring what it embeds is `lib.scoring`'s job, and caching a run is
`lib.train`'s. Per epoch it records the diagnostics of `lib.diagnostics` and checkpoints, so an
interrupted run resumes where it stopped. Under `torchrun` it trains with
DistributedDataParallel and pml's distributed loss/miner wrappers.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.distributed as dist
from pytorch_metric_learning.utils.distributed import DistributedLossWrapper, DistributedMinerWrapper
from tqdm import tqdm

from lib import data as data_lib
from lib import divide
from lib.augment import make_augment
from lib.batching import check_sampler, iterate_batches, make_batches
from lib.cache import RunDir, library_versions, memoized, provenance
from lib.components import build_distance, build_loss, build_miner, build_optimizer, build_scheduler
from lib.config import ConfigError, RunConfig
from lib.diagnostics import EpochStats, Recorder, count_tuples
from lib.models import EmbeddingNet, input_normalisation
from lib.splits import Splits, load_splits


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the run's diagnostics are in its failed.json."""


def _device(cfg: RunConfig) -> torch.device:
    if cfg.train.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if cfg.train.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    return torch.device(cfg.train.device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def dist_info() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class Trainer:
    def __init__(self, cfg: RunConfig, splits: Splits | None = None, progress: bool = True):
        self.cfg = cfg
        self.rank, self.world = dist_info()
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        self.device = _device(cfg)
        if self.world > 1 and self.device.type == "cuda":
            # More ranks than GPUs (a one-GPU machine checking the DDP path) share the GPUs round
            # robin; NCCL refuses two ranks on one GPU, so those ranks talk through gloo.
            gpus = torch.cuda.device_count()
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % gpus)
            torch.cuda.set_device(self.device)
        if self.world > 1 and not dist.is_initialized():
            nccl = self.device.type == "cuda" and self.world <= torch.cuda.device_count()
            dist.init_process_group("nccl" if nccl else "gloo")
        self.cuda = self.device.type == "cuda"
        self.progress = progress and self.rank == 0
        if cfg.eval.oneshot:  # before minutes of training, not after
            data_lib.check_oneshot_runs(cfg.data.root)
        self.splits = splits or load_splits(cfg)
        check_sampler(cfg, self.splits.train.labels)
        divide.check(cfg)
        seed_everything(cfg.train.seed)
        self.model = EmbeddingNet(cfg.model, self.splits.in_chans, slices=cfg.divide.clusters).to(self.device)
        # channels-last also pays on CPU: training steps 1.25-1.3x, embedding 1.4-2x faster on this
        # study's conv nets (measured on 2 idle cores against the default format)
        self.memory_format = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
        self.model = self.model.to(memory_format=self.memory_format)
        self.distance = build_distance(cfg)
        classes = int(self.splits.train.labels.max()) + 1
        self.loss_fn = build_loss(cfg, self.distance, classes, self.model.loss_dim).to(self.device)  # the whole embedding's
        # Divide and Conquer: one loss instance per learner (each its own MarginLoss beta).
        self.learner_losses = torch.nn.ModuleList(
            build_loss(cfg, self.distance) for _ in range(cfg.divide.clusters if cfg.divide.clusters > 1 else 0)
        ).to(self.device)
        self.miner = build_miner(cfg, self.distance)
        self.optimizer = build_optimizer(cfg, self.model, torch.nn.ModuleList([self.loss_fn, *self.learner_losses]))
        self.scheduler = build_scheduler(cfg, self.optimizer)
        self.recorder = Recorder([self.loss_fn, *self.learner_losses], self.miner)
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
        self.mean, self.std = input_normalisation(cfg.model.backbone, pretrained) or (None, None)
        self.margin = getattr(self.loss_fn, "margin", None)
        normalized = getattr(self.distance, "normalize_embeddings", False) and cfg.distance.kwargs.get("p", 2) == 2
        self.hist_max = 2.0 if normalized else 4.0
        self.steps = cfg.train.steps_per_epoch or max(1, len(self.splits.train) // cfg.train.batch_size)
        self.generator = torch.Generator(device=self.device)
        self._trunk_views: torch.Tensor | None = None  # model.frozen_stages: see trunk_views

    def prepare(self, images: torch.Tensor, extra, augment: bool,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """One batch of uint8 images in, normalised float images out (augmented when training)."""
        x = images.to(self.device, non_blocking=True).float().div_(255)
        if augment:
            x = self.augment(x, generator=generator or self.generator)
        x = _normalize(x, extra.to(self.device) if extra is not None else None, self.mean, self.std)
        return x.contiguous(memory_format=self.memory_format)

    def autocast(self):
        if self.cfg.train.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train_epoch(self, epoch: int) -> dict:
        cfg = self.cfg
        seed_everything(cfg.train.seed * 100_003 + epoch)
        self.generator.manual_seed(cfg.train.seed * 100_003 + epoch)
        clustering = self.recluster(epoch) if divide.reclusters_at(cfg, epoch) else {}
        if divide.divides_at(cfg, epoch):
            learners, batches = zip(*divide.learner_batches(cfg, self.splits.train.labels, self.assignment,
                                                            self.steps, make_batches))
        else:
            batches = make_batches(cfg, self.splits.train.labels, self.steps)
            learners = [None] * len(batches)
        if self.world > 1:
            batches = [np.array_split(b, self.world)[self.rank] for b in batches]
        stats = EpochStats(self.hist_max)
        self.train_model.train()
        start, seen = time.perf_counter(), 0
        frozen = bool(cfg.model.frozen_stages)
        loader = self._trunk_batches(batches) if frozen else (
            (self.prepare(images, extra, augment=True), labels)
            for images, extra, labels in iterate_batches(self.splits.train, batches, cfg.train.num_workers, self.cuda))
        bar = tqdm(loader, total=len(batches), desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
                   disable=not self.progress, leave=False)
        for step, ((x, labels), learner) in enumerate(zip(bar, learners)):
            labels = labels.to(self.device)
            self.recorder.reset()
            with self.autocast():
                emb = self.train_model(x, learner, from_trunk=frozen)
            emb = emb.float()
            tuples = self.train_miner(emb, labels) if self.train_miner is not None else None
            loss = self.train_losses[0 if learner is None else learner + 1](emb, labels, tuples)
            if not torch.isfinite(loss):  # one host sync a step: a NaN must stop the run at once
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
            stats.add(loss=loss.detach() / self.world)
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
        beta = getattr(self.loss_fn, "beta", None)  # MarginLoss learns it; MultiSimilarityLoss's is a number
        if isinstance(beta, torch.Tensor):
            summary["beta"] = float(beta.detach().float().mean())
        return summary

    def trunk_views(self) -> torch.Tensor:
        """(views, images, C, h, w) float16: the frozen stages' outputs (model.frozen_stages) for
        every training image under `model.frozen_views` augmented draws of this seed. Computed
        once and kept under runs/derived/, so every run with the same data, trunk, views and seed
        (chapter 1's ablations, chapter 2's miners) shares them."""
        if self._trunk_views is None:
            cfg = self.cfg
            split = self.splits.train
            inputs = {"data": cfg.data.model_dump(), "backbone": cfg.model.backbone, "stages": cfg.model.frozen_stages,
                      "views": cfg.model.frozen_views, "seed": cfg.train.seed, "in_chans": self.splits.in_chans,
                      "data_files": data_lib.data_fingerprint(cfg.data.name, cfg.data.root, **cfg.data.options),
                      "libraries": library_versions()}
            weights = [t.detach().cpu().numpy() for t in self.model.trunk.state_dict().values()]

            @torch.no_grad()
            def compute() -> dict[str, np.ndarray]:
                generator = torch.Generator(device=self.device)
                bs = cfg.eval.batch_size
                batches = [np.arange(i, min(i + bs, len(split))) for i in range(0, len(split), bs)]
                views = []
                for view in range(cfg.model.frozen_views):
                    generator.manual_seed(cfg.train.seed * 7919 + view)
                    views.append(torch.cat([
                        self.model.trunk(self.prepare(images, extra, augment=True, generator=generator)).half().cpu()
                        for images, extra, _ in iterate_batches(split, batches, cfg.train.num_workers, self.cuda)]))
                return {"views": torch.stack(views).numpy()}

            stored = memoized("frozen-trunk", compute, inputs=inputs, arrays=(split.labels, *weights),
                              modules=("augment", "models", "data"))
            self._trunk_views = torch.from_numpy(stored["views"])
        return self._trunk_views

    def _trunk_batches(self, batches: list[np.ndarray]):
        """(trunk outputs, labels) per batch: for each image one of its cached views, drawn from
        numpy's global RNG (seeded per epoch, so a resumed run draws the same)."""
        views = self.trunk_views()
        for idx in batches:
            pick = torch.from_numpy(np.random.randint(len(views), size=len(idx)))
            x = views[pick, torch.from_numpy(idx)].to(self.device, non_blocking=True).float()
            yield x.contiguous(memory_format=self.memory_format), torch.from_numpy(self.splits.train.labels[idx])

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
        stats.add(grad_norm=grad_norm.detach(),
                  nonzero_fraction=(per_tuple > 0).float().mean() if per_tuple.numel() else 0.0,
                  tuples=count_tuples(rec.tuples) if self.train_miner is not None else math.nan)
        if hasattr(self.miner, "zero_weight_fraction"):  # lib.miners.WuDistanceWeightedMiner
            stats.add(zero_weight_fraction=self.miner.zero_weight_fraction)
        mined_emb = rec.mined_embeddings if rec.mined_embeddings is not None else emb
        mined_labels = rec.mined_labels if rec.mined_labels is not None else labels
        stats.add_distances(self.distance, mined_emb, mined_labels, rec.tuples)

    @torch.no_grad()
    def embed(self, split: data_lib.Split, space: str = "eval") -> np.ndarray:
        """Embeddings of a split: "eval" (what is evaluated), "loss" (what the loss sees) or
        "backbone" (the pooled features before the embedding layer)."""
        forward = {"eval": self.model.embed, "loss": self.model, "backbone": self.model.features}[space]
        return self._embed_split(split, lambda x: (forward(x),))[0]

    def embed_both(self, split: data_lib.Split) -> tuple[np.ndarray, np.ndarray]:
        """(evaluation embeddings, loss-side embeddings) of a split from one forward pass each batch."""
        return self._embed_split(split, self.model.embed_both)

    @torch.no_grad()
    def _embed_split(self, split: data_lib.Split, forward: Callable) -> list[np.ndarray]:
        self.model.eval()
        bs = self.cfg.eval.batch_size
        batches = [np.arange(i, min(i + bs, len(split))) for i in range(0, len(split), bs)]
        out = []
        for images, extra, _ in iterate_batches(split, batches, self.cfg.train.num_workers, self.cuda):
            x = self.prepare(images, extra, augment=False)
            with self.autocast():
                out.append([z.float().cpu() for z in forward(x)])
        return [torch.cat(space).numpy() for space in zip(*out)]

    @torch.no_grad()
    def embed_array(self, images: np.ndarray) -> np.ndarray:
        self.model.eval()
        return self.model.embed(self.prepare(torch.from_numpy(images), None, augment=False)).float().cpu().numpy()

    def state(self, epoch: int, history: list[dict]) -> dict:
        """Everything a resume needs, as tensors and JSON text (loadable with weights_only=True)."""
        return {"epoch": epoch, "history_json": json.dumps(history),
                "model": self.model.state_dict(), "loss": self.loss_fn.state_dict(),
                "learner_losses": self.learner_losses.state_dict(), "optimizer": self.optimizer.state_dict(),
                "assignment": None if self.assignment is None else torch.from_numpy(self.assignment),
                "scheduler": self.scheduler.state_dict() if self.scheduler else None}

    def restore(self, state: dict) -> list[dict]:
        """Load a checkpoint; returns the epoch history it carries."""
        self.model.load_state_dict(state["model"])
        self.loss_fn.load_state_dict(state["loss"])
        self.learner_losses.load_state_dict(state["learner_losses"])
        self.assignment = None if state["assignment"] is None else state["assignment"].numpy()
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler and state["scheduler"]:
            self.scheduler.load_state_dict(state["scheduler"])
        return json.loads(state["history_json"])

    def fit(self, run_dir: RunDir | None = None,
            validate: Callable[["Trainer", bool], dict] | None = None) -> list[dict]:
        """Train the remaining epochs (resuming from run_dir's checkpoint) and return the epoch
        history. `validate(trainer, last)` scores held-out data every eval.every epochs and at
        the last; its record joins the epoch's."""
        cfg, history, first = self.cfg, [], 0
        checkpoint = run_dir.load_checkpoint() if run_dir is not None else None
        if checkpoint is not None:
            history, first = self.restore(checkpoint), checkpoint["epoch"] + 1
        for epoch in range(first, cfg.train.epochs):
            try:
                record = self.train_epoch(epoch)
            except TrainingDiverged as exc:
                if run_dir is not None and self.rank == 0:
                    run_dir.fail({"error": str(exc), "history": history, "provenance": provenance(self.device)})
                raise
            last = epoch == cfg.train.epochs - 1
            if validate is not None and self.rank == 0 and (last or (epoch + 1) % cfg.eval.every == 0):
                record.update(validate(self, last))
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
        return history


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
