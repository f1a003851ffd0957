"""Perturbed self-attention for diffusers ``Attention`` layers (Stable Diffusion UNets)."""

from __future__ import annotations

import torch
from diffusers.models.attention_processor import Attention


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
