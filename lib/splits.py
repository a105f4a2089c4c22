"""Which images a run trains, validates and is tested on: class-disjoint splits of a data set."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from lib import data as data_lib
from lib.config import RunConfig


@dataclass
class Splits:
    train: data_lib.Split
    val: data_lib.Split  # what is evaluated during training (the test split when val_fraction = 0)
    test: data_lib.Split
    in_chans: int
    val_each_epoch: data_lib.Split | None = None  # a class-disjoint cut of val (eval.max_val_images)

    def __post_init__(self):
        if self.val_each_epoch is None:
            self.val_each_epoch = self.val

    @property
    def validates_on_test(self) -> bool:
        """The last epoch's validation would be the final test itself (scored once, not twice)."""
        return self.val_each_epoch is self.test


@lru_cache(maxsize=8)
def _load(name: str, root: str | None, image_size, options: tuple) -> data_lib.Dataset:
    return data_lib.load_dataset(name, root=root, image_size=image_size, **dict(options))


def first_classes(split: data_lib.Split, max_images: int | None) -> data_lib.Split:
    """The first classes (by label) holding at most max_images images: a class-disjoint cut."""
    if not max_images or len(split) <= max_images:
        return split
    counts = np.bincount(split.labels)
    keep = np.flatnonzero(np.cumsum(counts) <= max_images)
    if len(keep) < 2:
        keep = np.arange(2)
    return split.subset(np.flatnonzero(np.isin(split.labels, keep)))


def load_splits(cfg: RunConfig) -> Splits:
    d = cfg.data
    size = tuple(d.image_size) if isinstance(d.image_size, list) else d.image_size
    ds = _load(d.name, d.root, size, tuple(sorted((k, _freeze(v)) for k, v in d.options.items())))
    train, test = first_classes(ds.train, d.max_train_images), first_classes(ds.test, d.max_test_images)
    val = test
    if d.val_fraction > 0:
        train, val = data_lib.class_disjoint_split(train, d.val_fraction, seed=0)
    extra = 1 if train.extra_channel is not None else 0
    return Splits(train, val, test, train.channels + extra, first_classes(val, cfg.eval.max_val_images))


def _freeze(value):
    return tuple(value) if isinstance(value, list) else value
