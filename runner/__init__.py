"""Experiments from configs: ``run(cfg)`` restores a data set with the configured prior, task, solver and PAG.

    import runner
    cfg = runner.compose("task=sr4", "solver.num_steps=50")      # Hydra's compose API over conf/
    summary = runner.run(cfg)

``scripts/restore.py`` is the same thing behind ``@hydra.main``. Importing this package registers the OmegaConf
resolvers the configs use (``auto_solver``, ``pag_tag``, ``path_stem`` and the folder-name parts).
"""

from .build import build_operator, build_prior, build_solver, prior_image_size, resolve_path, select_device
from .config import (
    CONF_DIR,
    REPO_ROOT,
    Settings,
    check_compatible,
    compose,
    operator_params,
    register_resolvers,
    resolve_settings,
)
from .data import DataSet, Sample, build_dataset
from .errors import Interrupted, SetupError
from .identity import experiment_identity, short_hash, task_as_run
from .run import Experiment, Plan, dry_run, one_line, plan, run, summarize, task_dir
from .seeds import ImageStreams, image_streams, stream_seed
from .store import CSV_COLUMNS, TaskFolder, read_metrics_csv
from .validate import validate

__all__ = [
    "CONF_DIR",
    "CSV_COLUMNS",
    "REPO_ROOT",
    "DataSet",
    "Experiment",
    "ImageStreams",
    "Interrupted",
    "Plan",
    "Sample",
    "Settings",
    "SetupError",
    "TaskFolder",
    "build_dataset",
    "build_operator",
    "build_prior",
    "build_solver",
    "check_compatible",
    "compose",
    "dry_run",
    "experiment_identity",
    "image_streams",
    "one_line",
    "operator_params",
    "plan",
    "prior_image_size",
    "read_metrics_csv",
    "register_resolvers",
    "resolve_path",
    "resolve_settings",
    "run",
    "select_device",
    "short_hash",
    "stream_seed",
    "summarize",
    "task_as_run",
    "task_dir",
    "validate",
]
