"""Finding a sweep's jobs and merging the ones that differ only by shard into cells (method x task).

A *job* is one task folder (``summary.json``, ``metrics.csv``, ``records/``); nothing is read from folder names.
Its identity comes from ``summary.json`` (``settings`` with their sources, ``config``); a job still running has no
summary yet, so its identity comes from ``.hydra/config.yaml`` (resolved here the way the runner resolves it) or,
without one, from ``experiment.json``. Per-image rows are ``metrics.csv`` overlaid with ``records/*.json`` (the
records are the source of truth; the CSV is a snapshot).

Jobs whose identity is equal once the image selection (``data.shard``, ``data.num_shards``, ``data.limit``) is
left out form one *cell*: their rows are pooled by image name, so statistics are over the merged set.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: per-image columns that are not metrics
NON_METRIC_COLUMNS = frozenset({"name", "index", "status", "lpips_note", "seconds", "error", "source"})
#: data config keys that choose which images run, not what their results are (shards of one experiment differ in them)
SELECTION_KEYS = ("shard", "num_shards", "limit")
#: status preference when one image has rows in several folders
_STATUS_RANK = {"done": 3, "failed": 2, "skipped": 1}


def _number(value: Any) -> float | None:
    """A float from a CSV/JSON cell ("" and non-numbers: None)."""
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if not math.isnan(number) else None


@dataclass
class Job:
    """One task folder: its identity and its per-image rows (by name)."""

    folder: Path
    settings: dict[str, Any]
    config: dict[str, Any]
    rows: dict[str, dict[str, Any]]
    summary: dict[str, Any] | None = None  # None while the job is still running

    @property
    def images(self) -> int | None:
        """Images in the whole (unsharded) set, when the job has said so."""
        if self.summary is None:
            return None
        return (self.summary.get("counts") or {}).get("images")

    @property
    def set_metrics(self) -> dict[str, dict[str, Any]]:
        """Metrics over the job's set (FID, KID, ...): summary entries that hold a ``value`` key."""
        metrics = (self.summary or {}).get("metrics") or {}
        return {k: v for k, v in metrics.items() if isinstance(v, Mapping) and "value" in v}

    @property
    def metrics_size(self) -> int | None:
        return ((self.summary or {}).get("metrics") or {}).get("size")


def _read_rows(folder: Path, images: int | None) -> dict[str, dict[str, Any]]:
    """``metrics.csv`` overlaid with ``records/``. A record not in the CSV counts when its image is in the set
    (index < ``images``; any while unknown): the folder may hold images of an earlier run with a larger limit."""
    rows: dict[str, dict[str, Any]] = {}
    csv_path = folder / "metrics.csv"
    if csv_path.is_file():
        with open(csv_path, newline="") as f:
            for row in csv.DictReader(f):
                rows[row["name"]] = dict(row)
    records = folder / "records"
    if records.is_dir():
        for path in sorted(records.glob("*.json")):
            try:
                record = json.loads(path.read_text())
                name, index = str(record["name"]), record.get("index")
            except (OSError, ValueError, KeyError, AttributeError):
                continue  # being written or broken: the runner redoes that image
            if name in rows or images is None or (index is not None and index < images):
                rows[name] = record
    parsed = {}
    for name, row in rows.items():
        out: dict[str, Any] = {"name": name, "status": row.get("status")}
        for key, value in row.items():
            if key == "index":
                out[key] = None if _number(value) is None else int(float(value))
            elif key in NON_METRIC_COLUMNS and key != "seconds":
                out.setdefault(key, value)
            else:
                out[key] = _number(value)
        parsed[name] = out
    return parsed


def _identity_from_hydra(folder: Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(settings, config) of a running job from its ``.hydra/config.yaml``, resolved as the runner does."""
    path = folder / ".hydra" / "config.yaml"
    if not path.is_file():
        return None
    try:
        from omegaconf import OmegaConf

        from ..config import resolve_settings

        cfg = OmegaConf.load(path)
        settings = resolve_settings(cfg).to_dict()
        config = OmegaConf.to_container(cfg, resolve=True)
    except Exception as exc:  # a config this checkout cannot resolve: fall back to experiment.json
        log.warning("cannot resolve %s (%s: %s)", path, type(exc).__name__, exc)
        return None
    config.pop("hydra", None)
    return settings, config


def _identity_from_experiment(folder: Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(settings, config) from ``experiment.json``: sources unknown, so step sizes count as the table's."""
    path = folder / "experiment.json"
    if not path.is_file():
        return None
    try:
        exp = json.loads(path.read_text())
    except ValueError:
        return None
    settings = dict(exp.get("settings") or {})
    settings.setdefault("sources", {})
    if settings.get("pag"):
        settings["sources"].setdefault("pag.scale", "pag.scale")
    config = {k: exp.get(k) for k in ("task", "prior", "solver", "data", "seed", "dtype")}
    config["metrics"] = {"size": (exp.get("metrics") or {}).get("size")}
    return settings, config


def read_job(folder: str | Path) -> Job | None:
    """The job of a task folder, or None when it holds nothing to report yet."""
    folder = Path(folder)
    summary = None
    if (folder / "summary.json").is_file():
        try:
            summary = json.loads((folder / "summary.json").read_text())
        except ValueError:
            summary = None
    if summary is not None and "settings" in summary:
        settings, config = summary["settings"], summary.get("config") or {}
    else:
        identity = _identity_from_hydra(folder) or _identity_from_experiment(folder)
        if identity is None:
            return None
        settings, config = identity
    images = ((summary or {}).get("counts") or {}).get("images")
    return Job(folder, settings, config, _read_rows(folder, images), summary)


def find_jobs(root: str | Path, exclude: Iterable[Path] = ()) -> list[Job]:
    """Every job under ``root`` (folders holding ``summary.json`` or ``experiment.json``), in path order."""
    root = Path(root)
    skip = [Path(p).resolve() for p in exclude]
    folders = {p.parent for name in ("summary.json", "experiment.json") for p in root.rglob(name)}
    jobs = []
    for folder in sorted(folders):
        resolved = folder.resolve()
        if any(resolved == s or s in resolved.parents for s in skip) or ".submitit" in folder.parts:
            continue
        job = read_job(folder)
        if job is not None:
            jobs.append(job)
    return jobs


# -- what a job is --------------------------------------------------------------------------------------------
def _dataset_key(job: Job) -> tuple[str, str]:
    """(data name, prior name): one table each (the paper: one table per data set and prior)."""
    data = job.config.get("data") or {}
    prior = job.config.get("prior") or {}
    return str(data.get("name", job.settings.get("dataset", "?"))), str(prior.get("name", "?"))


def _method_key(job: Job) -> tuple[tuple[str, Any], ...]:
    """What defines a row: the solver, PAG (scale, or the table's per-task scale) and every setting that is not
    chosen by the task (values from the step-size table change with the task, so they do not define a row)."""
    s, sources = job.settings, job.settings.get("sources") or {}
    items: dict[str, Any] = {"solver": s.get("solver")}
    pag = s.get("pag")
    if pag is None:
        items["pag"] = "off"
    else:
        items["pag"] = pag.get("scale") if sources.get("pag.scale", "pag.scale") == "pag.scale" else "table"
        if sources.get("pag.layers") == "pag.layers":
            items["pag.layers"] = ",".join(pag.get("layers") or [])
        for key in ("adaptive_scale", "x0_from"):
            items[f"pag.{key}"] = pag.get(key)
    skip = {"solver", "dataset", "task", "pag", "sources", "num_steps"}
    for key, value in s.items():
        if key not in skip and str(sources.get(key, "")).startswith("solver."):
            items[key] = value
    if str(sources.get("num_steps", "")).startswith("solver.") or "num_steps" not in sources:
        items["num_steps"] = s.get("num_steps")
    c = job.config
    items["seed"] = c.get("seed")
    items["dtype"] = c.get("dtype")
    if c.get("tag"):
        items["tag"] = c.get("tag")
    prior = c.get("prior") or {}
    for key in ("checkpoint", "path"):
        if prior.get(key):
            items[f"prior.{key}"] = str(prior[key])
    data = {k: v for k, v in (c.get("data") or {}).items() if k not in SELECTION_KEYS and k != "name"}
    items.update({f"data.{k}": json.dumps(v, sort_keys=True) for k, v in data.items()})
    size = (c.get("metrics") or {}).get("size")
    if size is not None:
        items["metrics.size"] = size
    return tuple(sorted(items.items()))


@dataclass
class Cell:
    """One method on one task: the pooled rows of its jobs (shards)."""

    dataset: tuple[str, str]
    task: str
    method: tuple[tuple[str, Any], ...]
    jobs: list[Job] = field(default_factory=list)
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    duplicates: list[str] = field(default_factory=list)

    @property
    def solver(self) -> str:
        return str(dict(self.method)["solver"])

    @property
    def pag_scale(self) -> float:
        """The PAG scale this cell ran with (0: off), read from its settings (also for the table's scales)."""
        pag = self.jobs[0].settings.get("pag")
        return 0.0 if pag is None else float(pag.get("scale") or 0.0)

    @property
    def images(self) -> int | None:
        """Images in the whole set: the largest any job reported (None while none has finished)."""
        counts = [j.images for j in self.jobs if j.images is not None]
        return max(counts) if counts else None

    def status_rows(self, status: str) -> list[dict[str, Any]]:
        return [r for r in self.rows.values() if r.get("status") == status]

    @property
    def done(self) -> int:
        return len(self.status_rows("done"))

    @property
    def failed(self) -> int:
        return len(self.status_rows("failed"))

    @property
    def remaining(self) -> int | None:
        """Images with no result yet (None: unknown, no job has finished)."""
        if self.images is None:
            return None
        finished = sum(1 for r in self.rows.values() if r.get("index") is not None)
        return max(self.images - finished, 0)

    @property
    def complete(self) -> bool:
        """Every image has a result and none failed: the cell can compete for the best mark."""
        return self.remaining == 0 and self.failed == 0


def merge_cells(jobs: Iterable[Job]) -> list[Cell]:
    """Jobs grouped by (data set, prior, task, method): shards pooled by image name."""
    cells: dict[tuple, Cell] = {}
    for job in jobs:
        task = str(job.settings.get("task") or (job.config.get("task") or {}).get("name"))
        key = (_dataset_key(job), task, _method_key(job))
        cell = cells.setdefault(key, Cell(key[0], task, key[2]))
        cell.jobs.append(job)
        for name, row in job.rows.items():
            old = cell.rows.get(name)
            if old is not None:
                cell.duplicates.append(name)
                if _STATUS_RANK.get(old.get("status"), 0) >= _STATUS_RANK.get(row.get("status"), 0):
                    continue
            cell.rows[name] = {**row, "_folder": job.folder}
    return list(cells.values())
