"""Prior families (``prior.kind``), declared once: how the runner builds each and which weight files it reads.

``PRIORS`` maps a family to its ``PriorFamily``; ``build_prior`` and ``prior_needs`` (what ``scripts/fetch_weights.py``
fetches) read it, and nothing else branches on ``prior.kind``. Adding a family: its library module (``priors/<kind>``),
its runner module here (``build`` and ``needs``) and its entry in ``PRIORS``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from priors import DiffusionPrior

from ..download import env_offline
from ..errors import SetupError
from ..weights import Need
from . import adm, sd


@dataclass(frozen=True)
class PriorFamily:
    """One prior family. ``build(prior_cfg, device, dtype, offline, prefetch)``: the prior (its weights fetched
    unless ``offline``; ``prefetch`` is the command that fetches them, for messages) or a ``SetupError`` saying
    what is missing. ``needs(prior_cfg)``: the files it reads. ``description``: for messages."""

    build: Callable[[DictConfig, torch.device, torch.dtype, bool, str], DiffusionPrior]
    needs: Callable[[DictConfig], list[Need]]
    description: str


#: ``prior.kind`` -> its family
PRIORS: Mapping[str, PriorFamily] = {
    "adm": PriorFamily(adm.build, adm.needs, "pixel space"),
    "sd": PriorFamily(sd.build, sd.needs, "latent Stable Diffusion"),
}


def prior_family(prior_cfg: DictConfig) -> PriorFamily:
    """The family of ``prior.kind``; a ``SetupError`` naming the registered ones otherwise."""
    kind = str(prior_cfg.kind)
    if kind not in PRIORS:
        valid = ", ".join(f"{name} ({family.description})" for name, family in PRIORS.items())
        raise SetupError(f"prior.kind={kind!r} is not known; valid: {valid}")
    return PRIORS[kind]


def prior_needs(prior_cfg: DictConfig) -> list[Need]:
    """What the prior reads (none for an unknown kind: that is reported when it is built)."""
    family = PRIORS.get(str(prior_cfg.kind))
    return family.needs(prior_cfg) if family is not None else []


def build_prior(
    prior_cfg: DictConfig,
    device: torch.device,
    dtype: torch.dtype,
    *,
    offline: bool | None = None,
    prefetch: str | None = None,
) -> DiffusionPrior:
    """The prior of ``prior_cfg`` (its family: ``prior.kind``), frozen, in eval mode, on ``device``. Weights without
    a local copy are fetched from the config's source (``runner.weights``) unless ``offline`` (None: HF_HUB_OFFLINE);
    ``prefetch`` is the command that fetches them, for messages."""
    family = prior_family(prior_cfg)
    offline = env_offline() if offline is None else offline
    prefetch = prefetch or f"python scripts/fetch_weights.py prior={prior_cfg.name}"
    return family.build(prior_cfg, device, dtype, offline, prefetch)
