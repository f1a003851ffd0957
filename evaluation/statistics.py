"""Per-set image statistics that tell over-sharpened or over-contrasted samples from the data's.

On the 8-bit images (as saved), luminance Y = 0.299 R + 0.587 G + 0.114 B in [0, 1] (ITU-R BT.601):

- sharpness: variance of the 3x3 Laplacian (0 1 0 / 1 -4 1 / 0 1 0) of Y over the valid interior, per image;
- contrast: RMS contrast, the standard deviation of Y over the image;
- clipped: share of channel values at 0 or 255 (saturated highlights / crushed shadows).

Each is averaged over the images of the set (``image_statistics``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from imaging import quantize

_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
_LUMA = torch.tensor([0.299, 0.587, 0.114])


def image_statistics(images: torch.Tensor) -> dict[str, float]:
    """Mean over the set (B, 3, H, W) in [-1, 1] of each image's sharpness, contrast and clipped share."""
    x = (quantize(images.detach().cpu().double()) + 1) / 2  # the 8-bit values, in [0, 1]
    y = (x * _LUMA.double().view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    laplacian = F.conv2d(y, _LAPLACIAN.double().view(1, 1, 3, 3))
    codes = (x * 255).round()
    return {
        "sharpness": float(laplacian.flatten(1).var(dim=1, unbiased=False).mean()),
        "contrast": float(y.flatten(1).std(dim=1, unbiased=False).mean()),
        "clipped": float(((codes == 0) | (codes == 255)).double().mean()),
    }
