"""Image statistics against closed forms on constructed images."""

import pytest
import torch

from evaluation.statistics import image_statistics


def test_flat_image_has_no_sharpness_no_contrast():
    stats = image_statistics(torch.zeros(2, 3, 8, 8) + 0.2)
    assert stats["sharpness"] == 0.0 and stats["contrast"] == 0.0 and stats["clipped"] == 0.0


def test_grey_checkerboard_closed_form():
    # black / white checkerboard in grey: Y alternates 0 and 1; the Laplacian of a 1-pixel checker is -4 at white
    # pixels and +4 at black ones (each neighbour differs by 1), so its variance is 16; RMS contrast 0.5;
    # every channel value is 0 or 255
    yy, xx = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    grey = ((yy + xx) % 2).double() * 2 - 1
    stats = image_statistics(grey.expand(1, 3, 8, 8))
    assert stats["sharpness"] == pytest.approx(16.0)
    assert stats["contrast"] == pytest.approx(0.5)
    assert stats["clipped"] == 1.0


def test_luminance_weights_and_set_average():
    # a pure red image has Y = 0.299 everywhere (flat) and one third of its channel values at 255, two at 0
    red = torch.full((1, 3, 4, 4), -1.0)
    red[:, 0] = 1.0
    # a vertical edge in grey: left half 0, right half 1 -> Laplacian +-1 on the two columns at the edge
    edge = torch.full((1, 3, 4, 4), -1.0)
    edge[..., 2:] = 1.0
    stats = image_statistics(torch.cat([red, edge]))
    # edge image: valid Laplacian region 2x2: columns 1 (value +1) and 2 (value -1): variance 1
    assert stats["sharpness"] == pytest.approx((0.0 + 1.0) / 2)
    assert stats["contrast"] == pytest.approx((0.0 + 0.5) / 2)
    assert stats["clipped"] == pytest.approx(1.0)
