"""Learned diffusion priors: pixel-space ADM (``priors.adm``) and latent Stable Diffusion (``priors.sd``).

Both are driven through one interface (the ``Prior`` protocol, ``LatentPrior`` for latent ones; base class
``DiffusionPrior``: ``prior(x_t, t) -> ModelOutput``) and both support perturbed self-attention for PAG
(``perturbed_self_attention``; each prior says how through its ``attention_kind``). ``VPDenoiser`` / ``EDMDenoiser``
read x0_hat, the noise, the score and EDM's D(x; sigma) off one noise prediction: the solvers' only conversions.
"""

from .attention import (
    AttentionKind,
    layer_aliases,
    perturbed_self_attention,
    register_attention_kind,
    resolve_layers,
    self_attention_layers,
)
from .base import DiffusionPrior, LatentPrior, ModelOutput, Prior
from .denoiser import EDMDenoiser, VPDenoiser
from .gaussian import GaussianPrior, linear_operator_matrix
from .prefix import SharedPrefix, SkipBranch
from .schedule import NoiseSchedule, SamplingSchedule

__all__ = [
    "AttentionKind",
    "DiffusionPrior",
    "EDMDenoiser",
    "GaussianPrior",
    "LatentPrior",
    "ModelOutput",
    "NoiseSchedule",
    "Prior",
    "SamplingSchedule",
    "SharedPrefix",
    "SkipBranch",
    "VPDenoiser",
    "layer_aliases",
    "linear_operator_matrix",
    "perturbed_self_attention",
    "register_attention_kind",
    "resolve_layers",
    "self_attention_layers",
]
