"""The ``adm`` prior family (pixel space): a guided-diffusion / DPS ADM checkpoint (``priors.adm``).

Its weights: ``prior.checkpoint`` (a local copy, used when it exists) or, when that is the config's default, the
``prior.weights`` source (a Hub repo + file, or a URL).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import torch
from omegaconf import DictConfig, OmegaConf

from priors import DiffusionPrior
from priors.adm import ADMPrior, CheckpointError

from ..download import Source, WeightsError, WeightsMissing
from ..errors import SetupError
from ..paths import env_variable, raw_value, resolve_path
from ..weights import Need, as_setup_error, from_default, missing_message, resolve


def adm_source(prior_cfg: DictConfig) -> Source | None:
    """``prior.weights`` of an ADM prior: ``url`` (wins) or Hub ``repo`` + ``file``; None without one."""
    w = prior_cfg.get("weights")
    if not w or not (w.get("url") or w.get("repo")):
        return None
    url = w.get("url")
    filename = Path(urlparse(str(url)).path).name if url else str(w.file)
    return Source(
        what=str(prior_cfg.title),
        filename=filename,
        url=str(url) if url else None,
        repo=None if url else str(w.repo),
        revision=w.get("revision"),
        sha256=w.get("sha256"),
    )


def needs(prior_cfg: DictConfig) -> list[Need]:
    """The checkpoint: ``prior.checkpoint``, with the configured source when the path is the config's default."""
    source = adm_source(prior_cfg) if from_default(prior_cfg, "checkpoint") else None
    return [Need("prior.checkpoint", str(prior_cfg.title), resolve_path(prior_cfg.checkpoint), source)]


def build(
    prior_cfg: DictConfig, device: torch.device, dtype: torch.dtype, offline: bool, prefetch: str
) -> DiffusionPrior:
    """The ADM of ``prior_cfg`` (``preset``, or the config stored in the checkpoint's header)."""
    need = needs(prior_cfg)[0]
    try:
        path = resolve(need, offline)
    except WeightsMissing:
        path = need.local
        env = env_variable(raw_value(prior_cfg, "checkpoint"))
        env_hint = f" (or {env}=<folder holding it>)" if env else ""
        cache = missing_message(need, offline, prefetch)
        raise SetupError(
            f"{prior_cfg.title} checkpoint not found: {path} (prior={prior_cfg.name}, "
            f"prior.checkpoint={prior_cfg.checkpoint}).\n"
            + (f"{cache}\nOr get {path.name} by hand: " if cache else f"Get {path.name}: ")
            + f"{prior_cfg.download}\n"
            f"and put it at {path}, or set prior.checkpoint=/path/to/{path.name}"
            f"{env_hint}"
        ) from None
    except WeightsError as exc:
        raise as_setup_error(exc, prefetch) from exc
    preset = prior_cfg.get("preset")
    preset = OmegaConf.to_container(preset) if isinstance(preset, DictConfig) else preset
    try:
        return ADMPrior.from_checkpoint(path, preset, device=device, dtype=dtype)
    except CheckpointError as exc:
        raise SetupError(f"prior={prior_cfg.name}: {exc}") from exc
