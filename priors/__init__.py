"""Learned diffusion priors: pixel-space ADM (``priors.adm``) and latent Stable Diffusion (``priors.sd``).

Both are driven through one interface (``DiffusionPrior``: ``prior(x_t, t) -> ModelOutput``) and both
support perturbed self-attention for PAG (``perturbed_self_attention``).
"""

from .attention import layer_aliases, perturbed_self_attention, resolve_layers, self_attention_layers
from .base import DiffusionPrior, ModelOutput
from .gaussian import GaussianPrior, linear_operator_matrix
from .prefix import SharedPrefix, SkipBranch
from .schedule import NoiseSchedule, SamplingSchedule

__all__ = [
    "DiffusionPrior",
    "GaussianPrior",
    "ModelOutput",
    "NoiseSchedule",
    "SamplingSchedule",
    "SharedPrefix",
    "SkipBranch",
    "layer_aliases",
    "linear_operator_matrix",
    "perturbed_self_attention",
    "resolve_layers",
    "self_attention_layers",
]
