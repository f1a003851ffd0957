"""Latent Stable Diffusion prior (diffusers UNet + VAE + CLIP text encoder).

Importing this package imports diffusers; ``import priors`` alone does not.
"""

from .attention import IdentitySelfAttnProcessor
from .convert import ldm_checkpoint, save_single_file
from .layers import ldm_aliases, ldm_blocks, skip_branches
from .load import CONFIG_PATTERNS, hub_patterns, load_sd, save_sd
from .prior import StableDiffusionPrior
from .tiny import build_tiny_sd_prior, tiny_scheduler, tiny_text_encoder, tiny_tokenizer, tiny_unet, tiny_vae

__all__ = [
    "CONFIG_PATTERNS",
    "IdentitySelfAttnProcessor",
    "StableDiffusionPrior",
    "build_tiny_sd_prior",
    "hub_patterns",
    "ldm_aliases",
    "ldm_blocks",
    "ldm_checkpoint",
    "load_sd",
    "save_sd",
    "save_single_file",
    "skip_branches",
    "tiny_scheduler",
    "tiny_text_encoder",
    "tiny_tokenizer",
    "tiny_unet",
    "tiny_vae",
]
