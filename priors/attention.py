"""Perturbed self-attention (PAG): chosen self-attention maps replaced by the identity.

Layers are named by their module path in the network (``input_blocks.9.1``, ``middle_block.1``,
``mid_block.attentions.0.transformer_blocks.0.attn1``) and matched exactly, never by regex
(diffusers' regex matching turns ``blocks.1`` into ``blocks.1`` *and* ``blocks.10``). A name that points to a
container (``mid_block.attentions.0``) stands for every self-attention layer below it. Stable Diffusion
UNets also accept the LDM names used in the papers (``input_blocks.8.1`` ...), see ``priors.sd.layers``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from torch import nn


def _adm_attention_type():
    try:
        from .adm.unet import AttentionBlock
    except ModuleNotFoundError as err:  # a checkout without the ADM UNet: no ADM layers to match
        if err.name != f"{__package__}.adm.unet":
            raise
        return ()  # isinstance(x, ()) is False
    return AttentionBlock


def _diffusers_attention_type():
    # A module can only be a diffusers Attention if diffusers is already imported: checking sys.modules
    # first keeps ADM-only use from paying diffusers' multi-second import.
    if "diffusers" not in sys.modules:
        return None
    from diffusers.models.attention_processor import Attention

    return Attention


def _is_self_attention(module: nn.Module) -> bool:
    if isinstance(module, _adm_attention_type()):
        return True
    attention = _diffusers_attention_type()
    return attention is not None and isinstance(module, attention) and not module.is_cross_attention


def _network(model: nn.Module) -> nn.Module:
    """Priors wrap their network; accept either."""
    from .base import DiffusionPrior

    return model.network if isinstance(model, DiffusionPrior) else model


def self_attention_layers(model: nn.Module) -> dict[str, nn.Module]:
    """All self-attention layers of ``model`` that PAG can perturb, by module path."""
    network = _network(model)
    return {name: m for name, m in network.named_modules() if name and _is_self_attention(m)}


def layer_aliases(model: nn.Module) -> dict[str, str]:
    """Alternative names accepted for this network's layers (LDM names for SD UNets)."""
    network = _network(model)
    if "diffusers" not in sys.modules:
        return {}
    from diffusers import UNet2DConditionModel

    if isinstance(network, UNet2DConditionModel):
        from .sd.layers import ldm_aliases

        return ldm_aliases(network)
    return {}


def resolve_layers(model: nn.Module, names: Sequence[str] | str) -> list[str]:
    """Canonical module paths of the self-attention layers ``names`` refers to (exact matching)."""
    if isinstance(names, str):
        names = [names]
    network = _network(model)
    valid = self_attention_layers(network)
    aliases = layer_aliases(network)
    resolved: list[str] = []
    for name in names:
        target = aliases.get(name, name)
        if target in valid:
            found = [target]
        else:
            prefix = target + "."
            found = [n for n in valid if n.startswith(prefix)] if target else []
        if not found:
            alias_note = f"; LDM aliases: {', '.join(sorted(aliases))}" if aliases else ""
            raise ValueError(
                f"unknown self-attention layer {name!r}. Valid layers: {', '.join(valid) or '(none)'}{alias_note}"
            )
        resolved.extend(n for n in found if n not in resolved)
    return resolved


def _perturb(module: nn.Module) -> Callable[[], None]:
    """Switch one layer to identity attention; return the function that undoes it."""
    if isinstance(module, _adm_attention_type()):
        previous = module.perturbed
        module.perturbed = True
        return lambda: setattr(module, "perturbed", previous)
    from .sd.attention import IdentitySelfAttnProcessor

    previous = module.processor
    module.set_processor(IdentitySelfAttnProcessor())
    return lambda: module.set_processor(previous)


@contextmanager
def perturbed_self_attention(model: nn.Module, layers: Sequence[str] | str) -> Iterator[list[str]]:
    """Inside the context the named self-attention layers use the identity attention map for every sample.

    ``model``: an ``ADMUNet``, a diffusers ``UNet2DConditionModel``, or a prior wrapping one.
    Yields the canonical layer names. On exit the model is exactly as before (bit-identical outputs).
    """
    network = _network(model)
    names = resolve_layers(network, layers)
    undo: list[Callable[[], None]] = []
    try:
        for name in names:
            undo.append(_perturb(network.get_submodule(name)))
        yield names
    finally:
        for restore in reversed(undo):
            restore()
