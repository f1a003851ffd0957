"""Experiments from configs: ``run(cfg)`` restores a data set with the configured prior, task, solver and PAG.

    import runner
    cfg = runner.compose("task=sr4", "solver.num_steps=50")      # Hydra's compose API over conf/
    summary = runner.run(cfg)

``scripts/restore.py`` is the same thing behind ``@hydra.main``; weights without a local copy are fetched from
their configured source (``runner.weights``, ``scripts/fetch_weights.py``) unless offline. Importing this
package registers the OmegaConf resolvers the configs use (``runner.resolvers``: ``auto_solver``, ``pag_tag``,
``path_stem`` and the folder-name parts) and the ``solver=auto`` node (``runner.config.register_auto_solver``).
"""

from .build import build_operator, build_prior, build_solver, prior_image_size, run_needs, select_device
from .config import Settings, check_compatible, compose, operator_params, option_list, resolve_settings
from .data import DataSet, Sample, build_dataset
from .download import Source, WeightsError, WeightsMissing, download_url, fetch
from .errors import Interrupted, SetupError, error_lines
from .heldout import HeldOutBatch, ShapesReference, held_out_batch, pixel_scores, restore_batch
from .hub_data import DataNeed, HubSpec, data_need, hub_spec
from .identity import experiment_identity, short_hash, task_as_run
from .paths import CONF_DIR, REPO_ROOT, resolve_path
from .preflight import preflight
from .priors import PRIORS, PriorFamily
from .resolvers import register_resolvers
from .run import Experiment, Plan, dry_run, one_line, plan, run, summarize, task_dir
from .seeds import ImageStreams, image_streams, restart_generators, restart_seed, stream_seed
from .store import CSV_COLUMNS, TaskFolder, read_metrics_csv
from .validate import validate
from .weights import Need, is_offline, prefetch_command

__all__ = [
    "CONF_DIR",
    "CSV_COLUMNS",
    "PRIORS",
    "REPO_ROOT",
    "DataNeed",
    "DataSet",
    "Experiment",
    "HeldOutBatch",
    "HubSpec",
    "ImageStreams",
    "Interrupted",
    "Need",
    "Plan",
    "PriorFamily",
    "Sample",
    "Settings",
    "SetupError",
    "ShapesReference",
    "Source",
    "TaskFolder",
    "WeightsError",
    "WeightsMissing",
    "build_dataset",
    "build_operator",
    "build_prior",
    "build_solver",
    "check_compatible",
    "compose",
    "data_need",
    "download_url",
    "dry_run",
    "error_lines",
    "experiment_identity",
    "fetch",
    "held_out_batch",
    "hub_spec",
    "image_streams",
    "is_offline",
    "one_line",
    "operator_params",
    "option_list",
    "pixel_scores",
    "plan",
    "prefetch_command",
    "preflight",
    "prior_image_size",
    "read_metrics_csv",
    "register_resolvers",
    "resolve_path",
    "resolve_settings",
    "restart_generators",
    "restart_seed",
    "restore_batch",
    "run",
    "run_needs",
    "select_device",
    "short_hash",
    "stream_seed",
    "summarize",
    "task_as_run",
    "task_dir",
    "validate",
]
