"""The small priors trained with this project's code and shipped with it (procedural shapes, 32 px).

- ``load_tiny_adm()``: an ADM-architecture pixel prior (``scripts/train_prior.py``), for DPS;
- ``load_tiny_sd()``: a latent diffusion prior with SD1.5's block types (``scripts/train_latent_prior.py``), for
  PSLD, loaded through the same ``priors.sd.load_sd`` as Stable Diffusion 1.5.

Each comes with the command that produced it (``adm_shapes32.json``, ``sd_shapes32/training.json``).
They are demos and test fixtures, not models of natural images. Their architectures are ``TINY_ADM_CONFIG`` and
``TINY_SD_VAE_CONFIG`` / ``TINY_SD_UNET_CONFIG``. (The random-weight models the tests build are others:
``priors.adm`` preset ``test`` and ``priors.sd.testing``.)
"""

from __future__ import annotations

from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
TINY_ADM = HERE / "adm_shapes32.safetensors"
TINY_SD = HERE / "sd_shapes32"

#: the shipped tiny ADM's architecture (``ADMUNet`` keyword arguments; ``scripts/train_prior.py`` trains it)
TINY_ADM_CONFIG = {
    "image_size": 32,
    "num_channels": 32,
    "num_res_blocks": 2,
    "channel_mult": "1,2,2",
    "attention_resolutions": "16,8",
    "num_head_channels": 32,
    "learn_sigma": True,
    "use_scale_shift_norm": True,
    "resblock_updown": True,
    "dropout": 0.0,
}

#: the shipped tiny latent prior's autoencoder (diffusers ``AutoencoderKL``; ``scripts/train_latent_prior.py``)
TINY_SD_VAE_CONFIG = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 3,
    "up_block_types": ["UpDecoderBlock2D"] * 3,
    "block_out_channels": [32, 64, 64],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 32,
}
#: ... and its UNet (diffusers ``UNet2DConditionModel``, SD1.5's block types)
TINY_SD_UNET_CONFIG = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [32, 64, 64, 64],
    "layers_per_block": 2,
    "attention_head_dim": 4,  # diffusers' name for the number of heads
    "cross_attention_dim": 64,
    "norm_num_groups": 32,
}
#: tokens of its fixed null text embedding (a seeded Gaussian draw, stored with the model)
TINY_SD_NULL_TOKENS = 4


def load_tiny_adm(device: str | torch.device = "cpu"):
    """The shipped tiny pixel prior as an ``ADMPrior`` (strict loading)."""
    from priors.adm import ADMPrior

    return ADMPrior.from_checkpoint(TINY_ADM, device=device)


def load_tiny_sd(device: str | torch.device = "cpu", **options):
    """The shipped tiny latent prior as a ``StableDiffusionPrior`` (``options``: see ``priors.sd.load_sd``)."""
    from priors.sd import load_sd

    return load_sd(TINY_SD, device=device, **options)


__all__ = [
    "TINY_ADM",
    "TINY_ADM_CONFIG",
    "TINY_SD",
    "TINY_SD_NULL_TOKENS",
    "TINY_SD_UNET_CONFIG",
    "TINY_SD_VAE_CONFIG",
    "load_tiny_adm",
    "load_tiny_sd",
]
