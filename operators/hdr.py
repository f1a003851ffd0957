"""High dynamic range: y = clip(scale * x, -1, 1), the over-exposure of DAPS (zhangbingliang2019/DAPS
``forward_operator/__init__.py`` ``HighDynamicRange``: ``torch.clip(data * scale, -1, 1)``; ``configs/task/hdr.yaml``:
scale 2, Gaussian noise sigma 0.05 on the pixel rows, 0.01 on the Stable Diffusion row)."""

from __future__ import annotations

import torch

from .base import NoiseSpec, Operator


class HighDynamicRange(Operator):
    """A x = clip(scale * x, -1, 1) on [-1, 1] images: pixels with |x| > 1 / scale saturate (nonlinear; the
    gradient is ``scale`` inside the range and 0 where clipped)."""

    name = "hdr"
    is_linear = False

    def __init__(self, scale: float = 2.0, noise: NoiseSpec = None):
        super().__init__(noise)
        if scale <= 0:
            raise ValueError(f"hdr: scale must be > 0, got {scale}")
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_image(x)
        return torch.clamp(x * self.scale, -1.0, 1.0)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"
