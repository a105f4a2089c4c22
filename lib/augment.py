"""Batch-level augmentation on tensors, on CPU or CUDA.

One `affine_grid` + `grid_sample` call warps a whole batch (each sample with its own random
scale, shift, rotation and flip), which for small images is far faster than per-image PIL
transforms. Use it on image channels only, before `to_float` appends the extra constant
channel, so that channel is never warped or jittered:

    x = to_float(augment(split.read(idx)), extra_channel, mean, std)
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def to_float(
    batch_uint8: torch.Tensor,
    extra_channel: torch.Tensor | np.ndarray | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> torch.Tensor:
    """(B, C, H, W) uint8 (or float already in [0, 1]) -> float, normalised by mean/std if
    given, with the per-sample constant `extra_channel` (B,) appended as a last channel."""
    x = batch_uint8.float().div_(255) if batch_uint8.dtype == torch.uint8 else batch_uint8.float()
    if mean is not None:
        x = x - torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    if std is not None:
        x = x / torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    if extra_channel is not None:
        extra = torch.as_tensor(extra_channel, dtype=x.dtype, device=x.device).view(-1, 1, 1, 1)
        x = torch.cat([x, extra.expand(-1, 1, *x.shape[-2:])], dim=1)
    return x


class BatchAugment(torch.nn.Module):
    """Per-sample random affine warp and brightness/contrast jitter of a batch.

    scale: range of the fraction of the input's side that the output shows (< 1 zooms in like
    a random crop, > 1 zooms out); translate: largest shift as a fraction of the image size;
    rotate: largest angle in degrees; flip: horizontal flip with probability 1/2; brightness,
    contrast: largest relative change. Out-of-image pixels are 0. The output is float in [0, 1].
    """

    def __init__(
        self,
        *,
        scale: Sequence[float] = (1.0, 1.0),
        translate: float = 0.0,
        rotate: float = 0.0,
        flip: bool = False,
        brightness: float = 0.0,
        contrast: float = 0.0,
    ) -> None:
        super().__init__()
        low, high = (float(s) for s in scale)
        if not 0 < low <= high:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high, got {scale}")
        if min(translate, rotate, brightness, contrast) < 0:
            raise ValueError("translate, rotate, brightness and contrast must be >= 0")
        self.scale, self.translate, self.rotate, self.flip = (low, high), float(translate), float(rotate), bool(flip)
        self.brightness, self.contrast = float(brightness), float(contrast)

    @property
    def warps(self) -> bool:
        return self.scale != (1.0, 1.0) or self.translate > 0 or self.rotate > 0 or self.flip

    def extra_repr(self) -> str:
        return (f"scale={self.scale}, translate={self.translate}, rotate={self.rotate}, flip={self.flip}, "
                f"brightness={self.brightness}, contrast={self.contrast}")

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, C, H, W) uint8 or float in [0, 1] -> float (B, C, H, W) in [0, 1]."""
        x = x.float().div_(255) if x.dtype == torch.uint8 else x
        if not (self.warps or self.brightness or self.contrast):
            return x
        # Every draw is made whatever is enabled, so a seeded generator gives the same
        # stream of numbers for the same batch size.
        device = generator.device if generator is not None else x.device
        u = torch.rand(len(x), 7, generator=generator, device=device).to(device=x.device, dtype=x.dtype)
        if self.warps:
            x = self._warp(x, u)
        if self.brightness or self.contrast:
            x = x * (1 + (2 * u[:, 5] - 1) * self.brightness).view(-1, 1, 1, 1)
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = ((x - mean) * (1 + (2 * u[:, 6] - 1) * self.contrast).view(-1, 1, 1, 1) + mean).clamp(0, 1)
        return x

    def _warp(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        low, high = self.scale
        scale = low + (high - low) * u[:, 0]
        angle = (2 * u[:, 1] - 1) * math.radians(self.rotate)
        flip = torch.where(u[:, 4] < 0.5, -1.0, 1.0) if self.flip else torch.ones_like(scale)
        cos, sin = torch.cos(angle), torch.sin(angle)
        # affine_grid maps output to input in [-1, 1] coordinates; conjugating by the aspect
        # ratio keeps a rotation of a non-square image a rotation (not a shear)
        theta = torch.stack([
            torch.stack([scale * cos * flip, -scale * sin * height / width, 2 * self.translate * (2 * u[:, 2] - 1)], 1),
            torch.stack([scale * sin * flip * width / height, scale * cos, 2 * self.translate * (2 * u[:, 3] - 1)], 1),
        ], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def shift(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Images (..., H, W) moved by whole pixels, down by dy and right by dx; what enters is 0, as
    out-of-image pixels are in `BatchAugment`. For test-time views."""
    height, width = images.shape[-2:]
    if abs(dy) >= height or abs(dx) >= width:
        raise ValueError(f"a shift of ({dy}, {dx}) px leaves nothing of a {height}x{width} image")
    out = np.zeros_like(images)
    out[..., max(dy, 0):height + min(dy, 0), max(dx, 0):width + min(dx, 0)] = \
        images[..., max(-dy, 0):height + min(-dy, 0), max(-dx, 0):width + min(-dx, 0)]
    return out


AUGMENT_PRESETS: dict[str, dict] = {
    "none": {},
    "omniglot": {"scale": (0.9, 1.1), "translate": 0.1, "rotate": 10.0},
    # the beluga blog's random crop, brightness and contrast; no flip (it swaps left and right)
    "beluga": {"scale": (0.85, 1.0), "translate": 0.05, "brightness": 0.2, "contrast": 0.2},
    # random-resized-crop-like, for CUB, Cars and SOP
    "natural": {"scale": (0.5, 1.0), "translate": 0.1, "flip": True},
}


def make_augment(name_or_dict: str | dict | None) -> BatchAugment:
    """A BatchAugment from a preset name, or from its keyword arguments; None means 'none'."""
    if name_or_dict is None:
        return BatchAugment()
    if isinstance(name_or_dict, str):
        if name_or_dict not in AUGMENT_PRESETS:
            raise ValueError(f"unknown augmentation preset {name_or_dict!r}; presets: {', '.join(AUGMENT_PRESETS)}")
        return BatchAugment(**AUGMENT_PRESETS[name_or_dict])
    valid = ("scale", "translate", "rotate", "flip", "brightness", "contrast")
    unknown = sorted(set(name_or_dict) - set(valid))
    if unknown:
        raise TypeError(f"unknown augmentation option(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
    return BatchAugment(**name_or_dict)
