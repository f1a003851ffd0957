"""The images of an experiment (``data`` config): a folder of images, an image data set on the Hugging Face Hub
(``runner.hub_data``), or the procedural shapes demo set, in batches.

A batch is the run's unit of work, fixed by the images' indices alone: batch k holds the images of (unsharded) index
k * batch_size ... (k + 1) * batch_size - 1. Shards are made of whole batches (batch k goes to shard
k % num_shards), and a run restores, resumes and skips whole batches. A float32 batch of other composition rounds
differently, so fixing each batch's images is what makes a resumed or sharded run byte-identical to an
uninterrupted one; only another ``batch_size`` (or thread count) changes the numbers.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from imaging import ImageFolder, ShapesDataset, Skipped, check_shard, load_image

from .errors import SetupError
from .hub_data import cached_selection, folder_is_default, hub_spec, select
from .paths import CONF_DIR, env_variable, resolve_path


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
    #: the images are not fetched yet (a dry run lists a Hub set without downloading it): no samples, no names
    pending: bool = False
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


def path_variable(data_cfg: DictConfig) -> str | None:
    """The environment variable the shipped ``conf/data/<name>.yaml`` reads its folder from (``FFHQ_DIR`` for
    ``path: ${oc.env:FFHQ_DIR,data/ffhq256}``), for messages; None for a data set without one. That file is the one
    place that names it."""
    shipped = CONF_DIR / "data" / f"{data_cfg.get('name')}.yaml"
    if not shipped.is_file():
        return None
    return env_variable(OmegaConf.to_container(OmegaConf.load(shipped), resolve=False).get("path"))


#: how image files are resized to the working resolution: bicubic, or nearest (PSLD_PAG's
#: ``f.interpolate(img, 512)`` in stable-diffusion/scripts/inverse.py, reproduced under ``solver.reference``)
RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "nearest": Image.Resampling.NEAREST}


def build_dataset(
    data_cfg: DictConfig,
    size: int,
    eval_size: int | None = None,
    resample: str = "bicubic",
    batch_size: int = 1,
    *,
    offline: bool = False,
    prefetch: str = "",
    fetch: bool = True,
) -> DataSet:
    """The data set of ``data_cfg`` at working resolution ``size`` (files resized with ``resample``); labels at
    ``eval_size`` (None: ``size``), straight from the files; this shard's batches of ``batch_size`` images. A Hub set
    (``data=hub``, or ``data=ffhq|imagenet`` without their folder) is fetched into the Hub cache unless ``offline``
    (then ``prefetch`` is the command named in the error) or ``fetch=False`` (then, when not cached, a ``pending``
    set that lists what would be fetched)."""
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
    hub = dict(offline=offline, prefetch=prefetch, fetch=fetch, resample=resample, batch_size=batch_size)
    if kind == "hub":
        return hub_dataset(data_cfg, size, eval_size, **hub)
    if kind == "folder":
        path = data_cfg.get("path")
        if path in (None, "", "???"):
            raise SetupError("data=folder needs the images' folder: data.path=/path/to/images")
        root = resolve_path(path)
        if not root.is_dir() and data_cfg.get("hub") is not None and folder_is_default(data_cfg):
            return hub_dataset(data_cfg, size, eval_size, **hub)  # no folder given or found: the configured Hub set
        if not root.is_dir():
            env = path_variable(data_cfg)
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
    raise SetupError(f"data.kind={kind!r} is not known; valid: folder, hub, shapes")


def hub_dataset(
    data_cfg: DictConfig,
    size: int,
    eval_size: int | None,
    *,
    resample: str,
    offline: bool,
    prefetch: str,
    fetch: bool,
    batch_size: int = 1,
) -> DataSet:
    """The rows of a Hub data set that ``data_cfg`` selects, read from the Hub cache (see ``runner.hub_data``), in
    this shard's whole batches of ``batch_size``."""
    spec = hub_spec(data_cfg)
    shard, num_shards = int(data_cfg.get("shard", 0)), int(data_cfg.get("num_shards", 1))
    background = tuple(data_cfg.get("background") or (255, 255, 255))
    selection = select(spec, offline=offline, prefetch=prefetch) if fetch else cached_selection(spec)
    if selection is None:  # a dry run with nothing cached: say what a run would fetch
        pending = f"{spec.describe()}: not cached yet, a run fetches it"
        return DataSet([], [], lambda s: None, description=pending, pending=True, batch_size=batch_size)
    if not selection.rows:
        reasons = "; ".join(f"{s.name}: {s.reason}" for s in selection.skipped[:3])
        raise SetupError(f"{spec.describe()}: no usable image ({len(selection.skipped)} rows skipped: {reasons})")
    by_name = {row.name: row for row in selection.rows}
    samples = [
        Sample(k, row.name, selection.source(row))
        for k, row in enumerate(selection.rows)
        if in_shard(k, batch_size, shard, num_shards)
    ]

    def load(sample: Sample, at: int = size, how: Image.Resampling = RESAMPLE[resample]) -> torch.Tensor:
        return load_image(io.BytesIO(selection.image_bytes(by_name[sample.name])), at, background, how)

    return DataSet(
        samples,
        [row.name for row in selection.rows],
        load,
        skipped=list(selection.skipped),
        description=f"{len(selection.rows)} images from {spec.url()} ({selection.kind}, commit {selection.commit[:8]}) "
        f"at {size} px",
        label_loader=None if eval_size is None else (lambda s: load(s, eval_size, RESAMPLE["bicubic"])),
        batch_size=batch_size,
    )
