"""FID (Heusel et al. 2017) with pytorch-fid's Inception and Frechet distance, without downloads.

The Frechet distance works on any features (``evaluation.features`` names the extractors; KID in ``kid.py``).

pytorch-fid builds its Inception (``fid_inception_v3``) and fetches the weights with ``load_state_dict_from_url``,
which reads ``$TORCH_HOME/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth`` when present and downloads
otherwise. ``load_inception`` checks the file first (explicit path or hub cache) and, while pytorch-fid builds the
network, replaces that one function by a plain ``torch.load`` of the file: nothing is ever downloaded.

Images are fed as pytorch-fid does for PNG folders: RGB in [0, 1], resized to 299 px by the model.
FID from fewer images than feature dimensions (2048) has a singular covariance and a strong bias: comparable
only between runs with the same number of images. pytorch-fid's README asks for more images than dimensions
(D + 1); the papers' protocols (1k images, 2048-d Inception) and this repository's tiny-prior tables (128 images,
128-d features) do not meet it, so that is reported (``rank_deficient``), not refused. Below ``FID_MIN_IMAGES`` (4,
KID's minimum: both come from the same features) FID is unavailable: 1-3 images per set give a covariance of rank
0-2 and a number that means nothing.
"""

from __future__ import annotations

import os
import warnings
from unittest import mock

import numpy as np
import torch

from .kid import KID_MIN_IMAGES, too_few_images
from .result import MetricUnavailable
from .weights import WeightsFile, find_weights

#: fewest images per set for a FID (see the module docstring)
FID_MIN_IMAGES = KID_MIN_IMAGES

#: pytorch-fid's ``FID_WEIGHTS_URL``; it loads the file without a hash check, so none is enforced here
INCEPTION = WeightsFile(
    "FID Inception",
    "pt_inception-2015-12-05-6726825d.pth",
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)) (pytorch-fid's stable implementation)."""
    from pytorch_fid.fid_score import calculate_frechet_distance

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # pytorch-fid passes scipy's old ``disp``
        return float(calculate_frechet_distance(mu1, sigma1, mu2, sigma2))


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased, rows = samples) covariance of ``features`` (N, D), in float64."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise MetricUnavailable(f"FID needs at least 2 images per set, got {features.shape[0]}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def load_inception(
    weights: str | os.PathLike | None = None, dims: int = 2048, setting: str = "metrics.fid.weights"
) -> torch.nn.Module:
    """pytorch-fid's ``InceptionV3`` for ``dims``-dimensional features, weights from a local file only."""
    from pytorch_fid import inception

    if dims not in inception.InceptionV3.BLOCK_INDEX_BY_DIM:
        raise ValueError(f"dims must be one of {sorted(inception.InceptionV3.BLOCK_INDEX_BY_DIM)}, got {dims}")
    path = find_weights(INCEPTION, weights, setting)

    def local_state_dict(url: str, *args, **kwargs) -> dict:
        return torch.load(path, map_location="cpu", weights_only=True)

    block = inception.InceptionV3.BLOCK_INDEX_BY_DIM[dims]
    try:
        with mock.patch.object(inception, "load_state_dict_from_url", local_state_dict):
            model = inception.InceptionV3([block], use_fid_inception=True)
    except MetricUnavailable:
        raise
    except Exception as exc:  # wrong or corrupt file
        raise MetricUnavailable(f"could not load FID Inception weights {path}: {type(exc).__name__}: {exc}") from exc
    return model.eval().requires_grad_(False)


def rank_deficient(n: int, dims: int) -> bool:
    """A covariance from ``n`` samples of ``dims`` features has rank <= n - 1 < dims: singular, FID biased up."""
    return n <= dims


def fid_from_features(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """FID between two feature sets (N, D), (M, D): Inception's, or any extractor's (``evaluation.features``);
    ``MetricUnavailable`` below ``FID_MIN_IMAGES`` per set."""
    if min(len(features_a), len(features_b)) < FID_MIN_IMAGES:
        raise too_few_images(
            "FID", len(features_a), len(features_b), FID_MIN_IMAGES, "as KID; fewer give a covariance of rank <= 2"
        )
    return frechet_distance(*feature_statistics(features_a), *feature_statistics(features_b))
