"""Pixel-space ADM prior: guided-diffusion-compatible UNet, strict checkpoint loading, presets and PAG layers.

from priors import perturbed_self_attention
from priors.adm import ADMPrior, pag_layers

prior = ADMPrior.from_checkpoint("models/ffhq_10m.pt", "ffhq_256")
out = prior(x_t, t)                                   # ModelOutput(eps, var_values)
with perturbed_self_attention(prior, pag_layers("ffhq_256", "dps")):
    out_perturbed = prior(x_t, t)
"""

from .load import CheckpointError, load_adm, load_state_dict_file, read_config, save_adm, state_dict_mismatch
from .presets import PAG_LAYERS, PAPER_IMAGENET_DPS_LAYERS, PRESETS, pag_layers, preset_config
from .prior import ADMPrior
from .unet import ADMUNet, AttentionBlock, GroupNorm32, ResBlock, randomize_, timestep_embedding

__all__ = [
    "PAG_LAYERS",
    "PAPER_IMAGENET_DPS_LAYERS",
    "PRESETS",
    "ADMPrior",
    "ADMUNet",
    "AttentionBlock",
    "CheckpointError",
    "GroupNorm32",
    "ResBlock",
    "load_adm",
    "load_state_dict_file",
    "pag_layers",
    "preset_config",
    "randomize_",
    "read_config",
    "save_adm",
    "state_dict_mismatch",
    "timestep_embedding",
]
