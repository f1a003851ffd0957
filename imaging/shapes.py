"""A procedural image distribution with clear global structure, reproducible offline.

Each image is a function of one integer seed: a background (two-colour linear gradient, sometimes with a
stripe or checker texture) and 2-5 overlapping shapes (ellipses, rotated rectangles, triangles, rings),
each with its own colour and linear shading, drawn at 4x resolution and area-downsampled (anti-aliased).
Occlusions, edges, gradients and textures give a diffusion prior structure to learn and a restoration
something to recover (a shape's hidden part, a sharp edge), while staying small enough to train on a CPU.

Splits are disjoint seed ranges: ``train`` uses seeds [0, 10^6), ``test`` uses [10^9, 10^9 + 10^6).
The test images are therefore never seen in training.

``render_shapes_labelled`` also returns what the generator drew (``ShapeLabels``: background texture, number
of shapes, each shape's kind and hue): supervision for a feature network of this domain (evaluation's KID/FID).
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw

SPLIT_OFFSETS = {"train": 0, "test": 1_000_000_000}
TEXTURES = ("plain", "stripes", "checker")
KINDS = ("ellipse", "rectangle", "triangle", "ring")
HUE_BINS = 6
SPLIT_SIZE = 1_000_000
_SUPERSAMPLE = 4


def _colour(rng: np.random.Generator) -> np.ndarray:
    """A random, fairly saturated RGB colour in [0, 1] (HSV with s, v away from 0)."""
    h, s, v = rng.uniform(0, 1), rng.uniform(0.45, 1.0), rng.uniform(0.35, 1.0)
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


def _linear_field(size: int, angle: float) -> np.ndarray:
    """A linear ramp in [0, 1] across the image along direction ``angle``."""
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1) - 0.5
    ramp = xx * math.cos(angle) + yy * math.sin(angle)
    return (ramp - ramp.min()) / (ramp.max() - ramp.min() + 1e-12)


def _background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, str]:
    c0, c1 = _colour(rng) * 0.8, _colour(rng) * 0.8
    ramp = _linear_field(size, rng.uniform(0, 2 * math.pi))[..., None]
    image = c0 * (1 - ramp) + c1 * ramp
    texture = rng.uniform()
    kind = "plain" if texture >= 0.35 else "stripes" if texture < 0.2 else "checker"
    if texture < 0.35:
        yy, xx = np.mgrid[0:size, 0:size] / size
        angle, freq = rng.uniform(0, math.pi), rng.uniform(3, 8)
        if texture < 0.2:  # stripes
            pattern = 0.5 + 0.5 * np.sign(np.sin(2 * math.pi * freq * (xx * math.cos(angle) + yy * math.sin(angle))))
        else:  # checker
            pattern = (np.floor(xx * freq) + np.floor(yy * freq)) % 2
        image = image * (1 - 0.25 * pattern[..., None]) + 0.25 * pattern[..., None] * _colour(rng)
    return image, kind


def _shape_polygon(rng: np.random.Generator, size: int) -> tuple[str, list[tuple[float, float]], float]:
    kind = rng.choice(list(KINDS), p=[0.35, 0.3, 0.2, 0.15])
    cx, cy = rng.uniform(0.1, 0.9) * size, rng.uniform(0.1, 0.9) * size
    radius = rng.uniform(0.12, 0.35) * size
    angle = rng.uniform(0, 2 * math.pi)
    if kind in ("ellipse", "ring"):
        aspect = rng.uniform(0.5, 1.0)
        theta = np.linspace(0, 2 * math.pi, 64, endpoint=False)
        pts = np.stack([radius * np.cos(theta), radius * aspect * np.sin(theta)], 1)
    elif kind == "rectangle":
        w, h = radius, radius * rng.uniform(0.4, 1.0)
        pts = np.array([[-w, -h], [w, -h], [w, h], [-w, h]])
    else:
        theta = np.array([0, 2 * math.pi / 3, 4 * math.pi / 3]) + rng.uniform(-0.3, 0.3, 3)
        pts = np.stack([radius * np.cos(theta), radius * np.sin(theta)], 1)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    pts = pts @ rot.T + np.array([cx, cy])
    hole = rng.uniform(0.35, 0.6) if kind == "ring" else 0.0
    return str(kind), [tuple(p) for p in pts.tolist()], hole


@dataclass(frozen=True)
class ShapeLabels:
    """What the generator drew for one image; shapes listed bottom to top (the last one is never occluded)."""

    texture: str
    kinds: tuple[str, ...]
    hues: tuple[int, ...]  # hue sextant of each shape's base colour, 0..HUE_BINS-1

    @property
    def count(self) -> int:
        return len(self.kinds)


def _hue_bin(colour: np.ndarray) -> int:
    return min(int(colorsys.rgb_to_hsv(*colour.tolist())[0] * HUE_BINS), HUE_BINS - 1)


def render_shapes_labelled(seed: int, size: int = 32) -> tuple[np.ndarray, ShapeLabels]:
    """The image of ``seed`` (float32 (size, size, 3) in [0, 1]) and its ``ShapeLabels``."""
    rng = np.random.default_rng(seed)
    big = size * _SUPERSAMPLE
    image, texture = _background(rng, big)
    kinds, hues = [], []
    for _ in range(int(rng.integers(2, 6))):
        kind, polygon, hole = _shape_polygon(rng, big)
        mask_img = Image.new("L", (big, big), 0)
        draw = ImageDraw.Draw(mask_img)
        draw.polygon(polygon, fill=255)
        if hole > 0:
            centre = np.mean(polygon, axis=0)
            inner = [tuple(centre + hole * (np.array(p) - centre)) for p in polygon]
            draw.polygon(inner, fill=0)
        mask = np.asarray(mask_img, dtype=np.float32)[..., None] / 255.0
        shade = _linear_field(big, rng.uniform(0, 2 * math.pi))[..., None]
        colour = _colour(rng)
        fill = colour * (1 - 0.35 * shade) + 0.35 * shade * np.clip(colour + 0.3, 0, 1)
        image = image * (1 - mask) + fill * mask
        kinds.append(kind)
        hues.append(_hue_bin(colour))
    # area downsampling = exact average of each 4x4 block (anti-aliased edges)
    image = image.reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE, 3).mean(axis=(1, 3))
    return np.clip(image, 0, 1).astype(np.float32), ShapeLabels(texture, tuple(kinds), tuple(hues))


def render_shapes(seed: int, size: int = 32) -> np.ndarray:
    """The image of ``seed``: float32 array (size, size, 3) in [0, 1]."""
    return render_shapes_labelled(seed, size)[0]


def shapes_seed(split: str, index: int) -> int:
    if split not in SPLIT_OFFSETS:
        raise ValueError(f"unknown split {split!r}; valid: {sorted(SPLIT_OFFSETS)}")
    if not 0 <= index < SPLIT_SIZE:
        raise IndexError(f"index {index} outside [0, {SPLIT_SIZE})")
    return SPLIT_OFFSETS[split] + index


class ShapesDataset(torch.utils.data.Dataset):
    """``n`` images of a split as (3, size, size) tensors in [-1, 1]; image ``i`` is ``render_shapes(seed_i)``."""

    def __init__(self, split: str = "train", n: int = 50_000, size: int = 32, start: int = 0):
        if n < 1 or start < 0 or start + n > SPLIT_SIZE:
            raise ValueError(f"need 0 <= start and start + n <= {SPLIT_SIZE}, got start={start}, n={n}")
        self.split, self.n, self.size, self.start = split, n, size, start

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < self.n:
            raise IndexError(index)
        image = render_shapes(shapes_seed(self.split, self.start + index), self.size)
        return torch.from_numpy(image).permute(2, 0, 1) * 2 - 1

    def tensor(self) -> torch.Tensor:
        """All images stacked, (n, 3, size, size) in [-1, 1]."""
        return torch.stack([self[i] for i in range(self.n)])
