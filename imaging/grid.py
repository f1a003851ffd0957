"""Side-by-side pictures of one restoration: label | input | recon [| progress frames], with column labels."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont


def fit_nearest(image: torch.Tensor, size: int) -> torch.Tensor:
    """(C, h, w) shown at ``size`` x ``size``: nearest-neighbour upsampling by an integer factor (a super-resolution
    measurement keeps its visible pixels), any other size by nearest interpolation."""
    if image.shape[-2:] == (size, size):
        return image
    return F.interpolate(image[None].float(), size=(size, size), mode="nearest")[0].to(image.dtype)


def image_row(images: Sequence[torch.Tensor], size: int | None = None, gap: int = 2, fill: float = 1.0) -> torch.Tensor:
    """Images (C, h, w) in [-1, 1] side by side at ``size`` (default the first one's height), separated by
    ``gap`` columns of ``fill`` (1.0 = white)."""
    if not images:
        raise ValueError("image_row needs at least one image")
    size = size if size is not None else images[0].shape[-2]
    tiles = [fit_nearest(x.detach().float().cpu(), size) for x in images]
    channels = tiles[0].shape[0]
    spacer = torch.full((channels, size, gap), fill)
    parts: list[torch.Tensor] = []
    for k, tile in enumerate(tiles):
        if k:
            parts.append(spacer)
        parts.append(tile)
    return torch.cat(parts, dim=-1)


#: height in pixels of the label strip above a restoration grid
LABEL_HEIGHT = 14
#: column labels, longest first: the first that fits the column is drawn
COLUMN_LABELS = (("ground truth", "truth", "GT"), ("input", "y"), ("recon", "x0"))
PROGRESS_LABELS = ("progress (x0_hat) ->", "progress", "prog", "")


def label_strip(columns: Sequence[tuple[int, int, Sequence[str]]], width: int, height: int = LABEL_HEIGHT):
    """A white (3, height, width) strip in [-1, 1] with, for each ``(x0, x1, choices)``, the first text of
    ``choices`` that fits between columns ``x0`` and ``x1`` drawn centred in black (PIL's default font)."""
    strip = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(strip)
    font = ImageFont.load_default()
    for x0, x1, choices in columns:
        for text in choices:
            left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
            if right - left <= x1 - x0:
                x = x0 + (x1 - x0 - (right - left)) // 2 - left
                draw.text((x, (height - (bottom - top)) // 2 - top), text, fill="black", font=font)
                break
    pixels = torch.from_numpy(np.asarray(strip).copy()).permute(2, 0, 1).float()
    return pixels / 127.5 - 1.0


def restoration_grid(
    label: torch.Tensor,
    measurement: torch.Tensor,
    recon: torch.Tensor,
    progress: Sequence[torch.Tensor] = (),
    gap: int = 2,
    labels: bool = True,
) -> torch.Tensor:
    """label | input | recon, then the progress frames (if any), all at the label's size, under a strip naming
    the columns (``labels=False``: no strip).

    The measurement is shown with ``fit_nearest``: a super-resolution ``y`` (smaller than the image) is upsampled
    with nearest; an inpainting ``y`` is the masked image itself.
    """
    size = label.shape[-1]
    row = image_row([label, measurement, recon, *progress], size=size, gap=gap)
    if not labels:
        return row
    step = size + gap
    columns = [(k * step, k * step + size, choices) for k, choices in enumerate(COLUMN_LABELS)]
    if progress:
        columns.append((3 * step, row.shape[-1], PROGRESS_LABELS))
    strip = label_strip(columns, row.shape[-1])
    return torch.cat([strip.to(row.dtype), row], dim=-2)


def image_grid(rows: Sequence[Sequence[torch.Tensor]], size: int | None = None, gap: int = 2, fill: float = 1.0):
    """Rows of images (each row as in ``image_row``, all rows the same length) stacked top to bottom."""
    if not rows:
        raise ValueError("image_grid needs at least one row")
    lines = [image_row(row, size=size, gap=gap, fill=fill) for row in rows]
    if len({line.shape for line in lines}) != 1:
        raise ValueError("image_grid rows must hold the same number of images")
    spacer = torch.full((lines[0].shape[0], gap, lines[0].shape[-1]), fill)
    parts: list[torch.Tensor] = []
    for k, line in enumerate(lines):
        if k:
            parts.append(spacer)
        parts.append(line)
    return torch.cat(parts, dim=-2)
