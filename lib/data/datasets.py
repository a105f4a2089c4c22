"""Splits and data sets: `Split` (images or file paths with contiguous labels), `Dataset`
(train/test with disjoint classes), `OneShotRun`, and the class-disjoint split."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from lib.data.decode import _decode


def _as_index(idx: Any, n: int) -> np.ndarray:
    """Any of int, slice, bool mask, sequence, array or tensor -> int64 positions."""
    if isinstance(idx, slice):
        return np.arange(n)[idx]
    if isinstance(idx, torch.Tensor):
        idx = idx.cpu().numpy()
    out = np.asarray(idx)
    if out.dtype == bool:
        return np.flatnonzero(out)
    return out.reshape(-1).astype(np.int64)


@dataclass(eq=False)
class Split:
    """Images and labels of one side of a data set; labels are contiguous 0..C-1."""

    labels: np.ndarray
    meta: pd.DataFrame
    images: np.ndarray | None
    paths: list[Path] | None
    image_size: tuple[int, int]
    channels: int
    extra_channel: np.ndarray | None = None
    resize: str = "pad"

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if (self.images is None) == (self.paths is None):
            raise ValueError("a Split holds either images or paths, not both or neither")
        held = self.images if self.images is not None else self.paths
        if not len(self.labels) == len(self.meta) == len(held):
            raise ValueError(
                f"labels ({len(self.labels)}), meta ({len(self.meta)}) and images ({len(held)}) differ in length"
            )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) else 0

    def read(self, idx: Any) -> torch.Tensor:
        """uint8 (len(idx), C, H, W), gathered from memory or decoded from the files."""
        idx = _as_index(idx, len(self))
        if self.images is not None:
            return torch.from_numpy(self.images[idx])
        if len(idx) == 0:
            return torch.empty((0, self.channels, *self.image_size), dtype=torch.uint8)
        return torch.from_numpy(
            np.stack([_decode(self.paths[i], self.image_size, self.channels, self.resize) for i in idx])
        )

    def subset(self, idx: Any) -> Split:
        """The rows `idx`, labels re-made contiguous (in the order of the old labels)."""
        idx = _as_index(idx, len(self))
        labels = np.unique(self.labels[idx], return_inverse=True)[1].reshape(-1).astype(np.int64)
        return Split(
            labels=labels,
            meta=self.meta.iloc[idx].reset_index(drop=True).assign(label=labels),
            images=self.images[idx] if self.images is not None else None,
            paths=[self.paths[i] for i in idx] if self.paths is not None else None,
            image_size=self.image_size,
            channels=self.channels,
            extra_channel=self.extra_channel[idx] if self.extra_channel is not None else None,
            resize=self.resize,
        )


@dataclass(eq=False)
class Dataset:
    name: str
    train: Split
    test: Split  # classes disjoint from train
    info: dict


@dataclass(eq=False)
class OneShotRun:
    """One of Lake's 20-way one-shot runs: match each query to the support image of its class."""

    support: np.ndarray  # uint8 (20, 1, H, W), one image per class
    query: np.ndarray  # uint8 (20, 1, H, W)
    answers: np.ndarray  # (20,) index into support of each query's class


def class_disjoint_split(
    split: Split, fraction: float, seed: int, group: str | None = None
) -> tuple[Split, Split]:
    """Split by class (or by the meta column `group`, e.g. 'alphabet'): the second part gets
    about `fraction` of the classes (groups), at least one and never all when 0 < fraction < 1."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    keys = split.meta[group].to_numpy() if group is not None else split.labels
    units = np.unique(keys)
    n_second = round(fraction * len(units))
    if 0.0 < fraction < 1.0 and len(units) > 1:
        n_second = min(max(n_second, 1), len(units) - 1)
    chosen = np.random.default_rng(seed).permutation(units)[:n_second]
    in_second = np.isin(keys, chosen)
    return split.subset(~in_second), split.subset(in_second)


def _counts(train: Split, test: Split) -> dict:
    return {
        "train_images": len(train),
        "train_classes": train.num_classes,
        "test_images": len(test),
        "test_classes": test.num_classes,
    }
