"""Every setting checked before anything is built or written: one ``SetupError`` per bad value, worded
``<key>=<value>: <what is allowed>``."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from solvers import SOLVERS, SolverOption
from solvers.guidance import PAG_MODES

from .build import DTYPES
from .data import path_variable
from .errors import SetupError
from .hub_data import folder_is_default
from .paths import resolve_path

_ABSENT = object()


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _bool(v: Any) -> bool:
    return isinstance(v, bool)


def int_at_least(low: int, nullable: bool = False) -> tuple[Callable[[Any], bool], str]:
    text = f"an integer >= {low}" + (" or null" if nullable else "")
    return (lambda v: (nullable and v is None) or (_int(v) and v >= low)), text


def number_at_least(low: float, nullable: bool = False, high: float | None = None) -> tuple[Callable, str]:
    text = f"a number >= {low:g}" + (f" and <= {high:g}" if high is not None else "") + (" or null" if nullable else "")
    return (lambda v: (nullable and v is None) or (_number(v) and v >= low and (high is None or v <= high))), text


def one_of(*choices: Any) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v in choices), "one of " + ", ".join(map(_show, choices))


def _interval(v: Any) -> bool:
    return v is None or (
        isinstance(v, (list, tuple)) and len(v) == 2 and all(_number(x) for x in v) and 0 <= v[0] <= v[1]
    )


def _device(v: Any) -> bool:
    if not isinstance(v, str):
        return False
    try:
        torch.device(v)
    except (RuntimeError, ValueError):
        return v == "auto"
    return True


def _layers(v: Any) -> bool:
    return v is None or (isinstance(v, str) and v != "") or (isinstance(v, list) and all(isinstance(x, str) for x in v))


def _feature_extractor(v: Any) -> bool:
    """A named extractor (``evaluation.EXTRACTORS``) or ``package.module:attr`` that imports (what the run loads
    after restoring every image: checked here so a typo stops the run before, not after, the work)."""
    import importlib

    from evaluation.features import EXTRACTORS

    if not isinstance(v, str):
        return False
    if v in EXTRACTORS:
        return True
    module, _, attr = v.partition(":") if ":" in v else v.rpartition(".")
    if not module or not attr:
        return False
    try:
        return hasattr(importlib.import_module(module), attr)
    except Exception:  # ImportError, or the module fails while importing
        return False


BOOL = (_bool, "true or false")

#: key -> (check, what is allowed); keys missing from a config (e.g. data.start for folders) are not checked
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": int_at_least(0),
    "device": (_device, "auto, cpu, cuda or cuda:<n>"),
    "dtype": one_of(*DTYPES),
    "batch_size": int_at_least(1),
    "threads": int_at_least(1, nullable=True),
    "progress_every": int_at_least(0),
    "max_images": int_at_least(0, nullable=True),
    "show_progress": BOOL,
    "retry_failed": BOOL,
    "dry_run": BOOL,
    "offline": BOOL,
    "pag.enabled": BOOL,
    "pag.scale": number_at_least(0, nullable=True),
    "pag.layers": (_layers, "null, a layer name or a list of layer names, e.g. [middle_block.1]"),
    "pag.adaptive_scale": number_at_least(0),
    "pag.x0_from": one_of("unguided", "guided"),
    "pag.mode": one_of(*PAG_MODES),
    "pag.interval": (_interval, "null or [t_lo, t_hi] with 0 <= t_lo <= t_hi (timesteps), e.g. [0,500]"),
    "solver.num_steps": int_at_least(1, nullable=True),
    "solver.restarts": int_at_least(1),
    "steps.row": (lambda v: v is None or isinstance(v, str), "null or a row of the step-size table"),
    "prior.image_size": int_at_least(1),
    "data.limit": int_at_least(1, nullable=True),
    "data.start": int_at_least(0),
    "data.shard": int_at_least(0),
    "data.num_shards": int_at_least(1),
    "data.min_size": int_at_least(1, nullable=True),
    "data.recursive": BOOL,
    "metrics.enabled": BOOL,
    "metrics.recon": one_of(None, "raw", "pasted"),
    "metrics.size": int_at_least(1, nullable=True),
    "metrics.lpips.enabled": BOOL,
    "metrics.lpips.net": one_of("alex", "vgg"),
    "metrics.features": (
        _feature_extractor,
        "inception, shapes, or package.module:attr naming an importable torch.nn.Module (or a function making one)",
    ),
    "metrics.fid.enabled": BOOL,
    "metrics.fid.dims": one_of(64, 192, 768, 2048),
    "metrics.fid.batch_size": int_at_least(1),
    "save.progress": BOOL,
    "save.grid": BOOL,
    "save.grid_progress": BOOL,
}


def option_rule(option: SolverOption) -> tuple[Callable[[Any], bool], str]:
    """The check of one solver option from its type, bounds and choices (``solvers.SolverOption``), worded as the
    rules above: ``true or false``, ``an integer >= 1``, ``a number >= 0 and <= 1 or null``, ``one of a, b``."""
    if option.choices is not None:
        return one_of(*option.choices, *([None] if option.nullable and None not in option.choices else []))
    low, high = option.low, option.high
    if option.kind is bool:
        check, text = _bool, "true or false"
    elif option.kind is str:
        check, text = (lambda v: isinstance(v, str)), "a string"
    elif option.kind in (int, float):
        whole = option.kind is int

        def check(v: Any) -> bool:
            return (_int(v) if whole else _number(v)) and (low is None or v >= low) and (high is None or v <= high)

        bounds = [f">= {low:g}"] if low is not None else []
        bounds += [f"<= {high:g}"] if high is not None else []
        text = ("an integer" if whole else "a number") + (" " + " and ".join(bounds) if bounds else "")
    else:  # a type no conf file can state: the solver checks it
        return (lambda v: True), "anything"
    if option.nullable:
        return (lambda v: v is None or check(v)), f"{text} or null"
    return check, text


def solver_rules(name: str | None) -> dict[str, tuple[Callable[[Any], bool], str]]:
    """``solver.<key>`` rules from the registry (``solvers.SOLVERS``): every solver's step sizes (given, or null:
    from the table) and options, by their types. A key several solvers take is checked by solver ``name``'s rule
    when it takes it (else by the first registered one's): ``solver=auto`` holds the keys of several solvers."""
    rules: dict[str, tuple[Callable[[Any], bool], str]] = {}
    specs = [SOLVERS[name]] if name in SOLVERS else []
    for spec in [*specs, *SOLVERS.values()]:
        for param in spec.params:
            rules.setdefault(f"solver.{param}", number_at_least(0, nullable=True))
        for option in spec.option_specs.values():
            rules.setdefault(f"solver.{option.name}", option_rule(option))
    return rules


def validate(cfg: DictConfig) -> None:
    """Raise ``SetupError("<key>=<value>: <allowed>")`` for the first setting of ``RULES`` (and of the registered
    solvers' keys, ``solver_rules``) that is not allowed, and for a folder data set whose folder is missing."""
    try:
        name = OmegaConf.select(cfg, "solver.name", default=None)
    except OmegaConfBaseException:  # reported below, as the key that cannot be resolved
        name = None
    for key, (check, allowed) in {**RULES, **solver_rules(name)}.items():
        try:
            value = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=True)
        except OmegaConfBaseException as exc:
            raise SetupError(f"{key}: cannot be resolved ({type(exc).__name__}: {exc})".splitlines()[0]) from None
        if value is _ABSENT:
            continue
        if isinstance(value, (DictConfig, list)) or OmegaConf.is_list(value):
            value = OmegaConf.to_container(value) if not isinstance(value, list) else value
        if not check(value):
            raise SetupError(f"{key}={_show(value)}: {allowed}")
    reference = OmegaConf.select(cfg, "solver.reference", default=False)
    if reference and name in SOLVERS and not SOLVERS[name].has_reference_mode:
        with_switch = ", ".join(n for n, spec in SOLVERS.items() if spec.has_reference_mode)
        raise SetupError(
            f"solver.reference=true: solver={name} has no reference mode (it reproduces no published code's "
            f"quirks); solvers with one: {with_switch}"
        )
    if OmegaConf.select(cfg, "data.kind", default=None) == "folder" and not _hub_fallback(cfg.data):
        _check_data_path(cfg.data)


def _hub_fallback(data_cfg: DictConfig) -> bool:
    """``data=ffhq|imagenet`` with neither ``data.path`` nor its variable set and no folder at the default path:
    the images come from the configured Hub set (``runner.hub_data``), not from a folder."""
    if data_cfg.get("hub") is None or not folder_is_default(data_cfg):
        return False
    return not resolve_path(data_cfg.path).is_dir()


def _check_data_path(data_cfg: DictConfig) -> None:
    path = data_cfg.get("path")
    env = path_variable(data_cfg)
    hint = f" (or export {env}=<folder>)" if env else ""
    if path in (None, "", "???"):
        raise SetupError(f"data.path=null: data={data_cfg.name} needs the images' folder: data.path=/path/to/images")
    root = resolve_path(path)
    if not root.is_dir():
        raise SetupError(f"data.path={path}: image folder not found: {root}; set data.path=<folder>{hint}")
