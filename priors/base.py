"""The interface the samplers drive (k-diffusion's ``external.py`` idea), documented as one protocol.

``Prior`` is everything a solver uses of a prior: the noise prediction ``prior(x_t, t, cond)``, the training
``schedule``, how the DDPM step's ``variance`` is chosen, the ``network`` in which PAG's layers live with their
resolution (``resolve_layers``) and, for the shared prefix, ``skip_branches``; ``LatentPrior`` adds the
autoencoder (``encode`` / ``decode``) and text conditioning (``prompt_embedding``). Whether the network is a
guided-diffusion ADM in pixel space or a Stable Diffusion UNet in latent space is the wrapper's business.
``DiffusionPrior`` is the base class the shipped priors derive from.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from . import attention
from .attention import AttentionKind
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


@runtime_checkable
class Prior(Protocol):
    """What the solvers use of any prior (pixel or latent)."""

    network: nn.Module  #: the module tree PAG's layer names (``input_blocks.9.1``, ``mid_block...attn1``) refer to
    schedule: NoiseSchedule  #: the training noise schedule
    sample_shape: tuple[int, int, int]  #: (C, H, W) of x_t (the latent shape for latent priors)
    variance: str  #: the DDPM step's variance: ``fixed_small`` or ``learned_range`` (learn_sigma ADMs)
    is_latent: bool  #: x_t lives in an autoencoder's latent space (then it is a ``LatentPrior``)

    def __call__(self, x_t: Tensor, t: Tensor | int, cond: object | None = None) -> ModelOutput: ...

    def parameters(self) -> Iterator[nn.Parameter]: ...

    def skip_branches(self) -> list[SkipBranch]: ...

    def resolve_layers(self, names: Sequence[str]) -> list[str]: ...

    def self_attention_layers(self) -> dict[str, nn.Module]: ...


@runtime_checkable
class LatentPrior(Prior, Protocol):
    """A prior over an autoencoder's latents (PSLD's): images in [-1, 1] <-> scaled latents, text conditioning."""

    image_size: tuple[int, int]  #: (H, W) of the images

    def encode(
        self, x: Tensor, sample: bool = False, generator: torch.Generator | Sequence[torch.Generator] | None = None
    ) -> Tensor: ...

    def decode(self, z: Tensor, clamp: bool = False) -> Tensor: ...

    def prompt_embedding(self, prompt: str = "") -> Tensor: ...


class DiffusionPrior(nn.Module):
    """Base class of the priors (implements ``Prior``). Subclasses set ``network``, ``schedule``,
    ``sample_shape`` (and ``variance``, ``is_latent``) and say how PAG finds and perturbs the network's
    self-attention layers with ``attention_kind`` (``priors.attention.AttentionKind``; None: the kinds registered
    for the network's modules, e.g. none for a network without attention)."""

    network: nn.Module
    schedule: NoiseSchedule
    sample_shape: tuple[int, int, int]
    variance: str = "fixed_small"
    is_latent: bool = False
    attention_kind: AttentionKind | None = None

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

    def self_attention_layers(self) -> dict[str, nn.Module]:
        """Self-attention layers that PAG may perturb, by their canonical module path."""
        return attention.self_attention_layers(self)

    def resolve_layers(self, names: Sequence[str]) -> list[str]:
        """Canonical names of ``names`` (aliases expanded); unknown names raise listing the valid ones."""
        return attention.resolve_layers(self, names)
