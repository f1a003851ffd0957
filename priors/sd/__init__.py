"""Latent Stable Diffusion prior (diffusers UNet + VAE + CLIP text encoder).

Importing this package imports diffusers; ``import priors`` alone does not. ``priors.sd.testing``: small
random-weight SD-shaped models for tests.
"""

from .attention import IdentitySelfAttnProcessor
from .convert import ldm_checkpoint, save_single_file
from .layers import ldm_aliases, ldm_blocks, skip_branches
from .load import CONFIG_PATTERNS, hub_patterns, load_sd, save_sd
from .prior import StableDiffusionPrior
from .testing import byte_tokenizer, random_sd_prior, random_text_encoder, random_unet, random_vae, sd_scheduler

__all__ = [
    "CONFIG_PATTERNS",
    "IdentitySelfAttnProcessor",
    "StableDiffusionPrior",
    "byte_tokenizer",
    "hub_patterns",
    "ldm_aliases",
    "ldm_blocks",
    "ldm_checkpoint",
    "load_sd",
    "random_sd_prior",
    "random_text_encoder",
    "random_unet",
    "random_vae",
    "save_sd",
    "save_single_file",
    "sd_scheduler",
    "skip_branches",
]
