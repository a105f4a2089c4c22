"""Image decoding: one file -> a uint8 (C, H, W) array at the target size, and Omniglot's
ink masks -> resized uint8 arrays."""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from lib.data.errors import CorruptDataError, DataNotFoundError


def _decode(
    source: Path | bytes,
    size: tuple[int, int],
    channels: int,
    resize: str,
    rotate: int = 0,
    name: str | None = None,
) -> np.ndarray:
    """One image file -> uint8 (C, H, W) fitted to `size`; `rotate` is 90 or 270 degrees
    counter-clockwise, applied before fitting."""
    height, width = size
    mode = "L" if channels == 1 else "RGB"
    where = name or str(source)
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            w, h = img.size[::-1] if rotate else img.size
            scale = (min if resize == "pad" else max)(width / w, height / h)
            need = (math.ceil(w * scale), math.ceil(h * scale))
            # JPEGs decode directly at 1/2, 1/4 or 1/8 scale: the bulk of the speed-up for photos
            img.draft(mode, need[::-1] if rotate else need)
            img = img.convert(mode)
            if rotate:
                img = img.transpose(Image.Transpose.ROTATE_90 if rotate == 90 else Image.Transpose.ROTATE_270)
            w, h = img.size
            if resize == "pad":
                scale = min(width / w, height / h)
                fitted = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR)
                img = Image.new(mode, (width, height))
                img.paste(fitted, ((width - fitted.width) // 2, (height - fitted.height) // 2))
            else:
                scale = max(width / w, height / h)
                # width / (width / w) can round to just above w: a negative box PIL refuses
                crop_w, crop_h = min(w, width / scale), min(h, height / scale)
                box = ((w - crop_w) / 2, (h - crop_h) / 2, (w + crop_w) / 2, (h + crop_h) / 2)
                img = img.resize((width, height), Image.Resampling.BILINEAR, box=box)
    except FileNotFoundError as e:
        raise DataNotFoundError(f"{where}: image file missing; copy or extract the data set again") from e
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise CorruptDataError(
            f"{where}: unreadable image ({e}); delete the data set's files and download or extract them again"
        ) from e
    arr = np.asarray(img)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _resize_ink(ink: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """bool (N, h, w) ink masks -> uint8 (N, 1, H, W), ink 255, antialiased, in torch batches."""
    out = np.empty((len(ink), 1, *size), dtype=np.uint8)
    for start in range(0, len(ink), 4096):
        x = torch.from_numpy(ink[start : start + 4096]).to(torch.float32).mul_(255).unsqueeze(1)
        if x.shape[-2:] != size:
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        out[start : start + len(x)] = x.round_().clamp_(0, 255).to(torch.uint8).numpy()
    return out


def _png_ink(data: bytes) -> np.ndarray:
    """Omniglot PNG (black ink on white) -> bool mask, True = ink."""
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("L")) < 128
