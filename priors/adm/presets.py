"""Named ADM configurations (``create_model`` keyword arguments) and the PAG layers used with them.

- ``ffhq_256``: DPS's ``ffhq_10m.pt`` (DPS ``configs/model_config.yaml``): 93.6M parameters, 362 keys.
- ``imagenet_256_uncond``: guided-diffusion's ``256x256_diffusion_uncond.pt`` (DPS's ImageNet prior):
  552.8M parameters, 566 keys.
- ``imagenet_256_cond``: guided-diffusion's class-conditional ``256x256_diffusion.pt``.
- ``test``: a small 32 px model for tests (random weights); same block types (scale-shift norm, ResBlock
  resampling, multi-head legacy-order attention at 16 and 8 px). Not the shipped trained tiny ADM, whose
  architecture is ``priors.tiny.TINY_ADM_CONFIG``.

guided-diffusion samples the 256 px ImageNet models with ``use_fp16=True``; the presets say False (CPU
friendly, float32 everywhere). Pass ``use_fp16=True`` as an override to get its float16 torso.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

_ADM_256 = dict(
    image_size=256,
    channel_mult="1,1,2,2,4,4",
    learn_sigma=True,
    class_cond=False,
    num_heads=4,
    num_head_channels=64,
    num_heads_upsample=-1,
    use_scale_shift_norm=True,
    dropout=0.0,
    resblock_updown=True,
    use_fp16=False,
    use_new_attention_order=False,
)

PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "ffhq_256": MappingProxyType(
            {**_ADM_256, "num_channels": 128, "num_res_blocks": 1, "attention_resolutions": "16"}
        ),
        "imagenet_256_uncond": MappingProxyType(
            {**_ADM_256, "num_channels": 256, "num_res_blocks": 2, "attention_resolutions": "32,16,8"}
        ),
        "imagenet_256_cond": MappingProxyType(
            {
                **_ADM_256,
                "num_channels": 256,
                "num_res_blocks": 2,
                "attention_resolutions": "32,16,8",
                "class_cond": True,
            }
        ),
        "test": MappingProxyType(
            {
                "image_size": 32,
                "num_channels": 32,
                "num_res_blocks": 1,
                "channel_mult": "1,2,2",
                "attention_resolutions": "16,8",
                "num_heads": 4,
                "num_head_channels": 16,
                "learn_sigma": True,
                "use_scale_shift_norm": True,
                "resblock_updown": True,
                "dropout": 0.0,
            }
        ),
    }
)

# PAG's perturbed self-attention layers per preset and use (PAG paper App. 0.A.1 and Table 7).
# ``dps``: DPS + PAG; ``sampling``: unconditional / class-conditional generation.
# The paper lists ``input_blocks.9.1, middle_block.1, output_blocks.2.1`` for DPS on ImageNet, but in the
# 256x256 ImageNet UNet ``input_blocks.9`` is the ResBlock that downsamples 64 -> 32 px and has no ``.1``
# (its attention layers are input_blocks.10.1, 11.1, 13.1, 14.1, 16.1, 17.1): ``input_blocks.9.1`` exists only in
# the FFHQ model. We keep the two layers that exist and do not guess a replacement for the third.
# ``test`` is not from the paper: its first attention layer (16 px), the analogue of FFHQ's ``input_blocks.9.1``.
PAG_LAYERS: Mapping[str, Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "ffhq_256": MappingProxyType({"dps": ("input_blocks.9.1",)}),
        "imagenet_256_uncond": MappingProxyType(
            {
                "dps": ("middle_block.1", "output_blocks.2.1"),
                "sampling": ("input_blocks.14.1", "input_blocks.16.1", "input_blocks.17.1", "middle_block.1"),
            }
        ),
        "imagenet_256_cond": MappingProxyType({"sampling": ("input_blocks.14.1",)}),
        "test": MappingProxyType({"dps": ("input_blocks.3.1",), "sampling": ("input_blocks.3.1",)}),
    }
)

# What the paper's Table 7 literally says for DPS + PAG on ImageNet (not resolvable on the ImageNet UNet).
PAPER_IMAGENET_DPS_LAYERS: tuple[str, ...] = ("input_blocks.9.1", "middle_block.1", "output_blocks.2.1")


def preset_config(preset: str | Mapping[str, Any], **overrides: Any) -> dict[str, Any]:
    """A fresh dict of ``ADMUNet`` keyword arguments: a preset's (by name) or a given mapping, plus overrides."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise KeyError(f"unknown ADM preset {preset!r}; valid presets: {', '.join(PRESETS)}")
        preset = PRESETS[preset]
    return {**preset, **overrides}


def pag_layers(preset: str, use: str = "dps") -> tuple[str, ...]:
    """The PAG layers of ``preset`` for ``use`` (``dps`` or ``sampling``); unknown combinations raise."""
    uses = PAG_LAYERS.get(preset)
    if uses is None:
        raise KeyError(f"no PAG layers recorded for preset {preset!r}; presets with layers: {', '.join(PAG_LAYERS)}")
    if use not in uses:
        raise KeyError(f"no PAG layers for use {use!r} with preset {preset!r}; recorded uses: {', '.join(uses)}")
    return uses[use]
