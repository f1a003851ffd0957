"""From a composed config to resolved settings: solver choice, step sizes and PAG from the tables, checks.

Step sizes (``conf/steps/<table>.yaml``, selected with ``steps=paper``) are keyed by solver x row x ``task.name``,
where the row is the domain the *prior* was trained on (``prior.domain``: ffhq, imagenet, shapes), or
``data.dataset`` for a prior trained on everything (SD1.5, whose Table 5 has a row per dataset), unless
``steps.row`` names one. A value set in the config or on the command line (``solver.zeta``, ``solver.omega``,
``solver.gamma``, ``pag.scale``, ``pag.layers``) is used as given; a null one is read from the table:
``<param>`` without PAG, ``<param>_pag`` with PAG, ``pag_scale`` when PAG is enabled without a scale, and the
dataset's ``pag_layers``. PAG is on iff ``pag.scale > 0`` or ``pag.enabled=true``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from solvers import PAG, SOLVERS, SPACES, default_solver, solvers_for

from .errors import SetupError
from .paths import CONF_DIR

_SPACE_WORDS = {"pixel": "pixel-space", "latent": "latent"}


def _space(latent: bool) -> str:
    return "latent" if latent else "pixel"


# -- resolvers used by conf/*.yaml ----------------------------------------------------------------------------
def auto_solver(latent: Any) -> str:
    """``solver=auto``: the registry's default solver for the prior's space (the first one registered for it)."""
    return default_solver(bool(latent))


def pag_tag(*, _root_: DictConfig) -> str:
    """``pag<s>`` with the effective PAG scale (``pag0`` when off; ``pag<s>i<t_lo>-<t_hi>`` with an interval), and
    ``ref_`` before it under ``solver.reference=true``, for output folder names."""
    reference = "ref_" if bool(OmegaConf.select(_root_, "solver.reference", default=False)) else ""
    try:
        pag = resolve_settings(_root_).pag
        if pag is None:
            return f"{reference}pag0"
        interval = "" if pag.interval is None else f"i{pag.interval[0]:g}-{pag.interval[1]:g}"
        return f"{reference}pag{pag.scale:g}{interval}"
    except Exception:  # an invalid config is reported by the runner, with a proper message
        scale = OmegaConf.select(_root_, "pag.scale", default=None)
        return f"{reference}pag{scale}"


def path_stem(path: Any) -> str:
    """The last component of a path (``data=folder`` names its results after the folder); ``unset`` for None."""
    return "unset" if path is None else (Path(str(path)).name or "root")


def register_auto_solver() -> None:
    """``solver=auto`` (``conf/config.yaml``'s default): a config node made from the registry, the conf files of
    each space's default solver merged (so their keys, ``solver.zeta=...`` or ``solver.eta=...``, can be given
    with it; the chosen one reads its own) and ``name`` resolved from the prior by ``auto_solver``. Registered on
    import and again by ``compose`` (the registry may have changed)."""
    defaults = []
    for space in SPACES:
        try:
            defaults.append(default_solver(space))
        except ValueError:  # no solver for this space
            continue
    node = {"defaults": [*defaults, "_self_"], "name": "${auto_solver:${prior.latent}}"}
    ConfigStore.instance().store(group="solver", name="auto", node=node, provider="runner")


def compose(*overrides: str, config_name: str = "config") -> DictConfig:
    """The config ``conf/<config_name>.yaml`` composed with command-line style ``overrides`` (Hydra's compose API),
    e.g. ``compose("task=sr4", "pag.scale=2")``. Not for use inside a running ``@hydra.main`` application."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register_auto_solver()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides))


# -- the choices a user has -----------------------------------------------------------------------------------
def group_options(group: str) -> list[str]:
    """The options of a config group (``task``, ``prior``, ...), from ``conf/<group>/*.yaml`` (``_*.yaml`` are
    shared parts, not options) and the nodes registered in code (``solver=auto``)."""
    files = {p.stem for p in (CONF_DIR / group).glob("*.yaml") if not p.stem.startswith("_")}
    try:
        stored = {Path(name).stem for name in ConfigStore.instance().list(group)}
    except OSError:  # no node registered for this group
        stored = set()
    return sorted(files | stored)


def option_list(group: str, text: str) -> list[str]:
    """The comma-separated ``text`` (``"box_inpaint,sr4"``) as options of ``group``; an unknown name is a
    ``SetupError`` listing the valid ones, so a script can refuse a typo before it loads a prior."""
    names = [name for name in text.split(",") if name]
    valid = group_options(group)
    unknown = [name for name in names if name not in valid]
    if unknown:
        raise SetupError(f"unknown {group} {', '.join(map(repr, unknown))}; valid: {', '.join(valid)}")
    return names


def prior_options(latent: bool) -> list[str]:
    """Prior configs whose ``latent`` flag is ``latent``."""
    names = []
    for name in group_options("prior"):
        data = yaml.safe_load((CONF_DIR / "prior" / f"{name}.yaml").read_text()) or {}
        if bool(data.get("latent", False)) == latent:
            names.append(name)
    return names


def solver_options() -> list[str]:
    """``solver=...`` choices: ``auto`` and every registered solver."""
    return ["auto", *SOLVERS]


def check_compatible(cfg: DictConfig) -> str:
    """The solver name; raises ``SetupError`` for an unknown solver or a solver / prior mismatch, naming the valid
    choices (from the registry)."""
    solver, prior = str(cfg.solver.name), str(cfg.prior.name)
    latent = bool(cfg.prior.latent)
    if solver not in SOLVERS:
        raise SetupError(
            f"unknown solver {solver!r}; valid: {', '.join(f'solver={name}' for name in solver_options())}"
        )
    space = SOLVERS[solver].space
    if space != _space(latent):
        here = ", ".join(f"solver={name}" for name in [*solvers_for(_space(latent)), "auto"])
        there = ", ".join(prior_options(space == "latent"))
        raise SetupError(
            f"solver={solver} needs a {_SPACE_WORDS[space]} prior, but prior={prior} is a "
            f"{_SPACE_WORDS[_space(latent)]} prior. Valid: {here} with prior={prior}, or solver={solver} with "
            f"prior one of {there}"
        )
    return solver


# -- step sizes and PAG ---------------------------------------------------------------------------------------
@dataclass
class Settings:
    """What an experiment runs with, after the tables. ``sources`` says where each value came from."""

    solver: str
    dataset: str
    task: str
    step_sizes: dict[str, float]
    pag: PAG | None
    num_steps: int = 1000
    sources: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        pag = None
        if self.pag is not None:
            pag = {
                "scale": self.pag.scale,
                "layers": list(self.pag.layers),
                "adaptive_scale": self.pag.adaptive_scale,
                "x0_from": self.pag.x0_from,
                "mode": self.pag.mode,
                "interval": None if self.pag.interval is None else list(self.pag.interval),
            }
        return {
            "solver": self.solver,
            "dataset": self.dataset,
            "task": self.task,
            **self.step_sizes,
            "num_steps": self.num_steps,
            "pag": pag,
            "sources": dict(self.sources),
        }

    def describe(self) -> str:
        """One line: ``dps on ffhq/box_inpaint: zeta=1 (table ...); PAG s=1 on input_blocks.9.1 (table ...)``."""
        parts = [f"{k}={v:g} ({self.sources[k]})" for k, v in self.step_sizes.items()]
        parts.append(f"{self.num_steps} steps ({self.sources['num_steps']})")
        if self.pag is None:
            parts.append("PAG off")
        else:
            interval = "" if self.pag.interval is None else " for t in [{:g}, {:g}]".format(*self.pag.interval)
            parts.append(
                f"PAG scale={self.pag.scale:g} ({self.sources['pag.scale']}) on {', '.join(self.pag.layers)} "
                f"({self.sources['pag.layers']}){interval}"
            )
        return f"{self.solver} on {self.dataset}/{self.task}: " + "; ".join(parts)


def step_row(cfg: DictConfig) -> tuple[str, str]:
    """The step-size table row and where it came from: ``steps.row`` if given, else the domain the prior was
    trained on (``prior.domain``), else ``data.dataset`` (a prior trained on everything, e.g. SD1.5)."""
    for key in ("steps.row", "prior.domain", "data.dataset"):
        value = OmegaConf.select(cfg, key, default=None)
        if value not in (None, ""):
            return str(value), key
    raise SetupError("no step-size row: set data.dataset=<ffhq|imagenet|shapes> or steps.row=<row>")


def _table(cfg: DictConfig, solver: str, row: str, row_source: str) -> Mapping[str, Any]:
    section = SOLVERS[solver].table
    tables = OmegaConf.select(cfg, "steps", default=None)
    if tables is None or section not in tables:
        raise SetupError(f"no step-size table {section!r} for solver {solver!r} (config group steps/)")
    if row not in tables[section]:
        raise SetupError(
            f"no step sizes for solver={solver} on {row_source}={row!r}; the table has "
            f"{', '.join(tables[section])}. Set steps.row to one of them or give every value on the command line "
            f"({', '.join(f'solver.{p}=...' for p in SOLVERS[solver].params)}, pag.scale=..., pag.layers=[...])"
        )
    return tables[section][row]


def resolve_settings(cfg: DictConfig) -> Settings:
    """Solver, step sizes and PAG for ``cfg`` (see the module docstring); ``SetupError`` when impossible."""
    solver = check_compatible(cfg)
    (dataset, row_source), task = step_row(cfg), str(cfg.task.name)
    where = f"steps.{SOLVERS[solver].table}.{dataset}"
    table: Mapping[str, Any] | None = None

    def lookup(key: str) -> Any:
        nonlocal table
        if table is None:
            table = _table(cfg, solver, dataset, row_source)
        if key in ("pag_layers", "num_steps"):  # per dataset, not per task
            value = table.get(key)
        else:
            entry = (table.get("tasks") or {}).get(task)
            if entry is None:
                raise SetupError(
                    f"no step sizes for task={task} in {where}.tasks (it has {', '.join(table.get('tasks') or [])}); "
                    f"give {key.replace('_pag', '')} on the command line"
                )
            value = entry.get(key)
        if value is None:
            raise SetupError(f"{where} has no {key!r} for task={task}; set it on the command line")
        return value

    pag_cfg = cfg.pag
    scale, enabled = pag_cfg.scale, bool(pag_cfg.enabled)
    if scale is not None and float(scale) < 0:
        raise SetupError(f"pag.scale must be >= 0, got {scale}")
    if enabled and scale is not None and float(scale) == 0:
        raise SetupError("pag.enabled=true with pag.scale=0 is contradictory: drop one of them")
    pag_on = enabled or (scale is not None and float(scale) > 0)
    sources: dict[str, str] = {"dataset": row_source}

    step_sizes: dict[str, float] = {}
    for param in SOLVERS[solver].params:
        value = cfg.solver.get(param)
        if value is not None:
            step_sizes[param], sources[param] = float(value), f"solver.{param}"
        else:
            key = f"{param}_pag" if pag_on else param
            step_sizes[param], sources[param] = float(lookup(key)), f"{where}.tasks.{task}.{key}"

    reference_steps = None
    if bool(cfg.solver.get("reference", False)):
        reference_steps = SOLVERS[solver].reference_task(task).num_steps
    if cfg.solver.get("num_steps") is not None:
        num_steps, sources["num_steps"] = int(cfg.solver.num_steps), "solver.num_steps"
    elif reference_steps is not None:  # the reference code's, with solver.reference=true (SolverSpec.reference_tasks)
        num_steps, sources["num_steps"] = int(reference_steps), f"solver.reference ({solver}'s reference code)"
    else:
        num_steps, sources["num_steps"] = int(lookup("num_steps")), f"{where}.num_steps"

    pag = None
    if pag_on:
        if scale is not None and float(scale) > 0:
            scale, sources["pag.scale"] = float(scale), "pag.scale"
        else:
            scale, sources["pag.scale"] = float(lookup("pag_scale")), f"{where}.tasks.{task}.pag_scale"
        if pag_cfg.layers:
            layers = [str(x) for x in ([pag_cfg.layers] if isinstance(pag_cfg.layers, str) else pag_cfg.layers)]
            sources["pag.layers"] = "pag.layers"
        else:
            layers, sources["pag.layers"] = [str(x) for x in lookup("pag_layers")], f"{where}.pag_layers"
        try:
            pag = PAG(
                scale=scale,
                layers=tuple(layers),
                adaptive_scale=float(pag_cfg.adaptive_scale),
                x0_from=str(pag_cfg.x0_from),
                mode=str(pag_cfg.mode),
                interval=_interval(pag_cfg.get("interval")),
            )
        except ValueError as exc:
            raise SetupError(f"invalid PAG settings: {exc}") from exc
    return Settings(solver, dataset, task, step_sizes, pag, num_steps, sources)


def _interval(value: Any) -> tuple[float, float] | None:
    """``pag.interval``: null or [t_lo, t_hi]."""
    if value is None:
        return None
    values = [value] if isinstance(value, int | float | str) else list(value)
    if len(values) != 2:
        raise SetupError(f"pag.interval must be [t_lo, t_hi] (timesteps 0..999), got {values}")
    return float(values[0]), float(values[1])


# -- operators ------------------------------------------------------------------------------------------------
def operator_params(
    task_cfg: DictConfig, size: int, reference: bool = False, solver: str | None = None
) -> dict[str, Any]:
    """The task's operator keyword arguments at working resolution ``size``: ``params`` updated with
    ``resolutions["<size>"]`` when present (tasks are defined at 256 px), then, with ``reference`` (the solver's
    reproduction switch), with ``reference_resolutions["<size>"]`` (what the reference code runs at that size) and
    the registered ``solver``'s reference settings for this task (``SolverSpec.reference_tasks``: its ``params``
    replace, its ``fill`` sets what the task leaves null). Arguments still null are left out (the operator's own
    default applies)."""
    params = OmegaConf.to_container(task_cfg.params, resolve=True) if task_cfg.get("params") else {}
    tables = ("resolutions", "reference_resolutions") if reference else ("resolutions",)
    for table in tables:
        override = (task_cfg.get(table) or {}).get(str(size))
        if override:
            params.update(OmegaConf.to_container(override, resolve=True))
    if reference and solver in SOLVERS:
        ref = SOLVERS[solver].reference_task(str(task_cfg.get("name")))
        params.update({k: v for k, v in ref.fill.items() if params.get(k) is None})
        params.update(ref.params)
    return {k: v for k, v in params.items() if v is not None}


def task_noise(task_cfg: DictConfig, reference: bool = False, solver: str | None = None) -> dict[str, Any] | None:
    """The task's measurement noise (``task.noise``), replaced with ``reference`` by the registered ``solver``'s
    reference noise for this task where it declares one (``ReferenceTask.noise_sigma``: Gaussian, std on [-1, 1])."""
    if reference and solver in SOLVERS:
        sigma = SOLVERS[solver].reference_task(str(task_cfg.get("name"))).noise_sigma
        if sigma is not None:
            return {"name": "gaussian", "sigma": float(sigma)}
    noise = task_cfg.get("noise")
    return None if noise is None else OmegaConf.to_container(noise, resolve=True)


register_auto_solver()
