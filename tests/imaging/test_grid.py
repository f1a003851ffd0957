"""Restoration grids: the pictures side by side, under a strip that names each column."""

from __future__ import annotations

import torch

from imaging import restoration_grid


def test_grid_has_the_images_under_a_label_per_column():
    g = torch.Generator().manual_seed(0)
    label, recon, frame = (torch.rand(3, 32, 32, generator=g) * 2 - 1 for _ in range(3))
    y = torch.rand(3, 8, 8, generator=g) * 2 - 1  # super-resolution: shown upsampled with nearest
    grid = restoration_grid(label, y, recon, [frame, frame])
    strip, images = grid[:, :14], grid[:, 14:]
    assert grid.shape == (3, 14 + 32, 5 * 32 + 4 * 2)
    # the images, 2 px apart: checked against slices of the inputs, not through image_row
    assert torch.equal(images[:, :, 0:32], label)
    assert torch.equal(images[:, :, 34:66], y.repeat_interleave(4, dim=1).repeat_interleave(4, dim=2))
    assert torch.equal(images[:, :, 68:100], recon)
    assert torch.equal(images[:, :, 102:134], frame)
    # text (dark pixels on white) above each of the three columns and above the progress frames
    dark = strip.min(dim=0).values < 0
    for x0, x1 in ((0, 32), (34, 66), (68, 100), (102, grid.shape[-1])):
        assert dark[:, x0:x1].any()
    assert not dark[:, 32:34].any() and not dark[:, 66:68].any()  # nothing drawn over the gaps between columns
    assert torch.equal(restoration_grid(label, y, recon, [frame, frame], labels=False), images)
