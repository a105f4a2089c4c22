"""Index batches for an epoch (class-balanced or shuffled) and the loader that reads them."""
from __future__ import annotations

import math

import numpy as np
import torch
from pytorch_metric_learning import samplers

from lib import data as data_lib
from lib.config import ConfigError, RunConfig


def make_batches(cfg: RunConfig, labels: np.ndarray, steps: int) -> list[np.ndarray]:
    """Index batches for one epoch, drawn from numpy's global RNG (seeded per epoch).

    A set with too few classes for a full m-per-class batch (a small held-out split, a
    Divide-and-Conquer cluster) gets smaller batches: every class it has, m images each."""
    bs = cfg.train.batch_size
    if cfg.sampler.name == "m_per_class":
        m = cfg.sampler.m
        bs = min(bs, m * len(np.unique(labels)))
        sampler = samplers.MPerClassSampler(labels, m=m, batch_size=bs, length_before_new_iter=steps * bs)
        order = np.fromiter(iter(sampler), dtype=np.int64)
    else:  # "shuffle"; the schema admits no other name
        bs = min(bs, len(labels))
        reps = math.ceil(steps * bs / len(labels))
        order = np.concatenate([np.random.permutation(len(labels)) for _ in range(reps)])
    return [order[i * bs:(i + 1) * bs] for i in range(steps)]


def check_sampler(cfg: RunConfig, labels: np.ndarray) -> None:
    """A training batch must fit the training split: `make_batches` would otherwise cut it, and the
    run would be cached under a batch size it never trained with. And pml's MPerClassSampler draws
    with replacement from a class smaller than m: a few such classes are the data (belugas seen
    once); most classes smaller than m is a setting error."""
    bs, where = cfg.train.batch_size, f"the training split of {cfg.data.name}"
    if cfg.sampler.name != "m_per_class":
        if bs > len(labels):
            raise ConfigError(f"train.batch_size: {bs} is more than the {len(labels)} images of {where}; "
                              f"set train.batch_size <= {len(labels)}")
        return
    classes, m = len(np.unique(labels)), cfg.sampler.m
    if bs > m * classes:
        raise ConfigError(f"train.batch_size: {bs} is more than one m_per_class batch can hold on {where} "
                          f"({classes} classes x sampler.m {m} = {m * classes} images); "
                          f"set train.batch_size <= {m * classes}")
    sizes = np.bincount(labels)[np.unique(labels)]
    typical = int(np.median(sizes))
    if cfg.sampler.m > typical:
        raise ConfigError(f"sampler.m is {cfg.sampler.m} but the median training class of '{cfg.data.name}' "
                          f"has {typical} images (largest {int(sizes.max())}), so pml's MPerClassSampler "
                          f"would repeat images in most classes of a batch; set sampler.m <= {typical}")


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
    """(uint8 images, extra channel or None, labels) per batch; in-memory splits are sliced directly."""
    reader = _BatchReader(split, batches)
    if split.images is not None or workers == 0:
        return (reader[i] for i in range(len(reader)))
    return torch.utils.data.DataLoader(reader, batch_size=None, shuffle=False, num_workers=workers,
                                       pin_memory=pin, persistent_workers=False)
