"""Every setting checked before anything is built or written: one ``SetupError`` per bad value, worded
``<key>=<value>: <what is allowed>``."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from solvers import SOLVERS
from solvers.guidance import PAG_MODES

from .build import DTYPES
from .errors import SetupError

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
    "solver.zeta": number_at_least(0, nullable=True),
    "solver.omega": number_at_least(0, nullable=True),
    "solver.gamma": number_at_least(0, nullable=True),
    "solver.clip_x0": BOOL,
    "solver.eta": number_at_least(0, high=1),
    "solver.cfg_scale": number_at_least(0),
    "solver.prompt": (lambda v: isinstance(v, str), "a string"),
    "solver.noisy_measurement_loss": BOOL,
    "solver.stochastic_encoder": BOOL,
    "solver.empty_prompt_cfg": BOOL,
    "solver.reference": BOOL,
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
# every registered solver's step sizes (given, or null: from the table)
for _spec in SOLVERS.values():
    for _param in _spec.params:
        RULES.setdefault(f"solver.{_param}", number_at_least(0, nullable=True))


def validate(cfg: DictConfig) -> None:
    """Raise ``SetupError("<key>=<value>: <allowed>")`` for the first setting of ``RULES`` that is not allowed,
    and for a folder data set whose folder is missing."""
    for key, (check, allowed) in RULES.items():
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
    name = OmegaConf.select(cfg, "solver.name", default=None)
    reference = OmegaConf.select(cfg, "solver.reference", default=False)
    if reference and name in SOLVERS and "reference" not in SOLVERS[name].options:
        with_switch = ", ".join(n for n, spec in SOLVERS.items() if "reference" in spec.options)
        raise SetupError(
            f"solver.reference=true: solver={name} has no reference mode (it reproduces no published code's "
            f"quirks); solvers with one: {with_switch}"
        )
    if OmegaConf.select(cfg, "data.kind", default=None) == "folder":
        _check_data_path(cfg.data)


def _check_data_path(data_cfg: DictConfig) -> None:
    from .build import resolve_path

    path = data_cfg.get("path")
    env = {"ffhq": "FFHQ_DIR", "imagenet": "IMAGENET_VAL_DIR"}.get(str(data_cfg.get("name")))
    hint = f" (or export {env}=<folder>)" if env else ""
    if path in (None, "", "???"):
        raise SetupError(f"data.path=null: data={data_cfg.name} needs the images' folder: data.path=/path/to/images")
    root = resolve_path(path)
    if not root.is_dir():
        raise SetupError(f"data.path={path}: image folder not found: {root}; set data.path=<folder>{hint}")
