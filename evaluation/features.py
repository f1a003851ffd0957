"""Feature extractors for the distribution metrics (FID, KID): the only domain-specific part of them.

    extractor = load_extractor("inception")                 # pytorch-fid's Inception pool3 (natural images)
    extractor = load_extractor("shapes")                    # the shipped shapes network (evaluation.shapes_net)
    extractor = load_extractor("my_package.nets:build")     # any module: images in [-1, 1] -> (B, D) features
    features = extractor(images)                            # iterable of (3, H, W) in [-1, 1] -> (N, D) float64

An import path names a ``torch.nn.Module`` instance, or a callable returning one, whose forward maps a batch
(B, 3, H, W) in [-1, 1] to (B, D) features. ``extractor.name`` describes the network and is recorded next to
every FID/KID value, since values from different extractors are not comparable.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .fid import INCEPTION, load_inception
from .result import MetricUnavailable
from .shapes_net import SHAPES_FEATURES, load_shapes_net


class FeatureExtractor:
    """A named feature network run in batches without gradients."""

    def __init__(self, name: str, module: nn.Module, batch_size: int = 50):
        self.name = name
        self.module = module.eval().requires_grad_(False)
        self.batch_size = batch_size

    @property
    def device(self) -> torch.device:
        return next(iter(self.module.parameters()), torch.empty(0)).device

    @torch.no_grad()
    def __call__(self, images: Iterable[torch.Tensor]) -> np.ndarray:
        """Features (N, D) in float64 of images (3, H, W) in [-1, 1] (a (N, 3, H, W) tensor works too)."""
        batch: list[torch.Tensor] = []
        out: list[np.ndarray] = []

        def flush() -> None:
            features = self.module(torch.stack(batch).float().to(self.device))
            out.append(features.reshape(len(batch), -1).double().cpu().numpy())
            batch.clear()

        for image in images:
            batch.append(image)
            if len(batch) == self.batch_size:
                flush()
        if batch:
            flush()
        return np.concatenate(out) if out else np.empty((0, 0))


class InceptionPool(nn.Module):
    """pytorch-fid's InceptionV3 as images in [-1, 1] -> its pooled features (what pytorch-fid compares)."""

    def __init__(self, inception: nn.Module):
        super().__init__()
        self.inception = inception

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.inception(((images + 1) / 2).clamp(0, 1))[0]
        if features.shape[-2:] != (1, 1):  # blocks before the last: global average pool, as pytorch-fid does
            features = nn.functional.adaptive_avg_pool2d(features, (1, 1))
        return features.flatten(1)


class ShapesFeatures(nn.Module):
    """The shapes network's pooled features (the heads are not used)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net.features(images)


def inception_features(model: nn.Module, images: Iterable[torch.Tensor], batch_size: int = 50) -> np.ndarray:
    """Pooled Inception features (N, dims) of images (3, H, W) in [-1, 1] (``model``: ``load_inception()``)."""
    return FeatureExtractor("inception", InceptionPool(model), batch_size)(images)


def _inception(weights, dims: int, device, setting: str) -> tuple[str, nn.Module]:
    model = InceptionPool(load_inception(weights, dims, setting)).to(device)
    return f"inception (pytorch-fid {INCEPTION.filename}, {dims}-d)", model


def _shapes(weights, dims: int, device, setting: str) -> tuple[str, nn.Module]:
    path = Path(weights) if weights else SHAPES_FEATURES
    if not path.is_file():
        raise MetricUnavailable(
            f"shapes feature network not found at {path} (it ships with the repository; to retrain: "
            "python scripts/train_features.py --out runs/shapes_features, then --export evaluation/shapes_features32)"
        )
    net = load_shapes_net(path, device)
    where = path.name if path == SHAPES_FEATURES else str(path)
    return f"shapes (evaluation/{where}, {net.feature_dim}-d)", ShapesFeatures(net)


# name -> loader(weights, dims, device, setting) -> (description, module)
EXTRACTORS: dict[str, Callable[..., tuple[str, nn.Module]]] = {"inception": _inception, "shapes": _shapes}


def _imported(path: str, device) -> tuple[str, nn.Module]:
    module_name, _, attr = path.partition(":")
    if not attr:
        module_name, _, attr = path.rpartition(".")
    obj = getattr(importlib.import_module(module_name), attr)
    module = obj if isinstance(obj, nn.Module) else obj()
    if not isinstance(module, nn.Module):
        raise TypeError(f"{path} gave a {type(module).__name__}, not a torch.nn.Module")
    return path, module.to(device)


def load_extractor(
    name: str,
    *,
    weights: str | os.PathLike | None = None,
    dims: int = 2048,
    device: str | torch.device = "cpu",
    batch_size: int = 50,
    setting: str = "metrics.fid.weights",
) -> FeatureExtractor:
    """The extractor ``name`` (a key of ``EXTRACTORS``, or ``package.module:attr``), on ``device``.

    ``weights``: a file for the named networks (default: Inception from the torch hub cache, the shipped shapes
    network); ``dims``: Inception's feature block. Missing Inception weights raise ``MetricUnavailable``.
    """
    if name in EXTRACTORS:
        description, module = EXTRACTORS[name](weights, dims, device, setting)
    elif ":" in name or "." in name:
        description, module = _imported(name, device)
    else:
        raise ValueError(f"unknown feature extractor {name!r}; valid: {sorted(EXTRACTORS)} or package.module:attr")
    return FeatureExtractor(description, module, batch_size)
