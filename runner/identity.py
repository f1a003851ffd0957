"""What determines an experiment's results, and the output folder names derived from it.

The folder of a run is ``<results_root>/<name>/<task folder>``: ``name`` spells out the settings users sweep most
(data, prior, solver, steps, PAG scale, seed) and ends with a short hash of everything else that changes results,
so two commands share a folder iff they would produce the same images (and rerunning a command resumes it).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from omegaconf import DictConfig, OmegaConf

from solvers import SOLVERS

from .config import CONF_DIR, Settings, operator_params, resolve_settings, task_noise

#: keys of the data config that choose *which* images run, not what their results are
DATA_SELECTION_KEYS = ("limit", "shard", "num_shards")
#: where data=ffhq|imagenet fetch their images when no folder is given or found (the same images as the folder's,
#: like prior.weights for a checkpoint): not part of the identity, so a run resumes from either source
DATA_SOURCE_KEYS = ("hub",)
#: prior keys that do not change results: descriptions, where the weights come from, the default batch size, the
#: default feature extractor of the distribution metrics
PRIOR_PRESENTATION_KEYS = ("title", "download", "weights", "batch_size", "features")


def _container(node: Any) -> Any:
    """A plain (resolved) copy of one config node; only the node is resolved, not the whole config."""
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def task_as_run(task_cfg: DictConfig, size: int, reference: bool = False, solver: str | None = None) -> dict[str, Any]:
    """The task config with ``params`` and ``noise`` as used at working resolution ``size`` (``resolutions`` merged
    in; under the solver's reproduction switch ``reference_resolutions`` and ``solver``'s reference task settings)."""
    task = {k: v for k, v in _container(task_cfg).items() if k not in ("resolutions", "reference_resolutions")}
    task["params"] = operator_params(task_cfg, size, reference, solver)
    if "noise" in task:
        task["noise"] = task_noise(task_cfg, reference, solver)
    return task


def experiment_identity(cfg: DictConfig, settings: Settings, size: int) -> dict[str, Any]:
    """The settings that determine each image's result (not which images run, nor where or how fast)."""
    # the chosen solver's own options (step sizes and num_steps are in the effective settings)
    solver_cfg = _container(cfg.solver)
    solver = {"name": settings.solver, **{k: solver_cfg.get(k) for k in SOLVERS[settings.solver].options}}
    restarts = solver_cfg.get("restarts", 1)
    if restarts != 1:  # best of several runs: other images (left out at 1, so folders made before it keep their name)
        solver["restarts"] = restarts
    effective = {k: v for k, v in settings.to_dict().items() if k != "sources"}
    metrics = cfg.metrics
    return {
        "task": task_as_run(
            cfg.task, size, bool(OmegaConf.select(cfg, "solver.reference", default=False)), settings.solver
        ),
        "prior": {k: v for k, v in _container(cfg.prior).items() if k not in PRIOR_PRESENTATION_KEYS},
        "solver": solver,
        "settings": effective,
        "data": {k: v for k, v in _container(cfg.data).items() if k not in (*DATA_SELECTION_KEYS, *DATA_SOURCE_KEYS)},
        "seed": cfg.seed,
        "dtype": cfg.dtype,
        "image_size": size,
        "metrics": {
            "size": _container(metrics.size),
            "recon": _container(metrics.get("recon")),
            "lpips_net": _container(metrics.lpips.net),
        },
    }


def short_hash(data: Any) -> str:
    """8 hex digits of the SHA-256 of ``data`` as canonical JSON."""
    text = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


# -- resolvers used by conf/config.yaml -----------------------------------------------------------------------
# They never raise: an invalid config still needs a folder name for Hydra, and is reported (with nothing
# created) by the runner's validation.
def folder_identity(cfg: DictConfig, settings: Settings, size: int) -> dict[str, Any]:
    """``experiment_identity`` without what depends on the task (each task has its own sub-folder): the step sizes
    the table gives per task are fixed by what was given, the table and its row."""
    identity = experiment_identity(cfg, settings, size)
    del identity["task"], identity["settings"]
    solver_cfg = _container(cfg.solver)
    identity["given"] = {
        "solver": {k: solver_cfg.get(k) for k in ("num_steps", *SOLVERS[settings.solver].params)},
        "pag": _container(cfg.pag),
        "steps": _container(OmegaConf.select(cfg, "steps", default=None)),
        "row": settings.dataset,
    }
    return identity


def settings_hash(*, _root_: DictConfig) -> str:
    """The short hash of ``folder_identity``."""
    try:
        return short_hash(folder_identity(_root_, resolve_settings(_root_), int(_root_.prior.image_size)))
    except Exception:
        return "invalid"


def steps_tag(*, _root_: DictConfig) -> str:
    """``<n>steps`` with the effective number of solver steps."""
    try:
        return f"{resolve_settings(_root_).num_steps}steps"
    except Exception:
        return "invalid"


def task_folder(*, _root_: DictConfig) -> str:
    """``<task.name>``, plus a short hash of the task's settings when they differ from ``conf/task/<name>.yaml``."""
    name = str(OmegaConf.select(_root_, "task.name", default="task"))
    try:
        shipped = CONF_DIR / "task" / f"{name}.yaml"
        task = _container(_root_.task)
        if shipped.is_file() and OmegaConf.to_container(OmegaConf.load(shipped), resolve=True) == task:
            return name
        return f"{name}_{short_hash(task)}"
    except Exception:
        return f"{name}_invalid"
