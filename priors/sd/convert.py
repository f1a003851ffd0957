"""Export a Stable Diffusion prior as one original (CompVis LDM) checkpoint file.

The key layout is the one of ``v1-5-pruned-emaonly.safetensors``: ``model.diffusion_model.*`` (UNet, LDM block
names from ``priors.sd.layers.ldm_blocks``), ``first_stage_model.*`` (VAE: ``encoder.down.i.block.j``, attention
projections as 1x1 convolutions) and ``cond_stage_model.transformer.text_model.*`` (CLIP). It is the inverse of
diffusers' single-file conversion, so ``load_sd(file, config=folder)`` reads it back; LDM-based code
(PSLD's original repository) can load it too.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from .layers import ldm_blocks

_UNET_RESNET = {  # diffusers ResnetBlock2D child -> LDM ResBlock child
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_VAE_TOP = {"conv_norm_out": "norm_out"}


def ldm_unet_state_dict(unet: nn.Module) -> dict[str, Tensor]:
    """The UNet's parameters under LDM keys (``input_blocks.1.0.in_layers.0.weight`` ...), without prefix."""
    by_path = {path: ldm for ldm, path in ldm_blocks(unet).items()}
    out = {}
    for key, value in unet.state_dict().items():
        parts = key.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            path = ".".join(parts[:cut])
            if path in by_path:
                rest = parts[cut:]
                if ".resnets." in path and rest[0] in _UNET_RESNET:
                    rest = [_UNET_RESNET[rest[0]], *rest[1:]]
                out[".".join([by_path[path], *rest])] = value
                break
        else:
            raise KeyError(f"no LDM name for UNet parameter {key!r}")
    return out


def _vae_key(key: str, num_up: int) -> str:
    parts = key.split(".")
    coder = parts[0]  # encoder / decoder (quant_conv and post_quant_conv keep their names)
    if coder not in ("encoder", "decoder"):
        return key
    rest = ".".join(parts[1:])
    if rest.startswith("down_blocks."):
        _, i, kind, *tail = parts[1:]
        if kind == "resnets":
            j, *tail = tail
            return f"{coder}.down.{i}.block.{j}." + ".".join(tail).replace("conv_shortcut", "nin_shortcut")
        return f"{coder}.down.{i}.downsample.conv." + ".".join(tail[2:])  # downsamplers.0.conv.<param>
    if rest.startswith("up_blocks."):
        _, i, kind, *tail = parts[1:]
        level = num_up - 1 - int(i)
        if kind == "resnets":
            j, *tail = tail
            return f"{coder}.up.{level}.block.{j}." + ".".join(tail).replace("conv_shortcut", "nin_shortcut")
        return f"{coder}.up.{level}.upsample.conv." + ".".join(tail[2:])
    if rest.startswith("mid_block.resnets."):
        _, _, j, *tail = parts[1:]
        return f"{coder}.mid.block_{int(j) + 1}." + ".".join(tail).replace("conv_shortcut", "nin_shortcut")
    if rest.startswith("mid_block.attentions.0."):
        tail = rest.removeprefix("mid_block.attentions.0.")
        for new, old in _VAE_ATTENTION.items():
            if tail.startswith(new + "."):
                return f"{coder}.mid.attn_1.{old}.{tail.removeprefix(new + '.')}"
        raise KeyError(f"no LDM name for VAE parameter {key!r}")
    top, _, param = rest.partition(".")
    return f"{coder}.{_VAE_TOP.get(top, top)}.{param}"


def ldm_vae_state_dict(vae: nn.Module) -> dict[str, Tensor]:
    """The AutoencoderKL's parameters under LDM keys (``encoder.down.0.block.0.conv1.weight`` ...)."""
    num_up = len(vae.config.up_block_types)
    out = {}
    for key, value in vae.state_dict().items():
        ldm_key = _vae_key(key, num_up)
        if ".mid.attn_1." in ldm_key and ldm_key.endswith(".weight") and value.ndim == 2:
            value = value[:, :, None, None]  # LDM's attention projections are 1x1 convolutions
        out[ldm_key] = value
    return out


def ldm_checkpoint(prior) -> dict[str, Tensor]:
    """The prior's weights as one LDM checkpoint (UNet, VAE, and CLIP text encoder when present)."""
    checkpoint = {f"model.diffusion_model.{k}": v for k, v in ldm_unet_state_dict(prior.unet).items()}
    checkpoint.update({f"first_stage_model.{k}": v for k, v in ldm_vae_state_dict(prior.vae).items()})
    if prior.text_encoder is not None:
        for key, value in prior.text_encoder.state_dict().items():
            key = key if key.startswith("text_model.") else f"text_model.{key}"  # transformers >= 5.6 is flat
            checkpoint[f"cond_stage_model.transformer.{key}"] = value
    return {k: v.detach().contiguous() for k, v in checkpoint.items()}


def save_single_file(prior, path: str | Path) -> Path:
    """Write the prior as one LDM checkpoint: ``.safetensors`` (default) or ``.ckpt`` (``{"state_dict": ...}``).

    A single file carries no configs: load it with ``load_sd(path, config=<folder written by save_sd>)``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {k: v.cpu() for k, v in ldm_checkpoint(prior).items()}
    if path.suffix == ".ckpt":
        torch.save({"state_dict": checkpoint}, path)
    else:
        from safetensors.torch import save_file

        save_file(checkpoint, str(path))
    return path
