"""Load a Stable Diffusion prior from a diffusers folder, a Hugging Face Hub id, or one LDM checkpoint file.

Layout of a diffusers folder (what ``save_sd`` writes, what ``runwayml/stable-diffusion-v1-5`` holds)::

    <folder>/unet/{config.json, diffusion_pytorch_model.safetensors}       required
    <folder>/vae/{config.json, diffusion_pytorch_model.safetensors}        required
    <folder>/text_encoder/{config.json, model.safetensors}                 optional (with tokenizer/)
    <folder>/tokenizer/...                                                  optional (with text_encoder/)
    <folder>/scheduler/scheduler_config.json                                optional (default: SD's scaled_linear)
    <folder>/null_embedding.safetensors                                     the empty prompt's embedding; required
                                                                            without text_encoder/

Components are loaded one by one (``from_pretrained(folder, subfolder=...)``); no pipeline is built.
"""

from __future__ import annotations

import json
import os
import re
from functools import partial
from pathlib import Path

import torch
from torch import nn

from .prior import StableDiffusionPrior, as_dtype

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
NULL_EMBEDDING_FILE = "null_embedding.safetensors"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
#: the files of a diffusers folder that a single-file checkpoint lacks (what ``config=`` must provide)
CONFIG_PATTERNS = (
    "model_index.json",
    "unet/config.json",
    "vae/config.json",
    "text_encoder/config.json",
    "scheduler/*",
    "tokenizer/*",
)
_LAYOUT = (
    "  <folder>/unet/ (config.json + weights), <folder>/vae/ (config.json + weights): required\n"
    "  <folder>/text_encoder/ + <folder>/tokenizer/: optional (else <folder>/null_embedding.safetensors)\n"
    "  <folder>/scheduler/scheduler_config.json: optional"
)


def _download_hint(repo_id: str, patterns: list[str]) -> str:
    include = " ".join(f"'{p}'" for p in patterns)
    return (
        f"Download it where there is internet, e.g.\n"
        f"  hf download {repo_id} --include {include} --local-dir <folder>\n"
        f"(huggingface-cli download with older huggingface_hub) and pass load_sd('<folder>'), or copy the Hugging "
        f"Face cache (HF_HOME) to this machine. "
        f"(runwayml/stable-diffusion-v1-5 has moved to stable-diffusion-v1-5/stable-diffusion-v1-5.)"
    )


def _from_hub(repo_id: str, patterns: list[str], revision: str | None = None) -> Path:
    """A local snapshot of ``repo_id`` (only ``patterns``), from the cache when offline."""
    from huggingface_hub import constants, snapshot_download

    offline = bool(constants.HF_HUB_OFFLINE)
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, revision=revision, local_files_only=offline))
    except Exception as err:  # offline without cache, unknown repo, gated repo, network error
        where = "not in the local Hugging Face cache and HF_HUB_OFFLINE is set" if offline else f"not loadable ({err})"
        raise FileNotFoundError(
            f"{repo_id!r} is neither a local folder or checkpoint file nor an available Hugging Face Hub model: "
            f"it is {where}.\n{_download_hint(repo_id, patterns)}"
        ) from err


def hub_patterns(variant: str | None = None) -> list[str]:
    """The files load_sd reads (safetensors weights only). The text encoder's weights are always fetched: even
    with ``keep_text_encoder=False`` the empty prompt's embedding is computed with it unless stored."""
    dot = f".{variant}" if variant else ""
    return [
        *CONFIG_PATTERNS,
        NULL_EMBEDDING_FILE,
        f"unet/diffusion_pytorch_model{dot}.safetensors",
        f"vae/diffusion_pytorch_model{dot}.safetensors",
        f"text_encoder/model{dot}.safetensors",
    ]


def _check_loaded(module: nn.Module, name: str, source: object) -> None:
    missing = [n for n, p in module.named_parameters() if p.is_meta]
    if missing:
        raise ValueError(f"{source}: no weights for {len(missing)} {name} parameters (e.g. {missing[:3]})")


def _scheduler(folder: Path):
    """The folder's scheduler (its class from ``_class_name``), or None when there is no scheduler/."""
    import diffusers

    config_file = folder / "scheduler" / "scheduler_config.json"
    if not config_file.is_file():
        return None
    config = json.loads(config_file.read_text())
    cls = getattr(diffusers, config.get("_class_name", ""), None)
    if cls is None or not issubclass(cls, diffusers.SchedulerMixin):
        cls = diffusers.DDIMScheduler
    return cls.from_config(config)


def _text_components(folder: Path, dtype: torch.dtype, variant: str | None = None, *, weights: dict | None = None):
    """CLIP text encoder + tokenizer from ``folder`` (weights from ``weights``, an LDM checkpoint, when given)."""
    from transformers import CLIPTextModel, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
    if weights is None:
        text_encoder = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", dtype=dtype, variant=variant)
    else:
        from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm

        text_encoder = create_diffusers_clip_model_from_ldm(
            CLIPTextModel,
            weights,
            config=str(folder),
            subfolder="text_encoder",
            torch_dtype=dtype,
            local_files_only=True,
        )
    return text_encoder, tokenizer


def _null_embedding(folder: Path):
    path = folder / NULL_EMBEDDING_FILE
    if not path.is_file():
        return None
    from safetensors.torch import load_file

    return load_file(str(path))["null_embedding"]


def _assemble(
    unet, vae, scheduler, *, text_loader, null_embedding, keep_text_encoder: bool, source, **options
) -> StableDiffusionPrior:
    """Add the text side and build the prior: the CLIP encoder + tokenizer (``text_loader()``), or only the
    empty prompt's embedding (stored, or computed once with CLIP when ``keep_text_encoder`` is False)."""
    if text_loader is None and null_embedding is None:
        raise FileNotFoundError(
            f"{source} has neither a text encoder (text_encoder/ + tokenizer/) nor {NULL_EMBEDDING_FILE}: the prior "
            f"needs at least the empty prompt's embedding. Expected layout:\n{_LAYOUT}"
        )
    if text_loader is None or (not keep_text_encoder and null_embedding is not None):
        return StableDiffusionPrior(unet, vae, scheduler, null_embedding=null_embedding, **options)
    text_encoder, tokenizer = text_loader()
    _check_loaded(text_encoder, "text encoder", source)
    prior = StableDiffusionPrior(unet, vae, scheduler, text_encoder, tokenizer, **options)
    if not keep_text_encoder:  # compute the empty prompt once, then let CLIP go
        prior = StableDiffusionPrior(unet, vae, scheduler, null_embedding=prior.null_embedding, **options)
    return prior


def _load_folder(folder: Path, dtype, variant, keep_text_encoder, **options) -> StableDiffusionPrior:
    from diffusers import AutoencoderKL, UNet2DConditionModel

    missing = [name for name in ("unet", "vae") if not (folder / name / "config.json").is_file()]
    if missing:
        present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        raise FileNotFoundError(
            f"{folder} is not a Stable Diffusion folder in diffusers format: missing "
            f"{', '.join(m + '/config.json' for m in missing)} (found: {', '.join(present) or 'nothing'}). "
            f"Expected layout:\n{_LAYOUT}"
        )
    unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", torch_dtype=dtype, variant=variant)
    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", torch_dtype=dtype, variant=variant)
    has_text = (folder / "text_encoder").is_dir() and (folder / "tokenizer").is_dir()
    return _assemble(
        unet,
        vae,
        _scheduler(folder),
        text_loader=partial(_text_components, folder, dtype, variant) if has_text else None,
        null_embedding=_null_embedding(folder),
        keep_text_encoder=keep_text_encoder,
        source=folder,
        **options,
    )


def _load_single_file(path: Path, config, dtype, keep_text_encoder, **options) -> StableDiffusionPrior:
    """An original LDM checkpoint (``v1-5-pruned-emaonly.safetensors`` / ``.ckpt``) through diffusers'
    ``from_single_file``, with the component configs from ``config`` (a diffusers folder or Hub id; default the
    Hub id diffusers infers from the keys, e.g. stable-diffusion-v1-5/stable-diffusion-v1-5, configs only)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (
        fetch_diffusers_config,
        is_clip_model,
        load_single_file_checkpoint,
    )

    checkpoint = load_single_file_checkpoint(str(path))
    if not any(k.startswith("model.diffusion_model.") for k in checkpoint):
        raise ValueError(
            f"{path} is not an original (LDM) Stable Diffusion checkpoint: no 'model.diffusion_model.*' keys. "
            f"Diffusers-format weights go in a folder ({_LAYOUT.splitlines()[0].strip()})"
        )
    if not any(k.startswith(("first_stage_model.", "vae.")) for k in checkpoint):
        raise ValueError(f"{path} holds no VAE weights ('first_stage_model.*'); the latent prior needs them")
    if config is None:
        config = fetch_diffusers_config(checkpoint)["pretrained_model_name_or_path"]
    folder = Path(os.path.expanduser(str(config)))
    if not folder.is_dir():
        if not _HUB_ID.match(str(config)):
            raise FileNotFoundError(f"config folder {config} does not exist. Expected layout:\n{_LAYOUT}")
        try:
            folder = _from_hub(str(config), list(CONFIG_PATTERNS))
        except FileNotFoundError as err:
            raise FileNotFoundError(
                f"a single-file checkpoint carries no configs; load_sd({str(path)!r}) needs those of {config!r} "
                f"(unet/, vae/, text_encoder/ config.json, tokenizer/, scheduler/). Pass config=<local diffusers "
                f"folder> (save_sd writes one; weights are not needed), or make them available: {err}"
            ) from err
    # torch_dtype only when casting: diffusers warns on every explicit float32 cast
    kwargs = {"config": str(folder), "torch_dtype": None if dtype == torch.float32 else dtype, "local_files_only": True}
    unet = UNet2DConditionModel.from_single_file(checkpoint, subfolder="unet", **kwargs)
    vae = AutoencoderKL.from_single_file(checkpoint, subfolder="vae", **kwargs)
    for module, name in ((unet, "UNet"), (vae, "VAE")):
        _check_loaded(module, name, path)
    text_loader = null_embedding = None
    if is_clip_model(checkpoint):  # the checkpoint's own CLIP weights, built from the folder's configs
        if not ((folder / "text_encoder" / "config.json").is_file() and (folder / "tokenizer").is_dir()):
            raise FileNotFoundError(
                f"{path} holds a CLIP text encoder, but the config folder {folder} has no text_encoder/config.json "
                f"and tokenizer/ to build it with"
            )
        text_loader = partial(_text_components, folder, dtype, weights=checkpoint)
    else:
        null_embedding = _null_embedding(folder)
    return _assemble(
        unet,
        vae,
        _scheduler(folder),
        text_loader=text_loader,
        null_embedding=null_embedding,
        keep_text_encoder=keep_text_encoder,
        source=path,
        **options,
    )


def load_sd(
    source: str | os.PathLike,
    *,
    image_size: int | tuple[int, int] | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str = torch.float32,
    config: str | os.PathLike | None = None,
    variant: str | None = None,
    revision: str | None = None,
    keep_text_encoder: bool = True,
    **options,
) -> StableDiffusionPrior:
    """A ``StableDiffusionPrior`` from ``source``:

    - a diffusers folder (layout in the module docstring);
    - a Hub id (``stable-diffusion-v1-5/stable-diffusion-v1-5``): downloaded (only the needed files) or, offline,
      taken from the HF cache; offline without it raises saying what to download;
    - an LDM checkpoint file (``.safetensors`` / ``.ckpt``), via diffusers' ``from_single_file``; its configs come
      from ``config`` (a diffusers folder or Hub id; default the one diffusers infers from the keys).

    ``image_size`` (pixels) defaults to the UNet's ``sample_size`` times the VAE factor (512 for SD1.5);
    ``dtype`` is the weights' dtype; ``variant`` picks e.g. ``fp16`` weight files; ``keep_text_encoder=False``
    keeps only the empty prompt's embedding (from ``null_embedding.safetensors``, or computed once) and frees
    the CLIP model. ``options`` go to ``StableDiffusionPrior`` (``gradient_checkpointing``, ``autocast_dtype``,
    ``vae_slicing``, ``prediction_type``, ...).
    """
    dtype = as_dtype(dtype)
    options = {"image_size": image_size, **options}
    path = Path(os.path.expanduser(str(source)))
    if path.is_file():
        if path.suffix not in SINGLE_FILE_SUFFIXES:
            raise ValueError(f"{path}: a single-file checkpoint ends with one of {', '.join(SINGLE_FILE_SUFFIXES)}")
        prior = _load_single_file(path, config, dtype, keep_text_encoder, **options)
    elif path.is_dir():
        prior = _load_folder(path, dtype, variant, keep_text_encoder, **options)
    elif path.suffix in SINGLE_FILE_SUFFIXES or not _HUB_ID.match(str(source)):
        raise FileNotFoundError(
            f"Stable Diffusion source {str(source)!r} does not exist. Pass a diffusers folder:\n{_LAYOUT}\n"
            f"or an LDM checkpoint file (.safetensors / .ckpt), or a Hugging Face Hub id."
        )
    else:
        patterns = hub_patterns(variant)
        folder = _from_hub(str(source), patterns, revision=revision)
        try:
            prior = _load_folder(folder, dtype, variant, keep_text_encoder, **options)
        except OSError as err:
            raise FileNotFoundError(
                f"the local copy of {source!r} at {folder} is incomplete: {err}\n"
                + _download_hint(str(source), patterns)
            ) from err
    return prior.to(device)


def save_sd(prior: StableDiffusionPrior, folder: str | os.PathLike) -> Path:
    """Write ``prior`` as a diffusers folder (safetensors weights) that ``load_sd`` and diffusers'
    ``StableDiffusionPipeline.from_pretrained`` read back: unet/, vae/, scheduler/, text_encoder/ + tokenizer/
    (when present), ``null_embedding.safetensors`` (always: a prior without text encoder needs it) and
    ``model_index.json``."""
    import diffusers
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    prior.unet.save_pretrained(folder / "unet")
    prior.vae.save_pretrained(folder / "vae")
    config = dict(prior.scheduler_config or {})
    cls = getattr(diffusers, config.get("_class_name", ""), None)
    if cls is None or not issubclass(cls, diffusers.SchedulerMixin):
        cls = diffusers.DDIMScheduler
    if not config:  # a bare NoiseSchedule: store its betas exactly
        betas = prior.schedule.betas
        config = {"num_train_timesteps": len(betas), "trained_betas": betas.tolist(), "set_alpha_to_one": False}
    config["prediction_type"] = prior.prediction_type
    cls.from_config(config).save_pretrained(folder / "scheduler")
    if prior.has_text_encoder:
        prior.text_encoder.save_pretrained(folder / "text_encoder")
        prior.tokenizer.save_pretrained(folder / "tokenizer")
    null_embedding = prior.null_embedding.detach().float().cpu().contiguous()
    save_file({"null_embedding": null_embedding}, str(folder / NULL_EMBEDDING_FILE))
    text = ["transformers", "CLIPTextModel"] if prior.has_text_encoder else [None, None]
    tokenizer = ["transformers", "CLIPTokenizer"] if prior.has_text_encoder else [None, None]
    index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": diffusers.__version__,
        "unet": ["diffusers", type(prior.unet).__name__],
        "vae": ["diffusers", type(prior.vae).__name__],
        "scheduler": ["diffusers", cls.__name__],
        "text_encoder": text,
        "tokenizer": tokenizer,
        "safety_checker": [None, None],
        "feature_extractor": [None, None],
        "image_encoder": [None, None],
        "requires_safety_checker": False,
    }
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    return folder
