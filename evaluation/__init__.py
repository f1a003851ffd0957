"""Image-quality metrics that never download: PSNR, SSIM, LPIPS, and FID / KID on pluggable features.

    from evaluation import ImageScorer, distribution_between_files, load_extractor
    scorer = ImageScorer(size=256, lpips_net="alex")          # LPIPS weights: TORCH_HOME cache or lpips_weights=
    rows = scorer(recon, label)                               # [{"psnr", "ssim", "lpips", "lpips_note"}, ...]
    dist = distribution_between_files(recons, labels, features="shapes")   # {"fid", "kid"}, extractor named

A metric whose weights are missing is reported as unavailable with the reason (``MetricResult``), never faked.
"""

from .features import EXTRACTORS, FeatureExtractor, inception_features, load_extractor
from .fid import INCEPTION, feature_statistics, fid_from_features, frechet_distance, load_inception
from .folder import evaluate_folder, run_features, run_recon, run_size
from .kid import kid_difference_from_features, kid_from_features
from .lpips import BACKBONES, build_lpips, load_backbone_, load_lpips, lpips_distance
from .pixel import psnr, ssim
from .result import MetricResult, MetricUnavailable
from .scoring import ImageScorer, describe, distribution_between_files, fid_between_files, paired_pngs, prepare
from .shapes_net import SHAPES_FEATURES, ShapesNet, load_shapes_net
from .weights import WeightsFile, find_weights, hub_checkpoint

__all__ = [
    "BACKBONES",
    "EXTRACTORS",
    "INCEPTION",
    "SHAPES_FEATURES",
    "FeatureExtractor",
    "ImageScorer",
    "MetricResult",
    "MetricUnavailable",
    "ShapesNet",
    "WeightsFile",
    "build_lpips",
    "describe",
    "distribution_between_files",
    "evaluate_folder",
    "feature_statistics",
    "fid_between_files",
    "fid_from_features",
    "find_weights",
    "frechet_distance",
    "hub_checkpoint",
    "inception_features",
    "kid_difference_from_features",
    "kid_from_features",
    "load_backbone_",
    "load_extractor",
    "load_inception",
    "load_lpips",
    "load_shapes_net",
    "lpips_distance",
    "paired_pngs",
    "prepare",
    "psnr",
    "run_features",
    "run_recon",
    "run_size",
    "ssim",
]
