"""Building the prior, the operator and the solver from the config, with clear errors for what is missing."""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from operators import OPERATORS, Operator, make_operator
from priors import DiffusionPrior
from solvers import SOLVERS, Solver

from . import weights
from .config import REPO_ROOT, Settings, group_options, operator_params
from .download import WeightsError, WeightsMissing, env_offline
from .errors import SetupError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


def select_device(name: str) -> torch.device:
    """``auto``: cuda if available, else cpu; anything else as given (checked)."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SetupError(f"device={name} but CUDA is not available here; use device=cpu or device=auto")
    return device


def select_dtype(name: str) -> torch.dtype:
    if str(name) not in DTYPES:
        raise SetupError(f"unknown dtype={name}; valid: {', '.join(DTYPES)}")
    return DTYPES[str(name)]


def resolve_path(path: str | os.PathLike) -> Path:
    """A user path: absolute as is; relative to the current folder when it exists there, else to the repository
    when it exists there, else (for messages) relative to the current folder."""
    path = Path(os.path.expanduser(str(path)))
    if path.is_absolute():
        return path
    for base in (Path.cwd(), REPO_ROOT):
        if (base / path).exists():
            return (base / path).resolve()
    return (Path.cwd() / path).resolve()


# -- priors ---------------------------------------------------------------------------------------------------
def build_prior(
    prior_cfg: DictConfig,
    device: torch.device,
    dtype: torch.dtype,
    *,
    offline: bool | None = None,
    prefetch: str | None = None,
) -> DiffusionPrior:
    """The prior of ``prior_cfg`` (kind ``adm`` or ``sd``), frozen, in eval mode, on ``device``. Weights without a
    local copy are fetched from the config's source (``runner.weights``) unless ``offline`` (None: HF_HUB_OFFLINE);
    ``prefetch`` is the command that fetches them, for messages."""
    offline = env_offline() if offline is None else offline
    prefetch = prefetch or f"python scripts/fetch_weights.py prior={prior_cfg.name}"
    kind = str(prior_cfg.kind)
    if kind == "adm":
        return _build_adm(prior_cfg, device, dtype, offline, prefetch)
    if kind == "sd":
        return _build_sd(prior_cfg, device, dtype, offline, prefetch)
    raise SetupError(f"prior.kind={kind!r} is not known; valid: adm (pixel space), sd (latent Stable Diffusion)")


def _build_adm(
    prior_cfg: DictConfig, device: torch.device, dtype: torch.dtype, offline: bool, prefetch: str
) -> DiffusionPrior:
    from priors.adm import ADMPrior, CheckpointError

    need = weights.prior_needs(prior_cfg)[0]
    try:
        path = weights.resolve(need, offline)
    except WeightsMissing:
        path = need.local
        uses_env = "ADM_CHECKPOINTS" in _raw(prior_cfg, "checkpoint")
        env_hint = " (or ADM_CHECKPOINTS=<folder holding it>)" if uses_env else ""
        cache = weights.missing_message(need, offline, prefetch)
        raise SetupError(
            f"{prior_cfg.title} checkpoint not found: {path} (prior={prior_cfg.name}, "
            f"prior.checkpoint={prior_cfg.checkpoint}).\n"
            + (f"{cache}\nOr get {path.name} by hand: " if cache else f"Get {path.name}: ")
            + f"{prior_cfg.download}\n"
            f"and put it at {path}, or set prior.checkpoint=/path/to/{path.name}"
            f"{env_hint}"
        ) from None
    except WeightsError as exc:
        raise weights.as_setup_error(exc, prefetch) from exc
    preset = prior_cfg.get("preset")
    preset = OmegaConf.to_container(preset) if isinstance(preset, DictConfig) else preset
    try:
        return ADMPrior.from_checkpoint(path, preset, device=device, dtype=dtype)
    except CheckpointError as exc:
        raise SetupError(f"prior={prior_cfg.name}: {exc}") from exc


def _raw(node: DictConfig, key: str) -> str:
    """The unresolved text of ``node.key`` (to tell whether it reads an environment variable)."""
    try:
        return str(OmegaConf.to_container(node, resolve=False).get(key, ""))
    except Exception:
        return ""


def _build_sd(
    prior_cfg: DictConfig, device: torch.device, dtype: torch.dtype, offline: bool, prefetch: str
) -> DiffusionPrior:
    source = str(prior_cfg.source)
    local = resolve_path(source)
    needs = weights.prior_needs(prior_cfg)

    def not_found(details: str) -> SetupError:
        env_hint = (
            " (or any folder, then export SD15_PATH=<folder>)" if "SD15_PATH" in _raw(prior_cfg, "source") else ""
        )
        where = f"put them at {local}{env_hint}, or " if weights.looks_local(source) else ""
        cache = weights.missing_message(needs[0], offline, prefetch)
        return SetupError(
            f"{prior_cfg.title} weights not found: prior.source={source} ({details}).\n"
            + (f"{cache}\n" if cache else "")
            + f"Get them where there is internet: {prior_cfg.download}\n"
            f"{where}set prior.source=<diffusers folder | .safetensors/.ckpt file | Hugging Face Hub id>"
        )

    try:
        target = weights.resolve(needs[0], offline)
    except WeightsMissing:
        details = f"{local} does not exist" if weights.looks_local(source) else "not in the Hugging Face cache"
        raise not_found(details) from None
    except WeightsError as exc:
        raise weights.as_setup_error(exc, prefetch) from exc
    try:
        from priors.sd import load_sd
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
    if single_file and (config := _single_file_configs(prior_cfg, needs[1], target, offline, prefetch)):
        options["config"] = str(config)
    try:
        return load_sd(target, image_size=int(prior_cfg.image_size), device=device, dtype=dtype, **options)
    except (FileNotFoundError, OSError) as exc:
        if single_file:
            raise SetupError(f"{prior_cfg.title}: could not load prior.source={target}: {exc}") from exc
        raise not_found(str(exc)) from exc


def _single_file_configs(
    prior_cfg: DictConfig, need: weights.Need, target: Path, offline: bool, prefetch: str
) -> Path | None:
    """The config folder of a single-file checkpoint: ``prior.config``, or the configs of ``prior.weights.repo``
    (cached, or fetched when online); None without either (``load_sd`` infers the Hub id from the keys). The error
    says that the file is there and what is missing."""
    if need.local is None and need.source is None:
        return None
    try:
        return weights.resolve(need, offline)
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
        raise weights.as_setup_error(exc, prefetch) from exc


def prior_image_size(prior: DiffusionPrior) -> int:
    """The prior's working resolution in pixels (square)."""
    size = getattr(prior, "image_size", None)
    if size is None:
        size = prior.sample_shape[-1]
    if isinstance(size, (tuple, list)):
        if len(set(size)) != 1:
            raise SetupError(f"non-square prior image size {tuple(size)} is not supported")
        size = size[0]
    return int(size)


def check_pag_layers(prior: DiffusionPrior, settings: Settings) -> None:
    """Fail at start-up, listing the valid names, when a PAG layer does not exist in the prior."""
    if settings.pag is None:
        return
    try:
        prior.resolve_layers(settings.pag.layers)
    except (KeyError, ValueError) as exc:
        raise SetupError(
            f"PAG layers {list(settings.pag.layers)} ({settings.sources['pag.layers']}) do not fit this prior: "
            f"{exc.args[0] if exc.args else exc}"
        ) from exc


# -- operators ------------------------------------------------------------------------------------------------
def build_operator(
    task_cfg: DictConfig, size: int, generators: list[torch.Generator] | None, reference: bool = False
) -> Operator:
    """The task's operator at working resolution ``size``; random parameters (masks, kernels) are drawn from
    ``generators`` (one per image). ``generators=None`` is for a start-up check with a throwaway draw.
    ``reference``: the reference code's settings at this size (``solver.reference=true``, ``operator_params``)."""
    name = str(task_cfg.operator)
    if name not in OPERATORS:
        raise SetupError(
            f"task={task_cfg.name}: unknown operator {name!r}; valid operators: {', '.join(sorted(OPERATORS))}; "
            f"valid tasks: {', '.join(group_options('task'))}"
        )
    params: dict[str, Any] = operator_params(task_cfg, size, reference)
    accepted = inspect.signature(OPERATORS[name].__init__).parameters
    if "image_size" in accepted:
        params["image_size"] = size
    if "generator" in accepted:
        params["generator"] = generators if generators is not None else [torch.Generator().manual_seed(0)]
    noise = task_cfg.get("noise")
    if noise is not None:
        params["noise"] = OmegaConf.to_container(noise, resolve=True)
    try:
        return make_operator(name, **params)
    except (TypeError, ValueError) as exc:
        raise SetupError(f"task={task_cfg.name} at {size} px: {exc} (operator settings: {params})") from exc


def check_operator(
    task_cfg: DictConfig, size: int, device: torch.device, dtype: torch.dtype, reference: bool = False
) -> tuple[Operator, tuple[int, ...]]:
    """Build the operator once and apply it to a zero image: sizes that do not fit fail here, at start-up.
    Returns the operator and the measurement's (H, W)."""
    operator = build_operator(task_cfg, size, None, reference)
    try:
        y = operator.to(device)(torch.zeros(1, 3, size, size, device=device, dtype=dtype))
    except (TypeError, ValueError) as exc:
        raise SetupError(f"task={task_cfg.name} does not fit {size} px images: {exc}") from exc
    return operator, tuple(y.shape[-2:])


# -- solvers --------------------------------------------------------------------------------------------------
def build_solver(
    settings: Settings, solver_cfg: DictConfig, prior: DiffusionPrior, operator: Operator, progress: bool
) -> Solver:
    """The registered solver ``settings.solver`` with the resolved step sizes and PAG, and its options from
    ``solver_cfg`` (``SolverSpec.options``)."""
    options = OmegaConf.to_container(solver_cfg, resolve=True)
    return SOLVERS[settings.solver].build(
        prior,
        operator,
        settings.step_sizes,
        pag=settings.pag,
        num_steps=settings.num_steps,
        progress=progress,
        options=options,
    )
