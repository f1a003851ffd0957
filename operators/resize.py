"""Super-resolution: y = D x, MATLAB-style antialiased bicubic downsampling as in DPS (Shocher's ``Resizer``).

The downsampling is separable and linear, so it is stored as two small matrices, D_h (h x H) and D_w (w x W):
A x = D_h x D_w^T and A^T y = D_h^T y D_w, which makes the adjoint exact by construction.

Facts reproduced from Shocher's ``Resizer`` (DPS ``util/resizer.py``), for an integer factor f:
  - output pixel o (0-based) is centred at f (o + 1/2) in input coordinates where input pixel j spans [j, j+1);
  - its weights are the Keys cubic (a = -0.5, MATLAB's ``imresize``) stretched by f for antialiasing,
    cubic((j + 1/2 - f (o + 1/2)) / f) / f, over 4 f + 2 taps, then normalised to sum 1;
  - taps outside the image are mirrored symmetrically (MATLAB ``'symmetric'``: x[-1] = x[0], x[H] = x[H-1]),
    i.e. the edge pixel is repeated; this differs from ``torch.nn.functional.interpolate(antialias=True)`` and
    PIL, which drop the outside taps and renormalise, so the two agree only away from the borders.
"""

from __future__ import annotations

import numbers
from typing import Literal

import torch
import torch.nn.functional as F

from .base import NoiseSpec, Operator

SRTranspose = Literal["nearest", "bicubic", "adjoint"]


def cubic(t: torch.Tensor) -> torch.Tensor:
    """Keys cubic convolution kernel with a = -0.5 (MATLAB ``imresize``), support [-2, 2]."""
    at = t.abs()
    at2, at3 = at**2, at**3
    near = (1.5 * at3 - 2.5 * at2 + 1) * (at <= 1)
    far = (-0.5 * at3 + 2.5 * at2 - 4 * at + 2) * ((at > 1) & (at <= 2))
    return near + far


def downsampling_matrix(in_length: int, factor: int) -> torch.Tensor:
    """The (in_length // factor, in_length) float64 matrix of antialiased bicubic downsampling along one axis."""
    out_length = in_length // factor
    centre = factor * (torch.arange(out_length, dtype=torch.float64) + 0.5)
    # every input pixel whose centre lies in the stretched support |d| < 2 f, plus one spare tap on each side
    first = torch.floor(centre - 2 * factor).long() - 1
    taps = first[:, None] + torch.arange(4 * factor + 2)
    weights = cubic((taps + 0.5 - centre[:, None]) / factor) / factor
    weights = weights / weights.sum(dim=1, keepdim=True)
    # symmetric (half-sample) reflection with period 2 * in_length: ... x1 x0 | x0 x1 ... x_{n-1} | x_{n-1} ...
    folded = taps % (2 * in_length)
    index = torch.where(folded < in_length, folded, 2 * in_length - 1 - folded)
    return torch.zeros(out_length, in_length, dtype=torch.float64).scatter_add_(1, index, weights)


def as_integer_factor(factor: float) -> int:
    """Validate a super-resolution factor: a positive integer (``4.0`` from a config is accepted)."""
    if isinstance(factor, bool) or not isinstance(factor, numbers.Real) or not float(factor).is_integer():
        raise ValueError(f"super-resolution factor must be a positive integer (e.g. 4 or 8), got {factor!r}")
    if int(factor) < 1:
        raise ValueError(f"super-resolution factor must be >= 1, got {factor!r}")
    return int(factor)


class SuperResolution(Operator):
    """A x = antialiased bicubic downsampling of x by an integer ``factor`` (H and W must be multiples of it).

    ``transpose`` (PSLD's back-projection; none of them is the adjoint):
      - ``"nearest"`` (default): DPS's ``SuperResolutionOperator.transpose``, nearest-neighbour upsampling by the
        factor (**quirk**: what PSLD's gluing term uses). It is a right inverse of block averaging, not of A.
      - ``"bicubic"``: plain bicubic upsampling (``interpolate(mode="bicubic")``, PyTorch's a = -0.75), a smoother
        naive inverse.
      - ``"adjoint"``: the exact A^T. Note its scale: each output pixel's weights sum to 1, so each input pixel
        receives about 1/f of a weight per axis, and A^T of a constant c is about c / f^2, not c.
    """

    name = "super_resolution"

    def __init__(self, factor: float = 4, noise: NoiseSpec = None, transpose_mode: SRTranspose = "nearest"):
        super().__init__(noise)
        self.factor = as_integer_factor(factor)
        if transpose_mode not in ("nearest", "bicubic", "adjoint"):
            raise ValueError(f"transpose_mode must be 'nearest', 'bicubic' or 'adjoint', got {transpose_mode!r}")
        self.transpose_mode = transpose_mode
        # (H, W, device, dtype) -> (D_h, D_w): derived data, rebuilt on demand, not part of the state dict
        self._matrices: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def matrices(self, height: int, width: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(D_h, D_w) for an input of size (height, width), on ``like``'s device and in its dtype (cached)."""
        key = (height, width, like.device, like.dtype)
        if key not in self._matrices:
            # built once in float64 on the CPU, then cast: the weights are exact whatever the compute dtype
            self._matrices[key] = tuple(
                downsampling_matrix(n, self.factor).to(device=like.device, dtype=like.dtype) for n in (height, width)
            )
        return self._matrices[key]

    def _check_divisible(self, height: int, width: int) -> None:
        if height % self.factor or width % self.factor:
            raise ValueError(
                f"image size {height}x{width} is not a multiple of the super-resolution factor {self.factor}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_image(x, "input")
        height, width = x.shape[-2:]
        self._check_divisible(height, width)
        d_h, d_w = self.matrices(height, width, x)
        return d_h @ (x @ d_w.T)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        self.check_image(y, "measurement")
        d_h, d_w = self.matrices(y.shape[-2] * self.factor, y.shape[-1] * self.factor, y)
        return d_h.T @ (y @ d_w)

    def transpose(self, y: torch.Tensor) -> torch.Tensor:
        """DPS's nearest upsampling by default; see the class docstring."""
        self.check_image(y, "measurement")
        if self.transpose_mode == "adjoint":
            return self.adjoint(y)
        if self.transpose_mode == "bicubic":
            return F.interpolate(y, scale_factor=self.factor, mode="bicubic", align_corners=False)
        return F.interpolate(y, scale_factor=self.factor, mode="nearest")

    def extra_repr(self) -> str:
        return f"factor={self.factor}, transpose_mode={self.transpose_mode!r}"
