"""The measurement-operator abstraction: y = A(x) + n."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .noise import GaussianNoise, NoiseModel, make_noise
from .random import Generators

#: what ``noise=`` accepts: a model, a config mapping such as ``{"name": "gaussian", "sigma": 0.05}``, or None
NoiseSpec = NoiseModel | Mapping[str, Any] | None


def as_noise_model(noise: NoiseSpec) -> NoiseModel:
    """A ``NoiseModel`` from ``noise=``: None is the DPS default (Gaussian, sigma 0.05 on [-1, 1])."""
    if noise is None:
        return GaussianNoise(0.05)
    if isinstance(noise, NoiseModel):
        return noise
    if isinstance(noise, Mapping):
        config = dict(noise)
        if "name" not in config:
            raise ValueError(f"a noise mapping needs a 'name' key ('gaussian', 'poisson', 'none'), got {config}")
        return make_noise(config.pop("name"), **config)
    raise TypeError(f"noise must be a NoiseModel, a mapping with a 'name' key, or None; got {type(noise).__name__}")


class Operator(nn.Module):
    """A measurement operator A on images (B, C, H, W) in [-1, 1], with a noise model attached.

    - ``op(x)`` is A x (differentiable, batched, device/dtype agnostic);
    - ``op.adjoint(y)`` is the exact adjoint A^T: <A x, y> = <x, A^T y>;
    - ``op.transpose(y)`` is the back-projection PSLD's gluing term uses (DPS's ``transpose``);
      it equals the adjoint unless a subclass documents otherwise;
    - ``op.measure(x, generator)`` is A x + n.

    Random parameters (masks, kernels) are drawn once, at construction, from explicit generators,
    and stored as buffers with a leading batch dimension (one per image, or 1 to broadcast).
    """

    #: registry name, set by subclasses
    name: str = "operator"

    def __init__(self, noise: NoiseSpec = None):
        super().__init__()
        self.noise = as_noise_model(noise)

    # -- to implement -------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # A x
        raise NotImplementedError

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:  # A^T y
        raise NotImplementedError

    # -- provided -----------------------------------------------------------------------------
    def transpose(self, y: torch.Tensor) -> torch.Tensor:
        """Back-projection used by PSLD's gluing term; the adjoint unless overridden."""
        return self.adjoint(y)

    def measure(self, x: torch.Tensor, generator: Generators | None = None) -> torch.Tensor:
        """y = A(x) + n. ``generator``: one per image for batch-size-invariant noise."""
        return self.noise(self(x), generator)

    @staticmethod
    def check_image(x: torch.Tensor, what: str = "input") -> None:
        """Clear errors for the mistakes people make most: wrong rank, non-float tensors."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 4:
            raise ValueError(f"{what} must have shape (B, C, H, W), got a tensor of rank {x.ndim} {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"{what} must be a floating-point tensor in [-1, 1], got dtype {x.dtype}")

    @staticmethod
    def check_batch(x: torch.Tensor, param_batch: int, what: str) -> None:
        """Per-image parameters (B of them) apply to batches of B; a single one broadcasts."""
        if param_batch not in (1, x.shape[0]):
            raise ValueError(
                f"this operator holds {param_batch} {what} (one per image) but got a batch of {x.shape[0]}"
            )
