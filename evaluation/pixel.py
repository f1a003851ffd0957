"""PSNR and SSIM per image, on images in [0, 1] (kornia's formulas, one value per image of a batch).

- PSNR = 10 log10(1 / MSE), MSE over all pixels and channels of one image (``kornia.metrics.psnr`` with
  ``max_val=1``, called image by image since kornia pools the MSE over a batch). Identical images give ``inf``.
- SSIM: ``kornia.metrics.ssim`` with an 11 x 11 Gaussian window (sigma 1.5), c1 = 0.01^2, c2 = 0.03^2 and
  ``padding="valid"`` (the borders where the window does not fit are left out, as torchmetrics and scikit-image
  do), averaged over pixels and channels.
"""

from __future__ import annotations

import kornia
import torch

SSIM_WINDOW = 11


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if x.shape != y.shape:
        raise ValueError(f"images must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.ndim == 3:
        x, y = x[None], y[None]
    if x.ndim != 4:
        raise ValueError(f"expected (B, C, H, W) or (C, H, W) images, got shape {tuple(x.shape)}")
    return x.double(), y.double()


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) of images in [0, 1]: shape (B,)."""
    x, y = _check_pair(x, y)
    return torch.stack([kornia.metrics.psnr(a, b, max_val=1.0) for a, b in zip(x, y)])


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM of images in [0, 1]: shape (B,)."""
    x, y = _check_pair(x, y)
    if min(x.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW} px per side, got {tuple(x.shape[-2:])}")
    ssim_map = kornia.metrics.ssim(x, y, SSIM_WINDOW, max_val=1.0, padding="valid")
    return ssim_map.flatten(1).mean(dim=1)
