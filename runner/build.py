"""Building the prior, the operator and the solver from the config, with clear errors for what is missing.

The prior comes from its family's entry in ``runner.priors.PRIORS`` (``build_prior``, re-exported here).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from operators import OPERATORS, Operator, as_noise_model, load_operator, make_operator, resolve_operator
from priors import DiffusionPrior
from solvers import SOLVERS, Solver, fit_error

from .config import Settings, group_options, operator_params, task_noise
from .errors import SetupError
from .priors import build_prior as build_prior
from .priors import prior_needs
from .weights import Need, metric_needs, operator_needs

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


# -- priors ---------------------------------------------------------------------------------------------------
def run_needs(cfg: DictConfig) -> list[Need]:
    """Every file a run of ``cfg`` reads: its prior's (``runner.priors``), its operator's (the learned blur's
    network) and its metrics' networks."""
    return [*prior_needs(cfg.prior), *operator_needs(cfg.task), *metric_needs(cfg)]


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
    task_cfg: DictConfig,
    size: int,
    generators: list[torch.Generator] | None,
    reference: bool = False,
    solver: str | None = None,
) -> Operator:
    """The task's operator at working resolution ``size``; random parameters (masks, kernels) are drawn from
    ``generators`` (one per image). ``generators=None`` is for a start-up check with a throwaway draw.
    ``reference``: the reference code's settings at this size (``solver.reference=true``), those of ``solver``'s
    reference code included (``SolverSpec.reference_tasks``: ``operator_params``, ``task_noise``)."""
    if task_cfg.get("operator") is None:
        raise SetupError(
            f"task={task_cfg.name} needs task.operator=<module>:<name> (an Operator subclass, a function returning "
            "one, or an Operator), e.g. task.operator=my_ops:Subsample +task.kwargs.factor=2 (docs/operators.md)"
        )
    name = str(task_cfg.operator)
    if ":" in name:
        return build_custom_operator(task_cfg, name, size, generators)
    if name not in OPERATORS:
        raise SetupError(
            f"task={task_cfg.name}: unknown operator {name!r}; valid operators: {', '.join(sorted(OPERATORS))}, "
            "or your own as <module>:<name> (task=custom, docs/operators.md); "
            f"valid tasks: {', '.join(group_options('task'))}"
        )
    params: dict[str, Any] = operator_params(task_cfg, size, reference, solver)
    accepted = inspect.signature(OPERATORS[name].__init__).parameters
    if "image_size" in accepted:
        params["image_size"] = size
    if "generator" in accepted:
        params["generator"] = generators if generators is not None else [torch.Generator().manual_seed(0)]
    noise = task_noise(task_cfg, reference, solver)
    if noise is not None:
        params["noise"] = noise
    try:
        return make_operator(name, **params)
    except (TypeError, ValueError) as exc:
        settings = {k: v for k, v in params.items() if k != "generator"}  # the per-image generators say nothing
        raise SetupError(f"task={task_cfg.name} at {size} px: {exc} (operator settings: {settings})") from exc


def build_custom_operator(
    task_cfg: DictConfig, spec: str, size: int, generators: list[torch.Generator] | None
) -> Operator:
    """A user's operator ``task.operator=<module>:<name>`` (``operators.load_operator``) with ``task.kwargs``, plus
    ``image_size`` / ``generator`` when its signature takes them (as for registered operators); the task's
    ``noise`` replaces the operator's own unless ``task.kwargs`` sets ``noise``."""
    kwargs = task_cfg.get("kwargs")
    given: dict[str, Any] = OmegaConf.to_container(kwargs, resolve=True) if kwargs else {}
    params = dict(given)
    try:
        target = resolve_operator(spec)
    except ImportError as exc:  # the module exists but does not import (ModuleNotFoundError of what it imports too)
        raise SetupError(f"task.operator={spec}: importing it failed: {type(exc).__name__}: {exc}") from exc
    except ValueError as exc:  # malformed spec, no such module, no such attribute: the message names the spec
        raise SetupError(f"task.operator: {exc}") from exc
    except Exception as exc:  # an error raised while the module runs
        raise SetupError(f"task.operator={spec}: importing it failed: {type(exc).__name__}: {exc}") from exc
    noise = task_cfg.get("noise")
    if callable(target) and not isinstance(target, Operator):
        try:
            accepted = inspect.signature(target).parameters
        except (TypeError, ValueError):
            accepted = {}
        if "image_size" in accepted:
            params.setdefault("image_size", size)
        if "generator" in accepted:
            params.setdefault("generator", generators if generators is not None else [torch.Generator().manual_seed(0)])
    try:
        operator = load_operator(spec, **params)
    except (TypeError, ValueError) as exc:
        with_kwargs = f" with task.kwargs {given}" if given else ""
        raise SetupError(f"task.operator={spec}{with_kwargs}: {exc}") from exc
    if noise is not None and "noise" not in given:
        operator.noise = as_noise_model(OmegaConf.to_container(noise, resolve=True))
    return operator


def check_operator(
    task_cfg: DictConfig,
    size: int,
    device: torch.device,
    dtype: torch.dtype,
    reference: bool = False,
    solver: str | None = None,
) -> tuple[Operator, tuple[int, ...]]:
    """Build the operator once and apply it to a zero image: sizes that do not fit fail here, at start-up.
    Returns the operator and the measurement's (H, W)."""
    operator = build_operator(task_cfg, size, None, reference, solver)
    try:
        y = operator.to(device)(torch.zeros(1, 3, size, size, device=device, dtype=dtype))
    except (TypeError, ValueError) as exc:
        raise SetupError(f"task={task_cfg.name} does not fit {size} px images: {exc}") from exc
    return operator, tuple(y.shape[-2:])


# -- solvers --------------------------------------------------------------------------------------------------
class SolverMismatch(SetupError):
    """The solver needs what the task's operator does not offer (``solvers.fit_error``)."""


def check_solver_fits(solver: str, operator: Operator, task: str) -> None:
    """Fail at start-up when the solver needs what the task's operator does not offer (``SolverSpec.needs`` against
    ``Operator.capabilities``), naming the solvers that can."""
    problem = fit_error(solver, operator, what=f"task={task}'s operator {operator.name}")
    if problem:
        raise SolverMismatch(problem)


def build_solver(
    settings: Settings, solver_cfg: DictConfig, prior: DiffusionPrior, operator: Operator, progress: bool
) -> Solver:
    """The registered solver ``settings.solver`` with the resolved step sizes and PAG, and its options from
    ``solver_cfg`` (``SolverSpec.options``); ``SolverMismatch`` when it cannot run with ``operator``."""
    if operator is not None:
        check_solver_fits(settings.solver, operator, settings.task)
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
