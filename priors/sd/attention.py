"""Perturbed self-attention for diffusers ``Attention`` layers (Stable Diffusion UNets)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention
from torch import nn

from ..attention import register_attention_kind
from .layers import ldm_aliases


class IdentitySelfAttnProcessor:
    """Self-attention with the attention map replaced by the identity, for *every* sample of the batch.

    softmax(Q K^T / sqrt(d)) V  ->  I V = V, so the layer computes to_out(to_v(norm(x))) + residual.
    This is the perturbed branch of diffusers' ``PAGIdentitySelfAttnProcessor2_0`` without its
    batch-chunking (which assumes the batch is [original, perturbed]); Q and K are never computed.
    """

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args,
        **kwargs,
    ) -> torch.Tensor:
        if encoder_hidden_states is not None and attn.is_cross_attention:
            raise ValueError("identity attention applies to self-attention layers only")
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        hidden_states = attn.to_v(hidden_states)  # identity map: each token keeps its own value
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


class DiffusersSelfAttention:
    """How PAG finds and perturbs a diffusers UNet's self-attention (``priors.attention.AttentionKind``): the
    ``Attention`` layers that are not cross-attention, switched to ``IdentitySelfAttnProcessor``; a
    ``UNet2DConditionModel``'s layers also answer to their LDM names."""

    def is_self_attention(self, module: nn.Module) -> bool:
        return isinstance(module, Attention) and not module.is_cross_attention

    def perturb(self, module: nn.Module) -> Callable[[], None]:
        previous = module.processor
        module.set_processor(IdentitySelfAttnProcessor())
        return lambda: module.set_processor(previous)

    def aliases(self, network: nn.Module) -> dict[str, str]:
        return ldm_aliases(network) if isinstance(network, UNet2DConditionModel) else {}


SD_ATTENTION = DiffusersSelfAttention()
register_attention_kind(SD_ATTENTION)  # raw diffusers UNets cannot declare it themselves
