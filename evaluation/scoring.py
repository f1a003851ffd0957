"""Scoring restorations the same way at run time and from files.

Images are scored as they are written: both recon and label are quantised to 8 bits (``imaging.quantize``) and,
when ``size`` is set, resized to ``size`` with the data's filter (``imaging.resize_tensor``; e.g. PSLD's 512 px
outputs are evaluated at 256 px as in the paper). ``scripts/evaluate.py`` reads the PNGs back and gets the same
numbers as ``metrics.csv``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imaging import quantize, read_png, resize_tensor

from .features import FeatureExtractor, InceptionPool, load_extractor
from .fid import fid_from_features, load_inception, rank_deficient
from .kid import KID_MIN_IMAGES, KID_SUBSETS, KID_WHY, kid_from_features, too_few_images
from .lpips import load_lpips, lpips_distance
from .pixel import psnr, ssim
from .result import MetricResult, MetricUnavailable


def prepare(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> as stored in 8 bits, at ``size`` (None: unchanged)."""
    images = quantize(images.detach().cpu().float())
    if size is not None:
        images = torch.stack([resize_tensor(x, size) for x in images])
    return images


class ImageScorer:
    """PSNR / SSIM (on [0, 1]) and LPIPS (on [-1, 1]) of recon vs label, per image.

    LPIPS is loaded once; when its weights are missing (or ``lpips=False``) every row says why in ``lpips_note``
    and PSNR/SSIM are still computed.
    """

    def __init__(
        self,
        size: int | None = None,
        *,
        lpips: bool = True,
        lpips_net: str = "alex",
        lpips_weights: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        lpips_setting: str = "metrics.lpips.weights",
        lpips_model: torch.nn.Module | None = None,
    ):
        self.size = size
        self.lpips_net = lpips_net
        self.lpips_model = lpips_model
        self.lpips_reason: str | None = None
        if self.lpips_model is None:
            if not lpips:
                self.lpips_reason = "disabled by configuration"
            else:
                try:
                    self.lpips_model = load_lpips(lpips_net, lpips_weights, lpips_setting).to(device)
                except MetricUnavailable as exc:
                    self.lpips_reason = str(exc)

    @property
    def lpips_status(self) -> str:
        return f"LPIPS ({self.lpips_net})" + ("" if self.lpips_model is not None else f": {self.lpips_reason}")

    def __call__(self, recon: torch.Tensor, label: torch.Tensor) -> list[dict[str, Any]]:
        """One dict per image: psnr, ssim, lpips (None when unavailable) and lpips_note (the reason, or "")."""
        recon, label = prepare(recon, self.size), prepare(label, self.size)
        x, y = (recon + 1) / 2, (label + 1) / 2
        psnrs, ssims = psnr(x, y).tolist(), ssim(x, y).tolist()
        if self.lpips_model is not None:
            lpipss: list[float | None] = lpips_distance(self.lpips_model, recon, label).tolist()
            notes = [""] * len(psnrs)
        else:
            lpipss, notes = [None] * len(psnrs), [f"unavailable: {self.lpips_reason}"] * len(psnrs)
        return [
            {"psnr": p, "ssim": s, "lpips": lp, "lpips_note": n} for p, s, lp, n in zip(psnrs, ssims, lpipss, notes)
        ]


def distribution_between_files(
    recon_paths: Sequence[str | os.PathLike],
    label_paths: Sequence[str | os.PathLike],
    *,
    features: str = "inception",
    size: int | None = None,
    weights: str | os.PathLike | None = None,
    dims: int = 2048,
    batch_size: int = 50,
    device: str | torch.device = "cpu",
    setting: str = "metrics.fid.weights",
    extractor: FeatureExtractor | None = None,
    kid_subsets: int = KID_SUBSETS,
    kid_subset_size: int | None = None,
    kid_seed: int = 0,
) -> dict[str, MetricResult]:
    """``{"fid", "kid"}`` between the recon set and the label (reference) set of PNG files, on the features of
    ``extractor`` (default: ``load_extractor(features, ...)``), or why they are unavailable. Both results name the
    extractor; KID's also carry its std over subsets and the subset size."""
    name = extractor.name if extractor is not None else features
    try:
        if min(len(recon_paths), len(label_paths)) < KID_MIN_IMAGES:  # before loading a network for nothing
            raise too_few_images("FID/KID", len(recon_paths), len(label_paths), KID_MIN_IMAGES, KID_WHY)
        if extractor is None:
            extractor = load_extractor(
                features, weights=weights, dims=dims, device=device, batch_size=batch_size, setting=setting
            )
            name = extractor.name

        def images(paths):
            for p in paths:
                x = read_png(p)
                yield resize_tensor(x, size) if size is not None else x

        features_recon, features_label = extractor(images(recon_paths)), extractor(images(label_paths))
    except MetricUnavailable as exc:
        return {m: MetricResult.unavailable(m, str(exc), extractor=name) for m in ("fid", "kid")}
    n, dims = min(len(features_recon), len(features_label)), features_recon.shape[1]
    fid_details: dict[str, Any] = {"extractor": name}
    if rank_deficient(n, dims):  # pytorch-fid's README asks for more images than dimensions
        fid_details["rank_deficient"] = f"{n} images <= {dims} feature dims: biased upward, compare only at equal N"
    try:
        fid = MetricResult("fid", fid_from_features(features_recon, features_label), details=fid_details)
    except ValueError as exc:  # pytorch-fid: a covariance square root with a large imaginary part (tiny sets)
        fid = MetricResult.unavailable("fid", f"Frechet distance failed: {exc}", extractor=name)
    mean, std, subset_size = kid_from_features(
        features_recon, features_label, subsets=kid_subsets, subset_size=kid_subset_size, seed=kid_seed
    )
    details = {"std": std, "subset_size": subset_size, "subsets": kid_subsets, "extractor": name}
    return {"fid": fid, "kid": MetricResult("kid", mean, details=details)}


def fid_between_files(
    recon_paths: Sequence[str | os.PathLike],
    label_paths: Sequence[str | os.PathLike],
    *,
    size: int | None = None,
    weights: str | os.PathLike | None = None,
    dims: int = 2048,
    batch_size: int = 50,
    device: str | torch.device = "cpu",
    setting: str = "metrics.fid.weights",
    model: torch.nn.Module | None = None,
) -> MetricResult:
    """FID on Inception features between the recon set and the label (reference) set of PNG files, or why it is
    unavailable (``model``: an already loaded pytorch-fid Inception)."""
    try:
        if min(len(recon_paths), len(label_paths)) < KID_MIN_IMAGES:
            raise too_few_images("FID", len(recon_paths), len(label_paths), KID_MIN_IMAGES, KID_WHY)
        model = model if model is not None else load_inception(weights, dims, setting).to(device)
    except MetricUnavailable as exc:
        return MetricResult.unavailable("fid", str(exc))
    extractor = FeatureExtractor(f"inception ({dims}-d)", InceptionPool(model), batch_size)
    return distribution_between_files(recon_paths, label_paths, size=size, extractor=extractor)["fid"]


def describe(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """mean, std (population), min, max and count of the available (non-None) values."""
    v = np.array([x for x in values if x is not None], dtype=np.float64)
    if v.size == 0:
        return {"mean": None, "std": None, "min": None, "max": None, "count": 0}
    finite = v[np.isfinite(v)]
    mean = float(v.mean()) if finite.size == v.size else math.inf
    std = float(v.std()) if finite.size == v.size else None
    return {"mean": mean, "std": std, "min": float(v.min()), "max": float(v.max()), "count": int(v.size)}


def paired_pngs(recon_dir: str | os.PathLike, label_dir: str | os.PathLike) -> list[tuple[str, Path, Path]]:
    """(name, recon path, label path) for every name that has a PNG in both folders, sorted by name."""
    recon = {p.stem: p for p in Path(recon_dir).glob("*.png")}
    label = {p.stem: p for p in Path(label_dir).glob("*.png")}
    return [(n, recon[n], label[n]) for n in sorted(recon.keys() & label.keys())]
