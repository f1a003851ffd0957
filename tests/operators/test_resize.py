"""Super-resolution: antialiased bicubic downsampling against closed forms and torch's reference resampler."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from operators import SuperResolution
from operators.resize import downsampling_matrix

# Keys cubic (a = -0.5) at the tap offsets of a factor-2 downsampling, |d| / 2 for d = 0.5, 1.5, 2.5, 3.5
W_025, W_075, W_125, W_175 = 0.8671875, 0.2265625, -0.0703125, -0.0234375


def test_interior_row_matches_hand_computed_weights() -> None:
    # output pixel o is centred at 2 o + 1, so it reads input pixels 2o-3 .. 2o+4, weights divided by f = 2
    expected = np.array([W_175, W_125, W_075, W_025, W_025, W_075, W_125, W_175]) / 2
    matrix = downsampling_matrix(32, 2).numpy()
    o = 7
    np.testing.assert_allclose(matrix[o, 2 * o - 3 : 2 * o + 5], expected, rtol=0, atol=1e-15)
    assert np.count_nonzero(matrix[o]) == 8


def test_border_row_mirrors_symmetrically() -> None:
    """Taps -1, -2, -3 read pixels 0, 1, 2 (MATLAB 'symmetric', the edge pixel repeated), as Shocher's Resizer."""
    expected = np.array([W_075 + W_025, W_025 + W_125, W_075 + W_175, W_125, W_175]) / 2
    row = downsampling_matrix(32, 2)[0].numpy()
    np.testing.assert_allclose(row[:5], expected, rtol=0, atol=1e-15)
    assert np.count_nonzero(row[5:]) == 0


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_constant_image_stays_constant(factor: int) -> None:
    x = torch.full((2, 3, 64, 128), -0.37, dtype=torch.float64)
    y = SuperResolution(factor)(x)
    assert y.shape == (2, 3, 64 // factor, 128 // factor)
    torch.testing.assert_close(y, torch.full_like(y, -0.37), rtol=0, atol=1e-14)


@pytest.mark.parametrize("factor", [4, 8])
def test_matches_torch_antialiased_bicubic(factor: int) -> None:
    """torch's ``interpolate(mode="bicubic", antialias=True)`` uses the same a = -0.5 kernel stretched by f.

    Interior (outputs whose 4 f-pixel support stays inside the image, i.e. 2 from each border): equal to float64
    precision, 1e-12. Whole image: torch drops outside taps where DPS mirrors them, so we compare against torch run
    on the image padded symmetrically by 2 f pixels (numpy's ``symmetric``), cropped back, again to 1e-12.
    """
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 256, 192, generator=g, dtype=torch.float64) * 2 - 1
    ours = SuperResolution(factor)(x)
    reference = F.interpolate(x, scale_factor=1 / factor, mode="bicubic", antialias=True, align_corners=False)
    torch.testing.assert_close(ours[..., 2:-2, 2:-2], reference[..., 2:-2, 2:-2], rtol=0, atol=1e-12)
    assert (ours - reference).abs().max() > 1e-3  # the borders do differ: mirror vs truncation

    pad = 2 * factor
    padded = torch.from_numpy(np.pad(x.numpy(), ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="symmetric"))
    reference = F.interpolate(padded, scale_factor=1 / factor, mode="bicubic", antialias=True, align_corners=False)
    torch.testing.assert_close(ours, reference[..., 2:-2, 2:-2], rtol=0, atol=1e-12)


def test_transposes() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.randn(1, 3, 16, 8, generator=g, dtype=torch.float64)
    nearest = SuperResolution(4).transpose(y)  # DPS: F.interpolate(scale_factor=4), nearest by default
    torch.testing.assert_close(nearest, y.repeat_interleave(4, dim=-2).repeat_interleave(4, dim=-1))
    bicubic = SuperResolution(4, transpose_mode="bicubic").transpose(y)
    assert bicubic.shape == (1, 3, 64, 32)
    op = SuperResolution(4, transpose_mode="adjoint")
    torch.testing.assert_close(op.transpose(y), op.adjoint(y))
    # the adjoint is not an inverse: a constant comes back about 1 / f^2 as large away from the borders
    back = op.adjoint(torch.ones(1, 1, 16, 16, dtype=torch.float64))
    torch.testing.assert_close(back[..., 16:-16, 16:-16], torch.full((1, 1, 32, 32), 1 / 16, dtype=torch.float64))


def test_matrices_follow_dtype_and_are_cached() -> None:
    op = SuperResolution(4)
    x = torch.rand(1, 3, 32, 32)
    assert op(x).dtype == torch.float32
    assert op(x.double()).dtype == torch.float64
    d_h, _ = op.matrices(32, 32, x)
    assert op.matrices(32, 32, x)[0] is d_h
    assert op.state_dict() == {}


@pytest.mark.parametrize("factor", [2.5, "4", True, 0, -4])
def test_non_integer_factor_raises(factor) -> None:
    with pytest.raises(ValueError, match="factor"):
        SuperResolution(factor)


def test_integer_valued_float_factor_and_size_errors() -> None:
    assert SuperResolution(8.0).factor == 8
    with pytest.raises(ValueError, match="not a multiple"):
        SuperResolution(8)(torch.zeros(1, 3, 100, 96))
    with pytest.raises(ValueError, match="rank"):
        SuperResolution(4)(torch.zeros(3, 64, 64))
