"""Checks of the loaders' options (image size, choices, fractions)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def _size(image_size: int | Sequence[int]) -> tuple[int, int]:
    """An int (square) or (H, W) -> (H, W)."""
    if isinstance(image_size, (int, np.integer)):
        return int(image_size), int(image_size)
    if len(image_size) == 2 and all(int(s) > 0 for s in image_size):
        return int(image_size[0]), int(image_size[1])
    raise ValueError(f"image_size must be an int or (H, W), got {image_size!r}")


def _choice(option: str, value: Any, valid: Sequence) -> Any:
    if value not in valid:
        raise ValueError(f"{option}={value!r} is not valid; choose from {', '.join(map(repr, valid))}")
    return value


def _fraction(option: str, value: float) -> float:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{option} must be strictly between 0 and 1, got {value}")
    return float(value)
