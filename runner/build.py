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

from .config import REPO_ROOT, Settings, group_options, operator_params
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
def build_prior(prior_cfg: DictConfig, device: torch.device, dtype: torch.dtype) -> DiffusionPrior:
    """The prior of ``prior_cfg`` (kind ``adm`` or ``sd``), frozen, in eval mode, on ``device``."""
    kind = str(prior_cfg.kind)
    if kind == "adm":
        return _build_adm(prior_cfg, device, dtype)
    if kind == "sd":
        return _build_sd(prior_cfg, device, dtype)
    raise SetupError(f"prior.kind={kind!r} is not known; valid: adm (pixel space), sd (latent Stable Diffusion)")


def _build_adm(prior_cfg: DictConfig, device: torch.device, dtype: torch.dtype) -> DiffusionPrior:
    from priors.adm import ADMPrior, CheckpointError

    path = resolve_path(prior_cfg.checkpoint)
    if not path.is_file():
        uses_env = "ADM_CHECKPOINTS" in _raw(prior_cfg, "checkpoint")
        env_hint = " (or ADM_CHECKPOINTS=<folder holding it>)" if uses_env else ""
        raise SetupError(
            f"{prior_cfg.title} checkpoint not found: {path} (prior={prior_cfg.name}, "
            f"prior.checkpoint={prior_cfg.checkpoint}).\n"
            f"Get {path.name}: {prior_cfg.download}\n"
            f"and put it at {path}, or set prior.checkpoint=/path/to/{path.name}"
            f"{env_hint}"
        )
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


def _looks_local(source: str) -> bool:
    """A filesystem path rather than a Hugging Face Hub id (``owner/name``)."""
    return (
        source.startswith((".", "/", "~")) or Path(source).suffix in (".safetensors", ".ckpt") or source.count("/") != 1
    )


def _build_sd(prior_cfg: DictConfig, device: torch.device, dtype: torch.dtype) -> DiffusionPrior:
    source = str(prior_cfg.source)
    local = resolve_path(source)

    def not_found(details: str) -> SetupError:
        env_hint = (
            " (or any folder, then export SD15_PATH=<folder>)" if "SD15_PATH" in _raw(prior_cfg, "source") else ""
        )
        where = f"put them at {local}{env_hint}, or " if _looks_local(source) else ""
        return SetupError(
            f"{prior_cfg.title} weights not found: prior.source={source} ({details}).\n"
            f"Get them where there is internet: {prior_cfg.download}\n"
            f"{where}set prior.source=<diffusers folder | .safetensors/.ckpt file | Hugging Face Hub id>"
        )

    if not local.exists() and _looks_local(source):
        raise not_found(f"{local} does not exist")
    try:
        from priors.sd import load_sd
    except ImportError as exc:
        raise SetupError(
            f"prior={prior_cfg.name} needs the latent Stable Diffusion prior (priors.sd), which this checkout cannot "
            f"import: {exc}"
        ) from exc
    options = prior_cfg.get("options")
    options = OmegaConf.to_container(options, resolve=True) if isinstance(options, DictConfig) else {}
    target = str(local) if local.exists() else source
    try:
        return load_sd(target, image_size=int(prior_cfg.image_size), device=device, dtype=dtype, **options)
    except (FileNotFoundError, OSError) as exc:
        raise not_found(str(exc)) from exc


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
def build_operator(task_cfg: DictConfig, size: int, generators: list[torch.Generator] | None) -> Operator:
    """The task's operator at working resolution ``size``; random parameters (masks, kernels) are drawn from
    ``generators`` (one per image). ``generators=None`` is for a start-up check with a throwaway draw."""
    name = str(task_cfg.operator)
    if name not in OPERATORS:
        raise SetupError(
            f"task={task_cfg.name}: unknown operator {name!r}; valid operators: {', '.join(sorted(OPERATORS))}; "
            f"valid tasks: {', '.join(group_options('task'))}"
        )
    params: dict[str, Any] = operator_params(task_cfg, size)
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


def check_operator(task_cfg: DictConfig, size: int, device: torch.device, dtype: torch.dtype) -> None:
    """Build the operator once and apply it to a zero image: sizes that do not fit fail here, at start-up."""
    operator = build_operator(task_cfg, size, None)
    try:
        operator.to(device)(torch.zeros(1, 3, size, size, device=device, dtype=dtype))
    except (TypeError, ValueError) as exc:
        raise SetupError(f"task={task_cfg.name} does not fit {size} px images: {exc}") from exc


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
