"""A folder of images as an ordered, shardable list of samples.

- Files are taken in sorted order of their path relative to the folder (``recursive=True`` walks
  sub-folders); names starting with ``.`` are ignored.
- Each candidate's header is opened with PIL (cheap: pixels are not decoded) so that files that are not images,
  or are corrupt, are skipped with a warning and counted (``ImageFolder.skipped``), never fatal. A file whose
  header reads but whose pixels do not is found when it is loaded, and reported by the caller.
- ``min_size`` drops images whose shorter side is smaller (DPS's ImageNet convention drops images under 256 px).
- ``limit`` keeps the first N usable images; the k-th of them (0-based) has global index k.
- ``shard`` / ``num_shards``: image k belongs to shard k % num_shards and keeps its global index, so shards
  together cover the set exactly once and each image's seeds (derived from its index) do not depend on sharding.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from .io import DEFAULT_BACKGROUND, RESAMPLE, load_image

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Skipped:
    """A file that is not part of the set, and why."""

    name: str
    reason: str


@dataclass(frozen=True)
class FileSample:
    """One image of a folder: ``index`` is its global position in the (unsharded) set."""

    index: int
    name: str
    path: Path


def output_names(paths: Sequence[Path], root: Path) -> list[str]:
    """File stems as output names; stems that collide (``a.jpg`` and ``a.png``, or ``x/a`` and ``y/a``) get the
    relative path with ``/`` and ``.`` replaced by ``_`` instead, so every output name is unique."""
    stems = [p.stem for p in paths]
    counts: dict[str, int] = {}
    for s in stems:
        counts[s] = counts.get(s, 0) + 1
    return [
        s if counts[s] == 1 else str(p.relative_to(root)).replace(os.sep, "_").replace(".", "_")
        for s, p in zip(stems, paths)
    ]


def check_shard(shard: int, num_shards: int) -> None:
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise ValueError(f"need 0 <= shard < num_shards, got shard={shard}, num_shards={num_shards}")


class ImageFolder:
    """The usable images of ``root`` (see the module docstring), loaded at ``size`` x ``size``."""

    def __init__(
        self,
        root: str | os.PathLike,
        size: int,
        *,
        limit: int | None = None,
        min_size: int | None = None,
        recursive: bool = False,
        shard: int = 0,
        num_shards: int = 1,
        background: Sequence[int] = DEFAULT_BACKGROUND,
        resample: Image.Resampling = RESAMPLE,
    ):
        check_shard(shard, num_shards)
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.root.resolve()}")
        self.size, self.background, self.resample = int(size), tuple(background), resample
        self.shard, self.num_shards = shard, num_shards
        self.skipped: list[Skipped] = []
        usable: list[Path] = []
        files = sorted(
            (p for p in (self.root.rglob("*") if recursive else self.root.iterdir()) if p.is_file()),
            key=lambda p: str(p.relative_to(self.root)),
        )
        for path in files:
            rel = path.relative_to(self.root)
            if any(part.startswith(".") for part in rel.parts):
                continue
            if limit is not None and len(usable) >= limit:
                break
            reason = self._check(path, min_size)
            if reason is None:
                usable.append(path)
            else:
                log.warning("skipping %s: %s", path, reason)
                self.skipped.append(Skipped(str(rel), reason))
        names = output_names(usable, self.root)
        #: every usable image of the set, in order (all shards)
        self.all: list[FileSample] = [FileSample(i, n, p) for i, (n, p) in enumerate(zip(names, usable))]
        #: this shard's images
        self.samples: list[FileSample] = [s for s in self.all if s.index % num_shards == shard]

    @staticmethod
    def _check(path: Path, min_size: int | None) -> str | None:
        try:
            with Image.open(path) as f:
                width, height = f.size
        except Exception as exc:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ... on bad files
            return f"not a readable image ({type(exc).__name__}: {exc})"
        if min_size is not None and min(width, height) < min_size:
            return f"smaller than min_size={min_size} ({width}x{height})"
        return None

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, sample: FileSample) -> torch.Tensor:
        """(3, size, size) in [-1, 1]; raises ``OSError`` (or PIL's errors) if the pixels cannot be decoded."""
        return load_image(sample.path, self.size, self.background, self.resample)
