"""Experiments from configs: ``run(cfg)`` restores a data set with the configured prior, task, solver and PAG.

    import runner
    cfg = runner.compose("task=sr4", "solver.num_steps=50")      # Hydra's compose API over conf/
    summary = runner.run(cfg)

``scripts/restore.py`` is the same thing behind ``@hydra.main``; weights without a local copy are fetched from
their configured source (``runner.weights``, ``scripts/fetch_weights.py``) unless offline. Importing this
package registers the OmegaConf resolvers the configs use (``auto_solver``, ``pag_tag``, ``path_stem``).
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
from .download import Source, WeightsError, WeightsMissing, download_url, fetch
from .errors import SetupError
from .run import Experiment, experiment_identity, one_line, run, summarize
from .seeds import ImageStreams, image_streams, stream_seed
from .store import CSV_COLUMNS, TaskFolder, read_metrics_csv
from .weights import Need, is_offline, prefetch_command, run_needs

__all__ = [
    "CONF_DIR",
    "CSV_COLUMNS",
    "REPO_ROOT",
    "DataSet",
    "Experiment",
    "ImageStreams",
    "Need",
    "Sample",
    "Settings",
    "SetupError",
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
    "download_url",
    "experiment_identity",
    "fetch",
    "image_streams",
    "is_offline",
    "one_line",
    "operator_params",
    "prefetch_command",
    "prior_image_size",
    "read_metrics_csv",
    "register_resolvers",
    "resolve_path",
    "resolve_settings",
    "run",
    "run_needs",
    "select_device",
    "stream_seed",
    "summarize",
]
