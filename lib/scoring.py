"""Scoring a trained model on held-out images: the Trainer embeds, `lib.evaluate` computes the
metrics, this module says which metrics a run records and when.

    metrics, emb, loss_side = score(trainer, splits.test, final=True)
"""
from __future__ import annotations

import time

import numpy as np
import torch

from lib import data as data_lib
from lib import evaluate
from lib.augment import shift
from lib.batching import make_batches
from lib.trainer import Trainer

COLLAPSE_RULE = evaluate.COLLAPSE_RULE
FINAL_ONLY = ("nmi", "oneshot_accuracy")  # too slow to compute every epoch
IDENTITY = ((0, 0),)  # test-time views as (dy, dx) pixel shifts: the image as it is


def score(trainer: Trainer, split: data_lib.Split, final: bool) -> tuple[dict, np.ndarray, np.ndarray | None]:
    """Metrics, evaluation embeddings and, when a projector is dropped at test, the embeddings
    the loss sees (else None). `final` adds NMI and Lake's one-shot accuracy."""
    cfg, model = trainer.cfg, trainer.model
    start = time.perf_counter()
    emb, loss_space = trainer.embed_both(split)
    metrics = evaluate.retrieval_metrics(emb, split.labels, recall_ks=tuple(cfg.eval.recall_ks),
                                         nmi=cfg.eval.nmi and final)
    metrics["evaluated_dim"] = int(emb.shape[1])
    metrics.update(evaluate.collapse_geometry(emb, split.labels, metrics["precision@1"], cfg.eval.contraction_threshold))
    loss_side = None
    if model.projector is not None and not model.projector_at_test:
        loss_side = loss_space
        metrics["loss_space_dim"] = int(loss_side.shape[1])
        p1 = evaluate.retrieval_metrics(loss_side, split.labels, recall_ks=(1,), nmi=False)["precision@1"]
        metrics.update({f"loss_space_{k}": v for k, v in
                        evaluate.collapse_geometry(loss_side, split.labels, p1, cfg.eval.contraction_threshold).items()})
    metrics["val_loss"] = validation_loss(trainer, split, loss_space)
    if final and cfg.eval.oneshot:
        metrics["oneshot_accuracy"] = oneshot_accuracy(trainer)
    metrics["eval_seconds"] = time.perf_counter() - start
    return metrics, emb, loss_side


def as_epoch_record(metrics: dict) -> dict:
    """A held-out scoring as the epoch history stores it: val_-prefixed, final-only metrics left out."""
    return {k if k.startswith("val_") else f"val_{k}": v for k, v in metrics.items() if k not in FINAL_ONLY}


@torch.no_grad()
def validation_loss(trainer: Trainer, split: data_lib.Split, loss_space: np.ndarray, max_batches: int = 20) -> float:
    """The training loss (with its miner and sampler) on held-out classes, on fixed batches
    drawn from the split's loss-side embeddings (`Trainer.embed_both`): in eval mode an image's
    embedding does not depend on its batch, so no second forward pass is needed."""
    cfg = trainer.cfg
    state = np.random.get_state()
    np.random.seed(12345)
    try:
        steps = min(max_batches, max(1, len(split) // cfg.train.batch_size))
        batches = make_batches(cfg, split.labels, steps)
    finally:
        np.random.set_state(state)
    embeddings, labels = torch.from_numpy(loss_space), torch.as_tensor(split.labels)
    values = []
    for batch in batches:
        emb, lab = embeddings[batch].to(trainer.device), labels[batch].to(trainer.device)
        tuples = trainer.miner(emb, lab) if trainer.miner is not None else None
        values.append(trainer.loss_fn(emb, lab, tuples))
    return float(torch.stack(values).mean())


def embed_views(trainer: Trainer, images: np.ndarray, views=IDENTITY) -> np.ndarray:
    """Evaluation embeddings of uint8 images, each the normalised mean of its L2-normalised
    embeddings under the test-time views ((dy, dx) pixel shifts); one view is the plain embedding."""
    if tuple(map(tuple, views)) == IDENTITY:
        return _in_batches(trainer, images)
    unit = [_unit(_in_batches(trainer, shift(images, dy, dx))) for dy, dx in views]
    return _unit(np.mean(unit, axis=0))


def _in_batches(trainer: Trainer, images: np.ndarray) -> np.ndarray:
    size = trainer.cfg.eval.batch_size
    return np.concatenate([trainer.embed_array(images[i:i + size]) for i in range(0, max(len(images), 1), size)])


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def oneshot_accuracy(trainer: Trainer, per_run: bool = False,
                     views=IDENTITY) -> float | tuple[float, np.ndarray]:
    """Lake's 20 within-alphabet 20-way one-shot runs, scored by nearest support image (with
    `per_run`, also each run's accuracy), each image embedded under the test-time `views`."""
    size = trainer.cfg.data.image_size if isinstance(trainer.cfg.data.image_size, int) else 28
    runs = data_lib.load_oneshot_runs(trainer.cfg.data.root, image_size=size or 28)
    support = [embed_views(trainer, run.support, views) for run in runs]
    query = [embed_views(trainer, run.query, views) for run in runs]
    return evaluate.oneshot_accuracy(support, query, [r.answers for r in runs], per_run=per_run)
