"""Pixel-space ADM prior: guided-diffusion-compatible UNet, presets and PAG layers."""

from .presets import PAG_LAYERS, PAPER_IMAGENET_DPS_LAYERS, PRESETS, pag_layers, preset_config
from .unet import ADMUNet, AttentionBlock, GroupNorm32, ResBlock, randomize_, timestep_embedding

__all__ = [
    "PAG_LAYERS",
    "PAPER_IMAGENET_DPS_LAYERS",
    "PRESETS",
    "ADMUNet",
    "AttentionBlock",
    "GroupNorm32",
    "ResBlock",
    "pag_layers",
    "preset_config",
    "randomize_",
    "timestep_embedding",
]
