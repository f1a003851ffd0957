"""Pixel-space ADM prior: guided-diffusion-compatible UNet, strict checkpoint loading, presets and PAG layers."""

from .load import CheckpointError, load_adm, load_state_dict_file, read_config, save_adm, state_dict_mismatch
from .presets import PAG_LAYERS, PAPER_IMAGENET_DPS_LAYERS, PRESETS, pag_layers, preset_config
from .unet import ADMUNet, AttentionBlock, GroupNorm32, ResBlock, randomize_, timestep_embedding

__all__ = [
    "PAG_LAYERS",
    "PAPER_IMAGENET_DPS_LAYERS",
    "PRESETS",
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
