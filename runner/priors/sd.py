"""The ``sd`` prior family (latent): a Stable Diffusion model (``priors.sd``) from a diffusers folder, a single-file
checkpoint, or a Hugging Face Hub id.

Its weights: ``prior.source`` (a local copy, used when it exists) or, when that is the config's default or a Hub
id, the Hub snapshot of ``prior.weights.repo``; a single-file checkpoint also needs the model's configs
(``prior.config``, or those of ``prior.weights.repo``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from priors import DiffusionPrior

from ..download import Source, WeightsError, WeightsMissing
from ..errors import SetupError
from ..paths import env_variable, raw_value, resolve_path
from ..weights import Need, as_setup_error, from_default, looks_local, missing_message, resolve

#: files a usable SD config snapshot must hold (text encoder / tokenizer are optional for ``load_sd``)
_SD_CONFIGS = ("unet/config.json", "vae/config.json")


def sd_source(prior_cfg: DictConfig, repo: str | None = None, *, configs_only: bool = False) -> Source | None:
    """The Hub snapshot of an SD prior (``prior.weights.repo`` or ``repo``): the files ``load_sd`` reads, or
    with ``configs_only`` only the configs a single-file checkpoint lacks."""
    from priors.sd.load import CONFIG_PATTERNS, hub_patterns  # diffusers: imported only for an SD prior

    w = prior_cfg.get("weights") or {}
    repo = repo or w.get("repo")
    if not repo:
        return None
    variant = w.get("variant")
    patterns = CONFIG_PATTERNS if configs_only else tuple(hub_patterns(variant))
    what = f"{prior_cfg.title} configs" if configs_only else str(prior_cfg.title)
    # the weights too, or a configs-only snapshot (a single-file checkpoint's) would pass for the whole model
    dot = f".{variant}" if variant else ""
    weights = () if configs_only else tuple(f"{m}/diffusion_pytorch_model{dot}.safetensors" for m in ("unet", "vae"))
    return Source(
        what,
        str(repo),
        repo=str(repo),
        revision=w.get("revision"),
        patterns=tuple(patterns),
        required=_SD_CONFIGS + weights,
    )


def needs(prior_cfg: DictConfig) -> list[Need]:
    """Its folder, file or Hub snapshot, and for a single-file checkpoint its config folder."""
    text = str(prior_cfg.source)
    if not looks_local(text):  # a Hub id
        return [Need("prior.source", str(prior_cfg.title), None, sd_source(prior_cfg, text))]
    local = resolve_path(text)
    source = sd_source(prior_cfg) if from_default(prior_cfg, "source") else None
    found = [Need("prior.source", str(prior_cfg.title), local, source)]
    if local.is_file():
        found.append(config_need(prior_cfg))
    return found


def config_need(prior_cfg: DictConfig) -> Need:
    """The config folder of a single-file SD checkpoint: ``prior.config`` (a folder, or a Hub id), else the
    configs of ``prior.weights.repo``."""
    options = prior_cfg.get("options") or {}
    config = prior_cfg.get("config") or options.get("config")
    what = f"{prior_cfg.title} configs"
    if config is None:
        return Need("prior.config", what, None, sd_source(prior_cfg, configs_only=True))
    if looks_local(str(config)):
        return Need("prior.config", what, resolve_path(str(config)), None)
    return Need("prior.config", what, None, sd_source(prior_cfg, str(config), configs_only=True))


def build(
    prior_cfg: DictConfig, device: torch.device, dtype: torch.dtype, offline: bool, prefetch: str
) -> DiffusionPrior:
    """The SD prior of ``prior_cfg`` (``priors.sd.load_sd`` with ``prior.options``)."""
    source = str(prior_cfg.source)
    local = resolve_path(source)
    wanted = needs(prior_cfg)

    def not_found(details: str) -> SetupError:
        env = env_variable(raw_value(prior_cfg, "source"))
        env_hint = f" (or any folder, then export {env}=<folder>)" if env else ""
        where = f"put them at {local}{env_hint}, or " if looks_local(source) else ""
        cache = missing_message(wanted[0], offline, prefetch)
        return SetupError(
            f"{prior_cfg.title} weights not found: prior.source={source} ({details}).\n"
            + (f"{cache}\n" if cache else "")
            + f"Get them where there is internet: {prior_cfg.download}\n"
            f"{where}set prior.source=<diffusers folder | .safetensors/.ckpt file | Hugging Face Hub id>"
        )

    try:
        target = resolve(wanted[0], offline)
    except WeightsMissing:
        details = f"{local} does not exist" if looks_local(source) else "not in the Hugging Face cache"
        raise not_found(details) from None
    except WeightsError as exc:
        raise as_setup_error(exc, prefetch) from exc
    try:
        from priors.sd import load_sd  # diffusers / transformers: an optional part of a checkout
    except ImportError as exc:
        raise SetupError(
            f"prior={prior_cfg.name} needs the latent Stable Diffusion prior (priors.sd), which this checkout cannot "
            f"import: {exc}"
        ) from exc
    options = prior_cfg.get("options")
    options = OmegaConf.to_container(options, resolve=True) if isinstance(options, DictConfig) else {}
    variant = OmegaConf.select(prior_cfg, "weights.variant", default=None)
    if variant and "variant" not in options:
        options["variant"] = variant
    single_file = target.is_file()
    if single_file and (config := _single_file_configs(prior_cfg, wanted[1], target, offline, prefetch)):
        options["config"] = str(config)
    try:
        return load_sd(target, image_size=int(prior_cfg.image_size), device=device, dtype=dtype, **options)
    except (FileNotFoundError, OSError) as exc:
        if single_file:
            raise SetupError(f"{prior_cfg.title}: could not load prior.source={target}: {exc}") from exc
        raise not_found(str(exc)) from exc


def _single_file_configs(prior_cfg: DictConfig, need: Need, target: Path, offline: bool, prefetch: str) -> Path | None:
    """The config folder of a single-file checkpoint: ``prior.config``, or the configs of ``prior.weights.repo``
    (cached, or fetched when online); None without either (``load_sd`` infers the Hub id from the keys). The error
    says that the file is there and what is missing."""
    if need.local is None and need.source is None:
        return None
    try:
        return resolve(need, offline)
    except WeightsMissing:
        from priors.sd.load import CONFIG_PATTERNS

        repo = OmegaConf.select(prior_cfg, "weights.repo", default=None) or "<the model's Hub id>"
        given = prior_cfg.get("config")
        why = (
            f"prior.config={given} does not exist"
            if need.local is not None
            else f"the configs of {need.source.repo} are not in the Hugging Face cache ({need.source.destination()})"
            + (" and this run is offline (offline=true or HF_HUB_OFFLINE=1)" if offline else "")
        )
        include = " ".join(f"'{p}'" for p in CONFIG_PATTERNS)
        raise SetupError(
            f"{prior_cfg.title}: the checkpoint prior.source={target} is there, but a single-file checkpoint carries "
            f"no configs, and its unet/, vae/, text_encoder/, tokenizer/ and scheduler/ configs are missing: {why}.\n"
            f"Give a diffusers folder that holds them (weights not needed), e.g. where there is internet:\n"
            f"  hf download {repo} --include {include} --local-dir ./models/sd15-configs\n"
            f"then add: prior.config=./models/sd15-configs\n"
            f"(or prior.config=<Hub id> online), or fetch them into the cache: {prefetch}"
        ) from None
    except WeightsError as exc:
        raise as_setup_error(exc, prefetch) from exc
