"""Fourier phase retrieval y = |F(pad(x))|: the magnitude of the centred, orthonormal 2-D DFT of the zero-padded image.

Two published conventions (both ``oversample = 2``, Gaussian noise sigma 0.05):

- ``"dps"`` (DPS2022/diffusion-posterior-sampling ``guided_diffusion/measurements.py`` ``PhaseRetrievalOperator``,
  ``configs/phase_retrieval_config.yaml``): the image in [-1, 1] is padded as it is, by
  ``int(oversample / 8 * 256)`` zeros on each side;
- ``"daps"`` (zhangbingliang2019/DAPS ``forward_operator/__init__.py`` ``PhaseRetrieval``,
  ``configs/task/phase_retrieval.yaml``): the image is first mapped to [0, 1] (x / 2 + 1 / 2), then padded by
  ``int(oversample / 8 * resolution)`` zeros (resolution 256).

Both take the DFT with fastMRI's ``fft2c_new`` (orthonormal, ``ifftshift`` before and ``fftshift`` after); the
``ifftshift`` of the input only changes phases, so the magnitude is ``fftshift(|fft2(pad(x), norm="ortho")|)``.
At 256 px both pad by 64; at another size we pad by the same fraction of the image, ``int(oversample / 8 * H)``
(the DPS code's 256 is its image size). The references cast to complex64; we keep the input's precision
(float64 in, float64 out), and compute float16 / bfloat16 inputs in float32 (torch has no half-precision FFT on CPUs).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from .base import NoiseSpec, Operator

Convention = Literal["dps", "daps"]
CONVENTIONS: tuple[str, ...] = ("dps", "daps")


def check_convention(convention: str, what: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"{what}: convention must be one of {', '.join(CONVENTIONS)}, got {convention!r}")


class PhaseRetrieval(Operator):
    """A x = fftshift(|DFT_ortho(pad(x'))|) per channel, x' = x ("dps") or (x + 1) / 2 ("daps"); nonlinear.

    ``oversample``: padding of ``int(oversample / 8 * image_size)`` pixels on each side (2: 64 at 256 px);
    ``image_size``: the working resolution (the runner passes it). Measurements are (B, C, H + 2 pad, W + 2 pad).
    """

    name = "phase_retrieval"
    is_linear = False

    def __init__(
        self,
        oversample: float = 2.0,
        image_size: int = 256,
        convention: Convention = "dps",
        noise: NoiseSpec = None,
    ):
        super().__init__(noise)
        check_convention(convention, "phase_retrieval")
        if oversample < 0:
            raise ValueError(f"phase_retrieval: oversample must be >= 0, got {oversample}")
        self.oversample = float(oversample)
        self.image_size = int(image_size)
        self.convention = convention
        self.pad = int(oversample / 8.0 * image_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_image(x)
        dtype = x.dtype
        if dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        if self.convention == "daps":
            x = x * 0.5 + 0.5  # [-1, 1] -> [0, 1]
        padded = F.pad(x, (self.pad, self.pad, self.pad, self.pad))
        spectrum = torch.fft.fft2(padded, norm="ortho")
        return torch.fft.fftshift(spectrum.abs(), dim=(-2, -1)).to(dtype)

    def extra_repr(self) -> str:
        return f"oversample={self.oversample}, pad={self.pad}, convention={self.convention!r}"
