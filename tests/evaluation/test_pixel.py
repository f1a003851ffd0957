"""PSNR and SSIM against closed forms and an independent NumPy/SciPy implementation."""

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import correlate1d

from evaluation import psnr, ssim


def test_psnr_of_a_constant_offset_is_closed_form():
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.7 + 0.1
    offsets = torch.tensor([0.1, 0.02], dtype=torch.float64).view(2, 1, 1, 1)
    values = psnr(x + offsets, x)
    # MSE = d^2 on [0, 1]: PSNR = 10 log10(1 / d^2) = -20 log10(d), per image (not pooled over the batch)
    assert values.tolist() == pytest.approx([20.0, -20 * math.log10(0.02)], abs=1e-9)


def test_psnr_identical_is_infinite():
    x = torch.rand(1, 3, 8, 8)
    assert math.isinf(psnr(x, x).item())


def test_ssim_of_an_image_with_itself_is_one():
    x = torch.rand(3, 3, 24, 24, generator=torch.Generator().manual_seed(1))
    assert ssim(x, x).tolist() == pytest.approx([1.0] * 3, abs=1e-9)


def test_ssim_of_flat_images_is_the_luminance_term():
    # variances and covariance are 0: SSIM = (2ab + c1) / (a^2 + b^2 + c1), c1 = 0.01^2 (up to kornia's 1e-12 eps)
    a, b, c1 = 0.2, 0.7, 1e-4
    x, y = torch.full((1, 3, 16, 16), a), torch.full((1, 3, 16, 16), b)
    assert ssim(x, y).item() == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-7)


def _ssim_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al. 2004 with an 11-tap Gaussian (sigma 1.5), valid region only, mean over channels and pixels."""
    taps = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    taps /= taps.sum()

    def blur(img):
        out = correlate1d(correlate1d(img, taps, axis=-1, mode="nearest"), taps, axis=-2, mode="nearest")
        return out[..., 5:-5, 5:-5]  # valid: the window fits entirely

    c1, c2 = 0.01**2, 0.03**2
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    return float((((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean())


def test_ssim_matches_an_independent_implementation():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 20, 24, generator=g)
    y = (x + 0.2 * torch.rand(2, 3, 20, 24, generator=g)).clamp(0, 1)
    expected = [_ssim_reference(a.double().numpy(), b.double().numpy()) for a, b in zip(x, y)]
    assert ssim(x, y).tolist() == pytest.approx(expected, abs=1e-7)
    assert 0 < expected[0] < 0.99


def test_ssim_needs_the_window_to_fit():
    with pytest.raises(ValueError, match="at least 11"):
        ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
