"""Gaussian and motion blur: kernels against scipy / their defining properties, the blur against scipy."""

import numpy as np
import pytest
import scipy.ndimage
import torch

from operators import Blur, GaussianBlur, MotionBlur, gaussian_kernel, generators_from_seeds, motion_kernel


def scipy_gaussian_kernel(kernel_size: int, sigma: float) -> np.ndarray:
    """DPS's recipe (``util/img_utils.py``): gaussian_filter of a centred delta."""
    delta = np.zeros((kernel_size, kernel_size))
    delta[kernel_size // 2, kernel_size // 2] = 1
    return scipy.ndimage.gaussian_filter(delta, sigma=sigma)


# (61, 3) and (121, 3) are DPS / PSLD; (9, 3) and (5, 4) put the window's tails outside the array (scipy reflects)
@pytest.mark.parametrize(("kernel_size", "sigma"), [(61, 3.0), (121, 3.0), (31, 0.5), (9, 3.0), (5, 4.0)])
def test_gaussian_kernel_equals_scipy_filtered_delta(kernel_size: int, sigma: float) -> None:
    expected = scipy_gaussian_kernel(kernel_size, sigma)
    np.testing.assert_allclose(gaussian_kernel(kernel_size, sigma).numpy(), expected, rtol=0, atol=1e-15)
    stored = GaussianBlur(kernel_size, sigma).kernel  # float32 buffer
    np.testing.assert_allclose(stored[0].double().numpy(), expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("method", ["conv", "fft"])
def test_blur_equals_scipy_mirror_correlation(method: str) -> None:
    """DPS's blur = ReflectionPad2d(k // 2) + depthwise conv = scipy ``correlate`` with mode ``mirror``."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 48, 40, generator=g, dtype=torch.float64) * 2 - 1
    kernels = torch.rand(2, 31, 31, generator=g, dtype=torch.float64)  # asymmetric: catches flips
    op = Blur(kernels, method=method)
    y = op(x)
    for b in range(2):
        for c in range(3):
            expected = scipy.ndimage.correlate(x[b, c].numpy(), op.kernel[b].double().numpy(), mode="mirror")
            np.testing.assert_allclose(y[b, c].numpy(), expected, rtol=1e-10, atol=1e-10)


def test_conv_and_fft_paths_agree_on_dps_setting() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 3, 96, 96, generator=g) * 2 - 1
    y = torch.randn(1, 3, 96, 96, generator=g)
    conv, fft = GaussianBlur(61, 3.0, method="conv"), GaussianBlur(61, 3.0, method="fft")
    torch.testing.assert_close(fft(x), conv(x), rtol=0, atol=1e-5)
    torch.testing.assert_close(fft.adjoint(y), conv.adjoint(y), rtol=0, atol=1e-5)


def test_gaussian_blur_preserves_constants_and_transpose_is_identity() -> None:
    op = GaussianBlur(61, 3.0)
    x = torch.full((1, 3, 64, 64), 0.3, dtype=torch.float64)
    torch.testing.assert_close(op(x), x, rtol=0, atol=1e-6)  # float32 kernel sums to 1 up to rounding
    y = torch.randn(1, 3, 64, 64)
    assert torch.equal(op.transpose(y), y)  # DPS's transpose for blur
    torch.testing.assert_close(GaussianBlur(61, 3.0, transpose_mode="adjoint").transpose(y), op.adjoint(y))


@pytest.mark.parametrize("intensity", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("kernel_size", [61, 121])
def test_motion_kernel_is_a_normalised_nonnegative_psf(kernel_size: int, intensity: float) -> None:
    for seed in range(3):
        kernel = motion_kernel(kernel_size, intensity, generator=torch.Generator().manual_seed(seed))
        assert kernel.shape == (kernel_size, kernel_size)
        assert kernel.dtype == torch.float64
        assert bool((kernel >= 0).all())
        assert abs(float(kernel.sum()) - 1.0) < 1e-12
        # a blur along a path, not a point and not a smear over the whole kernel
        assert 3 < int((kernel > 1e-3 * kernel.max()).sum()) < kernel_size**2 // 4


def test_motion_kernel_seeding() -> None:
    draw = lambda seed: motion_kernel(61, 0.5, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(draw(3), draw(3))
    kernels = [draw(seed) for seed in range(6)]
    for i in range(6):
        for j in range(i + 1, 6):
            assert (kernels[i] - kernels[j]).abs().max() > 1e-3


def test_motion_blur_per_image_generators_equal_drawing_each_alone() -> None:
    seeds = [10, 11, 12]
    batched = MotionBlur(61, 0.5, generator=generators_from_seeds(seeds))
    assert batched.kernel.shape == (3, 61, 61)
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    y = batched(x)
    for i, seed in enumerate(seeds):
        alone = MotionBlur(61, 0.5, generator=generators_from_seeds([seed]))
        assert torch.equal(alone.kernel[0], batched.kernel[i])
        torch.testing.assert_close(alone(x[i : i + 1]), y[i : i + 1])
    assert not torch.equal(batched.kernel[0], batched.kernel[1])


def test_motion_blur_explicit_kernel_and_missing_generator() -> None:
    kernel = torch.zeros(5, 5)
    kernel[2, 1:4] = 1 / 3  # horizontal 3-pixel motion
    op = MotionBlur(kernel=kernel, noise=None)
    x = torch.arange(64.0).view(1, 1, 8, 8) / 64
    expected = (x[..., :, :-2] + x[..., :, 1:-1] + x[..., :, 2:]) / 3  # away from the borders
    torch.testing.assert_close(op(x)[..., :, 1:-1], expected)
    with pytest.raises(ValueError, match=r"generator=torch\.Generator\(\)\.manual_seed"):
        MotionBlur(61, 0.5)
    with pytest.raises(ValueError, match="either kernel= or generator="):
        MotionBlur(kernel=kernel, generator=torch.Generator())


def test_blur_bad_inputs() -> None:
    with pytest.raises(ValueError, match="too small"):
        GaussianBlur(61, 3.0)(torch.zeros(1, 3, 30, 64))  # reflect padding 30 needs > 30 pixels
    with pytest.raises(ValueError, match="odd"):
        GaussianBlur(60, 3.0)
    with pytest.raises(ValueError, match=r"intensity must be in \[0, 1\]"):
        MotionBlur(61, 1.5, generator=torch.Generator())
    with pytest.raises(ValueError, match="2 kernels"):
        MotionBlur(15, generator=generators_from_seeds([0, 1]))(torch.zeros(3, 3, 32, 32))
