"""Reading images into [-1, 1] tensors and writing them back as 8-bit PNGs, atomically.

Conventions:
- ``load_image`` converts any PIL mode to RGB (``to_rgb``), resizes the shorter side to ``size`` and centre-crops
  (``resize_center_crop``) with PIL's bicubic filter, which is antialiased when downsampling (its support grows
  with the scale factor) and plain bicubic when upsampling. PSLD's reference upsamples 256 -> 512 with nearest
  (**quirk**); we use bicubic in both directions.
- ``save_image`` maps [-1, 1] -> [0, 255] with a fixed rule: clamp to [-1, 1], (x + 1) * 127.5, round half to
  even (``torch.round``), uint8. DPS normalises each image by its own min and max (**quirk**: PSNR computed from
  its files is then wrong); the fixed mapping makes files and metrics agree.
- Every write goes to a temporary file in the destination folder and is moved into place with ``os.replace``,
  so a crash never leaves a truncated file under the final name.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from PIL import Image

#: PIL filter used for every resize of data (down: antialiased bicubic; up: bicubic)
RESAMPLE = Image.Resampling.BICUBIC
#: colour transparent pixels are composited over (white)
DEFAULT_BACKGROUND = (255, 255, 255)


# -- atomic writes ------------------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success it replaces ``path`` (``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        # mkstemp makes the file owner-only (0600); give it the permissions a plain open() would have
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[Any]], None], mode: str = "w") -> Path:
    """Call ``write(file)`` on a temporary file, flush and fsync it, then move it onto ``path``."""
    with atomic_path(path) as tmp, open(tmp, mode) as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(text))


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    return write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


# -- conversions --------------------------------------------------------------------------------------------
def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> (H, W, 3) uint8: clamp, (x + 1) * 127.5, round to nearest (half to even)."""
    if image.ndim != 3:
        raise ValueError(f"expected one image (C, H, W), got shape {tuple(image.shape)}")
    x = image.detach().to("cpu", torch.float64).clamp(-1, 1)
    x = torch.round((x + 1) * 127.5).to(torch.uint8)
    return x.permute(1, 2, 0).numpy()


def from_uint8(array: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [-1, 1] (the inverse of ``to_uint8`` on its outputs)."""
    return torch.from_numpy(np.array(array, dtype=np.uint8)).permute(2, 0, 1).float() / 127.5 - 1


def quantize(image: torch.Tensor) -> torch.Tensor:
    """What a saved PNG holds, read back: ``from_uint8(to_uint8(image))`` for (C, H, W) or (B, C, H, W)."""
    if image.ndim == 4:
        return torch.stack([quantize(x) for x in image])
    return from_uint8(to_uint8(image)).to(image.dtype)


def to_rgb(image: Image.Image, background: Sequence[int] = DEFAULT_BACKGROUND) -> Image.Image:
    """Any PIL image as 8-bit RGB.

    Alpha (RGBA, LA, PA, P with a transparency entry) is composited over ``background`` (default white):
    out = alpha * rgb + (1 - alpha) * background. Opaque images are unchanged, which is what DPS's
    ``convert("RGB")`` gives for them; for transparent pixels that call keeps whatever colour the file stores
    behind the alpha, which is arbitrary, so we do not. CMYK, YCbCr, L, 1 and P go through PIL's ``convert``;
    16-bit and float greyscale (I;16, I, F) are scaled from their value range to 8 bits first.
    """
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        high = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(np.round(array / high * 255), 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*(int(c) for c in background), 255))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return image.convert("RGB")


def resize_center_crop(image: Image.Image, size: int, resample: Image.Resampling = RESAMPLE) -> Image.Image:
    """Resize so the shorter side is ``size`` (``resample``), then crop the central ``size`` x ``size`` square."""
    width, height = image.size
    if (width, height) != (size, size):
        scale = size / min(width, height)
        new = (max(size, round(width * scale)), max(size, round(height * scale)))
        if new != (width, height):
            image = image.resize(new, resample)
        width, height = image.size
        left, top = (width - size) // 2, (height - size) // 2
        image = image.crop((left, top, left + size, top + size))
    return image


def load_image(
    path: str | os.PathLike,
    size: int | None = None,
    background: Sequence[int] = DEFAULT_BACKGROUND,
    resample: Image.Resampling = RESAMPLE,
) -> torch.Tensor:
    """The image at ``path`` as a (3, size, size) float32 tensor in [-1, 1] (``size=None``: as stored), resized
    with ``resample`` (PSLD's reference upsamples with nearest: ``Image.Resampling.NEAREST``).

    Raises whatever PIL raises for unreadable files (``OSError`` / ``PIL.UnidentifiedImageError``).
    """
    with Image.open(path) as f:
        f.load()
        image = to_rgb(f, background)
    if size is not None:
        image = resize_center_crop(image, int(size), resample)
    return from_uint8(np.asarray(image, dtype=np.uint8))


def resize_tensor(image: torch.Tensor, size: int) -> torch.Tensor:
    """An 8-bit-quantised (C, H, W) image in [-1, 1] resized to ``size`` through PIL (same filter as the data)."""
    if image.shape[-1] == size and image.shape[-2] == size:
        return image
    pil = Image.fromarray(to_uint8(image)).resize((size, size), RESAMPLE)
    return from_uint8(np.asarray(pil))


# -- writing ------------------------------------------------------------------------------------------------
def save_image(image: torch.Tensor, path: str | os.PathLike) -> Path:
    """Write a (3, H, W) (or (1, 3, H, W)) image in [-1, 1] as an 8-bit PNG at ``path``, atomically."""
    if image.ndim == 4:
        if image.shape[0] != 1:
            raise ValueError(f"save_image writes one image; got a batch of {image.shape[0]}")
        image = image[0]
    array = to_uint8(image)
    if array.shape[-1] == 1:
        array = array[..., 0]
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
    return Path(path)


def read_png(path: str | os.PathLike) -> torch.Tensor:
    """A PNG written by ``save_image`` as (3, H, W) in [-1, 1] (no resizing)."""
    return load_image(path, size=None)
