"""One batch of held-out images restored in-process, for the measurement programs (``runner.measure.compare``,
``runner.measure.tiny_report``): the same configs, operators and per-image seed streams as ``runner.run``, without
writing a results folder, and the scores of 8-bit outputs.

    cfg = runner.compose("prior=tiny_adm", "task=sr4", "data.limit=8")
    batch = held_out_batch(cfg, prior)                    # labels x, measurement y, operator, image indices
    x_hat, seconds, settings = restore_batch(cfg, prior, batch)
    pixel_scores(x_hat, batch.x)                          # {"psnr": [...], "ssim": [...]}
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import Tensor

from evaluation import fid_from_features, kid_difference_from_features, kid_from_features
from evaluation.pixel import psnr, ssim
from evaluation.statistics import image_statistics
from imaging.io import quantize
from imaging.shapes import ShapesDataset
from operators import Operator
from solvers import restore_best_of

from .build import build_operator, build_solver, prior_image_size
from .config import Settings, resolve_settings
from .data import build_dataset
from .seeds import image_streams, restart_generators


@dataclass
class HeldOutBatch:
    """The labels ``x``, their measurement ``y`` through ``operator`` and the data set indices, seeded by ``seed``."""

    x: Tensor
    y: Tensor
    operator: Operator
    indices: list[int]
    seed: int

    def generators(self) -> list[torch.Generator]:
        """Fresh per-image sampler generators (the streams ``runner.run`` gives these images)."""
        return image_streams(self.seed, self.indices).sampler

    def restart_generators(self, restarts: int) -> list[list[torch.Generator]]:
        """Fresh sampler generators of ``restarts`` restarts of these images (``[0]``: ``generators()``)."""
        return restart_generators(self.seed, self.indices, restarts)


def held_out_batch(cfg: DictConfig, prior) -> HeldOutBatch:
    """Every image ``cfg.data`` selects, at the prior's working size, measured by ``cfg.task``."""
    size = prior_image_size(prior)
    data = build_dataset(cfg.data, size)
    x = torch.stack([data.load(s) for s in data.samples])
    indices = [s.index for s in data.samples]
    streams = image_streams(int(cfg.seed), indices)
    operator = build_operator(cfg.task, size, streams.operator)
    return HeldOutBatch(x, operator.measure(x, streams.noise), operator, indices, int(cfg.seed))


def restore_batch(
    cfg: DictConfig, prior, batch: HeldOutBatch, progress: bool = False
) -> tuple[Tensor, float, Settings]:
    """The solver ``cfg`` resolves to, run on the whole batch at once: (x_hat, seconds, settings).
    Results do not depend on the batch: every image draws from its own generator. With ``solver.restarts`` > 1, per
    image the restart whose measurement fits best (``solvers.restore_best_of``), as ``runner.run`` does."""
    settings = resolve_settings(cfg)
    solver = build_solver(settings, cfg.solver, prior, batch.operator, progress=progress)
    start = time.time()
    kept = restore_best_of(solver, batch.y, batch.restart_generators(int(cfg.solver.get("restarts", 1))))
    return kept.x_hat, time.time() - start, settings


def pixel_scores(x_hat: Tensor, x: Tensor) -> dict[str, list[float]]:
    """PSNR / SSIM per image on [0, 1] of the 8-bit images (what a saved PNG gives)."""
    a, b = (quantize(x_hat) + 1) / 2, (quantize(x) + 1) / 2
    return {"psnr": psnr(a, b).tolist(), "ssim": ssim(a, b).tolist()}


#: first test-split index of the reference images: the measurement scripts restore images below it, never these
REFERENCE_START = 100_000


class ShapesReference:
    """KID / FID of image sets against a fixed reference set of shapes *test* images (indices from ``start``, never
    restored by the measurement scripts), on one feature extractor; plus the sets' sharpness / contrast statistics."""

    def __init__(self, extractor, n: int, seed: int, start: int = REFERENCE_START):
        self.extractor, self.seed, self.start = extractor, seed, start
        reference = ShapesDataset("test", n=n, start=start).tensor()
        self.reference = extractor(quantize(reference))
        self.data_stats = image_statistics(reference)

    def __call__(self, images: Tensor) -> dict:
        """kid, kid_std, kid_subset_size, fid (vs the reference) and the image statistics of ``images``."""
        features = self.extractor(quantize(images.detach().float().cpu()))
        kid, kid_std, subset = kid_from_features(features, self.reference, seed=self.seed)
        fid = fid_from_features(features, self.reference) if len(features) > 1 else None
        return {"kid": kid, "kid_std": kid_std, "kid_subset_size": subset, "fid": fid, **image_statistics(images)}

    def kid_difference(self, images: Tensor, baseline: Tensor) -> dict:
        """KID(images) - KID(baseline) on paired subsets (row i of both restores the same measurement): the mean
        and its std over subsets, which is what says whether a difference between two rows holds."""
        a, b = (self.extractor(quantize(t.detach().float().cpu())) for t in (images, baseline))
        mean, std, subset = kid_difference_from_features(a, b, self.reference, seed=self.seed)
        return {"kid_difference": mean, "kid_difference_std": std, "kid_subset_size": subset}

    def data_row(self, n: int) -> dict:
        """The same metrics for ``n`` other data images: the floor a perfect sampler reaches with ``n`` images."""
        return self(ShapesDataset("test", n=n, start=self.start + len(self.reference)).tensor())
