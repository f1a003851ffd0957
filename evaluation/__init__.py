"""Image-quality metrics that never download: PSNR, SSIM, LPIPS and FID.

    from evaluation import ImageScorer, fid_between_files
    scorer = ImageScorer(size=256, lpips_net="alex")          # LPIPS weights: TORCH_HOME cache or lpips_weights=
    rows = scorer(recon, label)                               # [{"psnr", "ssim", "lpips", "lpips_note"}, ...]

A metric whose weights are missing is reported as unavailable with the reason (``MetricResult``), never faked.
"""

from .fid import INCEPTION, feature_statistics, fid_from_features, frechet_distance, inception_features, load_inception
from .folder import evaluate_folder, run_recon, run_size
from .lpips import BACKBONES, build_lpips, load_backbone_, load_lpips, lpips_distance
from .pixel import psnr, ssim
from .result import MetricResult, MetricUnavailable
from .scoring import ImageScorer, describe, fid_between_files, paired_pngs, prepare
from .weights import WeightsFile, find_weights, hub_checkpoint

__all__ = [
    "BACKBONES",
    "INCEPTION",
    "ImageScorer",
    "MetricResult",
    "MetricUnavailable",
    "WeightsFile",
    "build_lpips",
    "describe",
    "evaluate_folder",
    "feature_statistics",
    "fid_between_files",
    "fid_from_features",
    "find_weights",
    "frechet_distance",
    "hub_checkpoint",
    "inception_features",
    "load_backbone_",
    "load_inception",
    "load_lpips",
    "lpips_distance",
    "paired_pngs",
    "prepare",
    "psnr",
    "run_recon",
    "run_size",
    "ssim",
]
