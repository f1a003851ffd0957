"""The images of an experiment (``data`` config): a folder of images or the procedural shapes demo set, in batches.

A batch is the run's unit of work, fixed by the images' indices alone: batch k holds the images of (unsharded) index
k * batch_size ... (k + 1) * batch_size - 1. Shards are made of whole batches (batch k goes to shard
k % num_shards), and a run restores, resumes and skips whole batches. A float32 batch of other composition rounds
differently, so fixing each batch's images is what makes a resumed or sharded run byte-identical to an
uninterrupted one; only another ``batch_size`` (or thread count) changes the numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from omegaconf import DictConfig
from PIL import Image

from imaging import ImageFolder, ShapesDataset, Skipped, check_shard, load_image

from .build import resolve_path
from .errors import SetupError


@dataclass(frozen=True)
class Sample:
    """One image: ``index`` is its global position in the unsharded set (its seeds derive from it)."""

    index: int
    name: str
    source: str


def batch_index(index: int, batch_size: int) -> int:
    """The batch of the image of global ``index``: ``index // batch_size`` (its images: fixed by index alone)."""
    return index // batch_size


def in_shard(index: int, batch_size: int, shard: int, num_shards: int) -> bool:
    """Whether the image of global ``index`` is ``shard``'s: its whole batch goes to shard ``batch % num_shards``."""
    return batch_index(index, batch_size) % num_shards == shard


@dataclass
class DataSet:
    """This shard's samples, the names of the whole set (all shards), and the files that were skipped.

    ``label_loader``: the image at the evaluation size straight from its source (None: the evaluation size is the
    working size), so that a prior working at 512 px is scored against the original 256 px image, not against the
    original resized to 512 and back.
    """

    samples: list[Sample]
    names: list[str]
    loader: Callable[[Sample], torch.Tensor]
    skipped: list[Skipped] = field(default_factory=list)
    description: str = ""
    label_loader: Callable[[Sample], torch.Tensor] | None = None
    batch_size: int = 1  # the unit of work: see the module docstring

    @property
    def total(self) -> int:
        """Number of images in the whole set (all shards)."""
        return len(self.names)

    def batches(self) -> list[list[Sample]]:
        """This shard's samples grouped into the run's batches (by index, in order); the last one may be short."""
        groups: dict[int, list[Sample]] = {}
        for sample in self.samples:
            groups.setdefault(batch_index(sample.index, self.batch_size), []).append(sample)
        return [groups[k] for k in sorted(groups)]

    def load(self, sample: Sample) -> torch.Tensor:
        """(3, size, size) in [-1, 1]; raises for files whose pixels cannot be decoded."""
        return self.loader(sample)

    def load_label(self, sample: Sample) -> torch.Tensor:
        """The ground truth the metrics compare with: (3, eval size, eval size) from the source, or ``load``."""
        return self.label_loader(sample) if self.label_loader is not None else self.loader(sample)


#: how image files are resized to the working resolution: bicubic, or nearest (PSLD_PAG's
#: ``f.interpolate(img, 512)`` in stable-diffusion/scripts/inverse.py, reproduced under ``solver.reference``)
RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "nearest": Image.Resampling.NEAREST}


def build_dataset(
    data_cfg: DictConfig, size: int, eval_size: int | None = None, resample: str = "bicubic", batch_size: int = 1
) -> DataSet:
    """The data set of ``data_cfg`` at working resolution ``size`` (files resized with ``resample``); labels at
    ``eval_size`` (None: ``size``), straight from the files; this shard's batches of ``batch_size`` images."""
    eval_size = None if eval_size is None or int(eval_size) == size else int(eval_size)
    if int(batch_size) < 1:
        raise SetupError(f"batch_size must be at least 1, got {batch_size}")
    batch_size = int(batch_size)
    kind = str(data_cfg.kind)
    shard, num_shards = int(data_cfg.get("shard", 0)), int(data_cfg.get("num_shards", 1))
    try:
        check_shard(shard, num_shards)
    except ValueError as exc:
        raise SetupError(f"data.shard / data.num_shards: {exc}") from exc
    limit = data_cfg.get("limit")
    if kind == "shapes":
        if limit is None:
            raise SetupError("data=demo renders a fixed number of images: set data.limit=<N>")
        count = int(limit)
        start, split = int(data_cfg.get("start", 0)), str(data_cfg.get("split", "test"))
        shapes = ShapesDataset(split, n=max(count, 1), size=size, start=start)
        names = [f"shapes_{split}_{start + i:05d}" for i in range(count)]
        samples = [
            Sample(i, names[i], f"shapes:{split}:{start + i}")
            for i in range(count)
            if in_shard(i, batch_size, shard, num_shards)
        ]
        labels = None if eval_size is None else ShapesDataset(split, n=max(count, 1), size=eval_size, start=start)
        return DataSet(
            samples,
            names,
            lambda s: shapes[s.index],
            description=f"{count} procedural shapes images ({split} split from {start}) at {size} px",
            label_loader=None if labels is None else (lambda s: labels[s.index]),
            batch_size=batch_size,
        )
    if kind == "folder":
        path = data_cfg.get("path")
        if path in (None, "", "???"):
            raise SetupError("data=folder needs the images' folder: data.path=/path/to/images")
        root = resolve_path(path)
        if not root.is_dir():
            env = {"ffhq": "FFHQ_DIR", "imagenet": "IMAGENET_VAL_DIR"}.get(str(data_cfg.name))
            hint = f" (or export {env}=<folder>)" if env else ""
            raise SetupError(f"data={data_cfg.name}: image folder not found: {root}. Set data.path=<folder>{hint}")
        folder = ImageFolder(
            root,
            size,
            limit=None if limit is None else int(limit),
            min_size=data_cfg.get("min_size"),
            recursive=bool(data_cfg.get("recursive", False)),
            background=tuple(data_cfg.get("background") or (255, 255, 255)),
            resample=RESAMPLE[resample],
        )
        by_name = {s.name: s for s in folder.all}
        # the whole listing, then this shard's whole batches (ImageFolder's own sharding deals single images)
        samples = [
            Sample(s.index, s.name, str(s.path)) for s in folder.all if in_shard(s.index, batch_size, shard, num_shards)
        ]
        return DataSet(
            samples,
            [s.name for s in folder.all],
            lambda s: folder.load(by_name[s.name]),
            skipped=list(folder.skipped),
            description=f"{len(folder.all)} images from {root} at {size} px",
            label_loader=None
            if eval_size is None
            else (lambda s: load_image(by_name[s.name].path, eval_size, folder.background)),
            batch_size=batch_size,
        )
    raise SetupError(f"data.kind={kind!r} is not known; valid: folder, shapes")
