"""Perturbed self-attention (PAG): chosen self-attention maps replaced by the identity.

Layers are named by their module path in the network (``input_blocks.9.1``, ``middle_block.1``,
``mid_block.attentions.0.transformer_blocks.0.attn1``) and matched exactly, never by regex
(diffusers' regex matching turns ``blocks.1`` into ``blocks.1`` *and* ``blocks.10``). A name that points to a
container (``mid_block.attentions.0``) stands for every self-attention layer below it. Stable Diffusion
UNets also accept the LDM names used in the papers (``input_blocks.8.1`` ...), see ``priors.sd.layers``.

This module knows no concrete network: an ``AttentionKind`` says which modules are self-attention layers, how one
is switched to the identity map, and which alternative names the network's layers have. A prior (or a network)
declares its kind as ``attention_kind`` (``priors.adm`` for ADM UNets); a network that cannot carry the attribute
(a diffusers UNet) is matched by the kinds registered with ``register_attention_kind`` (``priors.sd`` registers
diffusers' when imported; ``LAZY_KINDS`` imports it on first use for a network built from diffusers' classes, so
``import priors`` alone stays free of diffusers and a user need not import ``priors.sd`` first).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol, runtime_checkable

from torch import nn


@runtime_checkable
class AttentionKind(Protocol):
    """How one family of networks' self-attention layers are found and perturbed."""

    def is_self_attention(self, module: nn.Module) -> bool:
        """Whether ``module`` is a self-attention layer PAG may perturb."""
        ...

    def perturb(self, module: nn.Module) -> Callable[[], None]:
        """Switch ``module`` to the identity attention map; return the function that undoes it."""
        ...

    def aliases(self, network: nn.Module) -> dict[str, str]:
        """Alternative layer names accepted for ``network`` -> canonical module paths (may be empty)."""
        ...


_REGISTERED: list[AttentionKind] = []

#: top-level package of a network's layer classes -> the module that registers their kind when imported: imported
#: on first need (a network of diffusers' classes means diffusers is loaded already; importing it costs seconds)
LAZY_KINDS: dict[str, str] = {"diffusers": "priors.sd.attention"}


def register_attention_kind(kind: AttentionKind) -> None:
    """Make ``kind`` known for networks that do not declare an ``attention_kind`` (idempotent)."""
    if kind not in _REGISTERED:
        _REGISTERED.append(kind)


def _network(model: nn.Module) -> nn.Module:
    """Priors wrap their network (``model.network``); accept either."""
    network = getattr(model, "network", None)
    return network if isinstance(network, nn.Module) else model


def _kinds(model: nn.Module) -> list[AttentionKind]:
    """The declared kind of ``model`` (a prior) or of its network, else every registered one (the ``LAZY_KINDS``
    of the packages its layers come from imported first)."""
    for obj in (model, _network(model)):
        kind = getattr(obj, "attention_kind", None)
        if kind is not None:
            return [kind]
    packages = {type(m).__module__.partition(".")[0] for m in _network(model).modules()}
    for package in sorted(packages & LAZY_KINDS.keys()):
        importlib.import_module(LAZY_KINDS[package])
    return list(_REGISTERED)


def _kind_of(module: nn.Module, kinds: Sequence[AttentionKind]) -> AttentionKind | None:
    return next((kind for kind in kinds if kind.is_self_attention(module)), None)


def self_attention_layers(model: nn.Module) -> dict[str, nn.Module]:
    """All self-attention layers of ``model`` (a prior or a network) that PAG can perturb, by module path."""
    kinds = _kinds(model)
    network = _network(model)
    return {name: m for name, m in network.named_modules() if name and _kind_of(m, kinds) is not None}


def layer_aliases(model: nn.Module) -> dict[str, str]:
    """Alternative names accepted for this network's layers (LDM names for SD UNets)."""
    network = _network(model)
    aliases: dict[str, str] = {}
    for kind in _kinds(model):
        aliases.update(kind.aliases(network))
    return aliases


def resolve_layers(model: nn.Module, names: Sequence[str] | str) -> list[str]:
    """Canonical module paths of the self-attention layers ``names`` refers to (exact matching)."""
    if isinstance(names, str):
        names = [names]
    valid = self_attention_layers(model)
    aliases = layer_aliases(model)
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
            none = (
                f"(none: no registered attention kind knows {type(_network(model)).__name__}'s layers; declare its "
                "`attention_kind` or register one with priors.register_attention_kind)"
            )
            raise ValueError(
                f"unknown self-attention layer {name!r}. Valid layers: {', '.join(valid) or none}{alias_note}"
            )
        resolved.extend(n for n in found if n not in resolved)
    return resolved


@contextmanager
def perturbed_self_attention(model: nn.Module, layers: Sequence[str] | str) -> Iterator[list[str]]:
    """Inside the context the named self-attention layers use the identity attention map for every sample.

    ``model``: a prior, an ``ADMUNet`` or a diffusers ``UNet2DConditionModel``.
    Yields the canonical layer names. On exit the model is exactly as before (bit-identical outputs).
    """
    network = _network(model)
    kinds = _kinds(model)
    names = resolve_layers(model, layers)
    undo: list[Callable[[], None]] = []
    try:
        for name in names:
            module = network.get_submodule(name)
            undo.append(_kind_of(module, kinds).perturb(module))
        yield names
    finally:
        for restore in reversed(undo):
            restore()
