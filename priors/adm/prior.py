"""``ADMPrior``: a pixel-space ADM UNet behind the samplers' ``DiffusionPrior`` interface."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor

from ..base import DiffusionPrior, ModelOutput
from ..prefix import SkipBranch
from ..schedule import NoiseSchedule
from .load import load_adm
from .presets import preset_config
from .unet import ADM_ATTENTION, ADMUNet, randomize_


class ADMPrior(DiffusionPrior):
    """eps (and learned-range variance values) of an ``ADMUNet`` at (x_t, t), images in [-1, 1].

    ``schedule`` defaults to guided-diffusion's linear betas (1e-4 .. 0.02, 1000 steps); ``variance`` is
    ``learned_range`` for ``learn_sigma`` models, else ``fixed_small``. ``cond`` is the class label(s) of a
    class-conditional model (an int or a (B,) tensor), and must be None for an unconditional one.
    """

    is_latent = False
    attention_kind = ADM_ATTENTION

    def __init__(self, network: ADMUNet, schedule: NoiseSchedule | None = None):
        super().__init__()
        self.network = network
        self.schedule = schedule if schedule is not None else NoiseSchedule.linear()
        self.sample_shape = (network.in_channels, network.image_size, network.image_size)
        self.variance = "learned_range" if network.learn_sigma else "fixed_small"

    @property
    def class_cond(self) -> bool:
        return self.network.num_classes is not None

    def forward(self, x_t: Tensor, t: Tensor | int, cond: Tensor | int | None = None) -> ModelOutput:
        labels = self._labels(cond, x_t)
        out = self.network(x_t, self.timestep_tensor(t, x_t), labels)
        if not self.network.learn_sigma:
            return ModelOutput(eps=out)
        eps, var_values = out.split(self.network.in_channels, dim=1)
        return ModelOutput(eps=eps, var_values=var_values)

    def skip_branches(self) -> list[SkipBranch]:
        return self.network.skip_branches()

    def _labels(self, cond: Tensor | int | None, x_t: Tensor) -> Tensor | None:
        if not self.class_cond:
            if cond is not None:
                raise ValueError("this ADM prior is unconditional: cond must be None")
            return None
        if cond is None:
            raise ValueError("this ADM prior is class-conditional: pass the class labels as cond (int or (B,) tensor)")
        labels = torch.as_tensor(cond, device=x_t.device).long()
        if labels.ndim == 0:
            labels = labels.expand(x_t.shape[0])
        if labels.shape != (x_t.shape[0],):
            raise ValueError(f"class labels must have shape ({x_t.shape[0]},), got {tuple(labels.shape)}")
        num_classes = self.network.num_classes
        if bool(((labels < 0) | (labels >= num_classes)).any()):
            raise ValueError(f"class labels must lie in [0, {num_classes}), got {labels.tolist()}")
        return labels

    # -- constructors ------------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        preset: str | Mapping[str, Any] | None = None,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | None = None,
        schedule: NoiseSchedule | None = None,
        **overrides: Any,
    ) -> ADMPrior:
        """A pretrained prior: strict loading (``load_adm``), eval mode, parameters frozen."""
        network = load_adm(path, preset, device=device, dtype=dtype, **overrides)
        network.requires_grad_(False)
        return cls(network, schedule).eval()

    @classmethod
    def from_preset(
        cls,
        preset: str | Mapping[str, Any],
        *,
        init: Literal["random", "guided_diffusion"] = "random",
        generator: torch.Generator | None = None,
        schedule: NoiseSchedule | None = None,
        **overrides: Any,
    ) -> ADMPrior:
        """An untrained prior, in eval mode.

        ``init="random"``: every weight drawn from ``generator`` (seed 0 when None), nothing zero, so outputs
        and attention layers are non-trivial (for tests). ``init="guided_diffusion"``: PyTorch's default init
        with the residual output convs zeroed, as guided-diffusion starts training.
        """
        network = ADMUNet(**preset_config(preset, **overrides))
        if init == "random":
            randomize_(network, generator if generator is not None else torch.Generator().manual_seed(0))
        elif init != "guided_diffusion":
            raise ValueError(f"unknown init {init!r}; valid: 'random', 'guided_diffusion'")
        return cls(network, schedule).eval()
