"""The uniform interface the samplers drive (k-diffusion's ``external.py`` idea).

A sampler only ever calls ``prior(x_t, t, cond)`` and reads ``prior.schedule``; whether the network is a
guided-diffusion ADM in pixel space or a Stable Diffusion UNet in latent space is the wrapper's business.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .prefix import SkipBranch
from .schedule import NoiseSchedule


@dataclass
class ModelOutput:
    """What a prior predicts at (x_t, t).

    eps: the noise prediction (same shape as x_t).
    var_values: ADM's learned-range variance channels in [-1, 1] (``learn_sigma`` models), else None.
    """

    eps: Tensor
    var_values: Tensor | None = None


class DiffusionPrior(nn.Module):
    """Base class of the priors. Subclasses set ``network``, ``schedule``, ``sample_shape``.

    Attributes:
        network: the module tree in which PAG layer names (``input_blocks.9.1``, ``mid_block...attn1``) live.
        schedule: the training noise schedule.
        sample_shape: (C, H, W) of x_t (the latent shape for latent priors).
        variance: how the DDPM step's variance is chosen (``learned_range`` for learn_sigma ADMs).
        is_latent: True when x_t lives in an autoencoder's latent space (``encode``/``decode`` exist).
    """

    network: nn.Module
    schedule: NoiseSchedule
    sample_shape: tuple[int, int, int]
    variance: str = "fixed_small"
    is_latent: bool = False

    def forward(self, x_t: Tensor, t: Tensor | int, cond: object | None = None) -> ModelOutput:
        raise NotImplementedError

    def timestep_tensor(self, t: Tensor | int, x_t: Tensor) -> Tensor:
        """``t`` as a (B,) long tensor on x_t's device."""
        t = torch.as_tensor(t, device=x_t.device)
        if t.ndim == 0:
            t = t.expand(x_t.shape[0])
        return t.long()

    def skip_branches(self) -> list[SkipBranch]:
        """Decoder blocks fed ``cat([h, skip])`` whose skip parts PAG's shared prefix may reuse (none by default)."""
        return []

    def attention_layers(self) -> dict[str, nn.Module]:
        """Self-attention layers that PAG may perturb, by their canonical module path."""
        from .attention import self_attention_layers

        return self_attention_layers(self.network)

    def resolve_layers(self, names: Sequence[str]) -> list[str]:
        """Canonical names of ``names`` (aliases expanded); unknown names raise listing the valid ones."""
        from .attention import resolve_layers

        return resolve_layers(self.network, names)
