"""LDM (CompVis) module names of a diffusers ``UNet2DConditionModel``.

The papers (PAG, PSLD_PAG) name Stable Diffusion layers the way the original LDM code does
(``input_blocks.8.1``, ``middle_block.1``, ``output_blocks.5.1``); diffusers names the same modules
``down_blocks.2.attentions.1``, ``mid_block.attentions.0``, ``up_blocks.1.attentions.2``. The table between the
two is derived here from the UNet's config (block types, ``layers_per_block``), never hard-coded:

- ``input_blocks.0`` is ``conv_in``; then each down block ``i`` contributes ``layers_per_block[i]`` blocks
  ``[resnet, attention?]`` and, except the last, one downsampler block ``[downsample]``.
- ``middle_block`` is ``[resnet, attention, resnet]``.
- each up block ``i`` contributes ``layers_per_block[-1 - i] + 1`` blocks ``[resnet, attention?, upsample?]``
  (the upsampler sits in the block's last layer).

SD1.5 (``layers_per_block=2``): input_blocks 1, 2 (320 ch), 4, 5 (640), 7, 8 (1280) hold attention; 3, 6, 9 are
downsamplers; 10, 11 are resnets only. ``output_blocks`` 0-2 (up_blocks.0) have no attention, 3-11 do.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..prefix import SkipBranch


def _per_block(value: int | Sequence[int], n: int, name: str) -> list[int]:
    if isinstance(value, int):
        return [value] * n
    value = list(value)
    if len(value) != n:
        raise ValueError(f"{name} has {len(value)} entries for {n} blocks")
    return value


def _has_attention(block: nn.Module) -> bool:
    return len(getattr(block, "attentions", None) or []) > 0


def ldm_blocks(unet: nn.Module) -> dict[str, str]:
    """LDM module path -> diffusers module path for every block of the UNet (resnets, attentions, resamplers).

    Entries: ``input_blocks.N.0`` (conv_in / resnet), ``input_blocks.N.0.op`` (downsampler conv),
    ``input_blocks.N.1`` (attention), ``middle_block.K``, ``output_blocks.N.0`` / ``.1`` / ``.2.conv`` ...,
    plus ``time_embed.0/2`` and ``out.0/2``.
    """
    config = unet.config
    down_types, up_types = list(config.down_block_types), list(config.up_block_types)
    layers = _per_block(config.layers_per_block, len(down_types), "layers_per_block")
    table = {
        "time_embed.0": "time_embedding.linear_1",
        "time_embed.2": "time_embedding.linear_2",
        "input_blocks.0.0": "conv_in",
        "out.0": "conv_norm_out",
        "out.2": "conv_out",
    }

    n = 1
    for i, block_type in enumerate(down_types):
        block = unet.down_blocks[i]
        if len(block.resnets) != layers[i]:
            raise ValueError(
                f"down_blocks.{i} ({block_type}) has {len(block.resnets)} resnets, config says {layers[i]}"
            )
        for j in range(layers[i]):
            table[f"input_blocks.{n}.0"] = f"down_blocks.{i}.resnets.{j}"
            if _has_attention(block):
                table[f"input_blocks.{n}.1"] = f"down_blocks.{i}.attentions.{j}"
            n += 1
        if getattr(block, "downsamplers", None):
            table[f"input_blocks.{n}.0.op"] = f"down_blocks.{i}.downsamplers.0.conv"
            n += 1

    mid = getattr(unet, "mid_block", None)
    if mid is not None:
        k = 0
        for r in range(len(mid.resnets)):
            table[f"middle_block.{k}"] = f"mid_block.resnets.{r}"
            k += 1
            if r < len(getattr(mid, "attentions", None) or []):
                table[f"middle_block.{k}"] = f"mid_block.attentions.{r}"
                k += 1

    n = 0
    for i, block_type in enumerate(up_types):
        block = unet.up_blocks[i]
        count = layers[len(layers) - 1 - i] + 1
        if len(block.resnets) != count:
            raise ValueError(f"up_blocks.{i} ({block_type}) has {len(block.resnets)} resnets, expected {count}")
        for j in range(count):
            table[f"output_blocks.{n}.0"] = f"up_blocks.{i}.resnets.{j}"
            slot = 1
            if _has_attention(block):
                table[f"output_blocks.{n}.1"] = f"up_blocks.{i}.attentions.{j}"
                slot = 2
            if j == count - 1 and getattr(block, "upsamplers", None):
                table[f"output_blocks.{n}.{slot}.conv"] = f"up_blocks.{i}.upsamplers.0.conv"
            n += 1
    return table


def ldm_aliases(unet: nn.Module) -> dict[str, str]:
    """Alias -> diffusers module path for the PAG layer names of the papers.

    - ``input_blocks.N.1`` / ``middle_block.1`` / ``output_blocks.N.1`` (a spatial transformer: every
      self-attention layer below it) and the same with ``.transformer_blocks.K.attn1`` (one layer);
    - diffusers' PAG identifiers ``mid``, ``down``, ``up`` (all self-attention of the mid block / down blocks /
      up blocks).

    E.g. SD1.5: ``input_blocks.8.1.transformer_blocks.0.attn1`` ->
    ``down_blocks.2.attentions.1.transformer_blocks.0.attn1``.
    """
    aliases: dict[str, str] = {}
    modules = dict(unet.named_modules())
    for ldm, path in ldm_blocks(unet).items():
        if ".attentions." not in path:
            continue
        aliases[ldm] = path
        for name, _ in modules[path].named_modules():
            if name.startswith("transformer_blocks.") and name.endswith(".attn1"):
                aliases[f"{ldm}.{name}"] = f"{path}.{name}"
    if _has_attention(getattr(unet, "mid_block", None) or nn.Module()):
        aliases["mid"] = "mid_block.attentions.0" if len(unet.mid_block.attentions) == 1 else "mid_block"
    aliases["down"] = "down_blocks"
    aliases["up"] = "up_blocks"
    return aliases


def skip_branches(unet: nn.Module) -> list[SkipBranch]:
    """The up-block resnets fed ``cat([h, res_sample])``, each with the module that made its skip (for PAG's
    shared prefix, ``priors.SkipBranch``).

    The skips are, in order, ``conv_in``'s output, every down-block layer's output (its attention's, or its resnet's
    in a block without attention) and every downsampler's; each up-block resnet takes the last one left, as
    ``UNet2DConditionModel.forward`` does. Up blocks with gradient checkpointing on are left out (their backward
    reruns the forward).
    """
    sources = [("conv_in", unet.conv_in.out_channels)]
    for i, block in enumerate(unet.down_blocks):
        for j, resnet in enumerate(block.resnets):
            name = f"down_blocks.{i}.attentions.{j}" if _has_attention(block) else f"down_blocks.{i}.resnets.{j}"
            sources.append((name, resnet.out_channels))
        if getattr(block, "downsamplers", None):
            sources.append((f"down_blocks.{i}.downsamplers.0", block.downsamplers[0].out_channels))
    branches = []
    for i, block in enumerate(unet.up_blocks):
        for j, resnet in enumerate(block.resnets):
            source, channels = sources.pop()
            usable = (
                not getattr(block, "gradient_checkpointing", False)
                and isinstance(resnet.norm1, nn.GroupNorm)
                and resnet.upsample is None
                and resnet.downsample is None
            )
            if usable:
                path = f"up_blocks.{i}.resnets.{j}"
                shortcut = f"{path}.conv_shortcut" if resnet.conv_shortcut is not None else None
                live = resnet.in_channels - channels
                branches.append(SkipBranch(source, f"{path}.norm1", f"{path}.conv1", shortcut, live))
    return branches
