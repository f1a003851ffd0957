"""Sweep reports: the paper's tables, plots and an image gallery from a results root or a multirun's sweep folder.

    from runner.report import write_report
    write_report("results", "results/report")        # what scripts/report.py and the Hydra callback run

Layout of the report folder::

    README.md                   tables, flagged cells, notes, figures, link to the gallery
    report.json                 every cell's numbers, counts and folders
    tables/<data>_<prior>.{md,csv,tex}
    plots/<data>_<prior>_<metric>_vs_pag.{png,svg}, ..._psnr_vs_{lpips,fid}.{png,svg}, ..._seconds.{png,svg}
    gallery/index.html          self-contained; images copied (downscaled) into gallery/img/
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from imaging import write_json, write_text

from .collect import Cell, Job, find_jobs, merge_cells, read_job
from .gallery import write_gallery
from .plots import write_plots
from .tables import (
    FAILED,
    INCOMPLETE,
    Stat,
    Table,
    build_tables,
    flag_lines,
    markdown_table,
    summary_set_metric,
    to_csv,
    to_latex,
    to_markdown,
)

log = logging.getLogger(__name__)

__all__ = [
    "Cell",
    "Job",
    "Report",
    "ReportCallback",
    "Stat",
    "Table",
    "build_report",
    "build_tables",
    "find_jobs",
    "markdown_table",
    "merge_cells",
    "read_job",
    "to_csv",
    "to_latex",
    "to_markdown",
    "write_report",
]


@dataclass
class Report:
    root: Path
    jobs: list[Job]
    cells: list[Cell]
    tables: list[Table]


def merged_fid(weights: str | os.PathLike | None = None, model: torch.nn.Module | None = None, device: str = "cpu"):
    """FID / KID of a cell merged from several folders, over all of its done images' files (recon vs label), on the
    features the jobs used (``metrics.features``); ``model``: an already loaded Inception (FID only)."""
    from evaluation import distribution_between_files, fid_between_files

    computed: dict[int, dict[str, Any]] = {}  # one computation per cell gives both metrics

    def recompute(cell: Cell, metric: str) -> Stat:
        done = sorted(cell.status_rows("done"), key=lambda r: (r.get("index") or 0, r["name"]))
        metrics_cfg = cell.jobs[0].config.get("metrics") or {}
        fid_cfg = metrics_cfg.get("fid") or {}
        files = (
            [Path(r["_folder"]) / "recon" / f"{r['name']}.png" for r in done],
            [Path(r["_folder"]) / "label" / f"{r['name']}.png" for r in done],
        )
        options = {
            "size": cell.jobs[0].metrics_size,
            "weights": weights if weights is not None else fid_cfg.get("weights"),
            "dims": int(fid_cfg.get("dims", 2048)),
            "device": device,
        }
        if id(cell) not in computed:
            if model is not None:
                computed[id(cell)] = {"fid": fid_between_files(*files, model=model, **options)}
            else:
                computed[id(cell)] = distribution_between_files(
                    *files, features=str(metrics_cfg.get("features") or "inception"), **options
                )
        result = computed[id(cell)].get(metric)
        if result is None:
            return Stat(reason=f"merged shards: {metric.upper()} not computed with a given FID model")
        if result.value is None:
            return Stat(reason=f"merged shards: {result.reason}")
        std = result.details.get("std")  # KID's std over subsets
        return Stat(result.value, None if std is None else float(std), len(done))

    return lambda cell, metric: summary_set_metric(cell, metric, recompute)


def build_report(
    root: str | os.PathLike,
    *,
    exclude: Sequence[Path] = (),
    fid_weights: str | os.PathLike | None = None,
    fid_model: torch.nn.Module | None = None,
) -> Report:
    """Read every job under ``root`` and aggregate it into tables."""
    jobs = find_jobs(root, exclude)
    cells = merge_cells(jobs)
    return Report(Path(root), jobs, cells, build_tables(cells, merged_fid(fid_weights, fid_model)))


def _cell_json(table: Table, method: tuple, task: str) -> dict[str, Any]:
    cell, stats = table.cells[(method, task)], table.stats[(method, task)]
    return {
        "table": table.name,
        "method": table.labels[method],
        "settings": dict(method),
        "task": task,
        "pag_scale": cell.pag_scale,
        "images": cell.images,
        "done": cell.done,
        "failed": cell.failed,
        "remaining": cell.remaining,
        "complete": cell.complete,
        "folders": [str(j.folder) for j in cell.jobs],
        "metrics": {
            m: {"mean": s.mean, "std": s.std, "count": s.count, "best": s.best, "unavailable": s.reason}
            for m, s in stats.items()
        },
    }


def write_report(
    root: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    gallery_images: int = 50,
    gallery_size: int = 256,
    fid_weights: str | os.PathLike | None = None,
    fid_model: torch.nn.Module | None = None,
) -> Report:
    """Tables, plots and gallery of the jobs under ``root`` into ``out`` (default ``<root>/report``)."""
    root = Path(root)
    out = Path(out) if out is not None else root / "report"
    report = build_report(root, exclude=[out], fid_weights=fid_weights, fid_model=fid_model)
    lines = [f"# Report: {root}", ""]
    if not report.tables:
        lines.append(f"No jobs found under {root} (no task folder with summary.json or experiment.json).")
    lines += [
        f"{len(report.jobs)} job folders, {len(report.cells)} cells (method x task; shards merged). "
        "Cells: mean ± std over the images that finished (KID: ± its std over subsets); "
        "**bold**: best of the column among complete cells; "
        f"{INCOMPLETE}: images without a result yet; {FAILED}: images that failed (excluded from the means). "
        "[Gallery](gallery/index.html).",
        "",
    ]
    notes, cells_json = [], []
    for table in report.tables:
        stem = out / "tables" / table.name
        write_text(stem.with_suffix(".md"), to_markdown(table))
        write_text(stem.with_suffix(".csv"), to_csv(table))
        write_text(stem.with_suffix(".tex"), to_latex(table))
        plots, skipped = write_plots(table, out / "plots")
        notes += skipped
        lines += [f"## {table.dataset[0]} / {table.dataset[1]}", "", to_markdown(table)]
        lines += [f"Also as [CSV](tables/{table.name}.csv) and [LaTeX](tables/{table.name}.tex).", ""]
        flags = flag_lines(table)
        if flags:
            lines += ["Flagged cells:", "", *[f"- {f}" for f in flags], ""]
        missing = {m: r for m, r in table.unavailable.items() if m not in table.metrics and r}
        for metric, reasons in missing.items():
            lines.append(f"- {metric.upper()} unavailable: {'; '.join(reasons)}")
        lines += [""] + [f"![{p.stem}](plots/{p.name})" for p in plots if p.suffix == ".png"] + [""]
        cells_json += [_cell_json(table, m, t) for (m, t) in table.cells]
    if notes:
        lines += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    write_gallery(report.tables, out / "gallery", gallery_images, gallery_size, title=f"Gallery: {root}")
    write_text(out / "README.md", "\n".join(lines))
    write_json(out / "report.json", {"root": str(root), "cells": cells_json, "notes": notes})
    return report


class ReportCallback(Callback):
    """The Hydra callback that writes a sweep's report when a multirun ends (``hydra.callbacks.report`` in
    ``conf/config.yaml``; drop it with ``~hydra.callbacks.report``): ``on_multirun_end`` runs
    ``write_report(<sweep dir>, <sweep dir>/<folder>)``. A failing report is logged, not raised: the jobs' results
    are already on disk and ``scripts/report.py`` can redo it."""

    def __init__(self, folder: str = "report", gallery_images: int = 50) -> None:
        self.folder = folder
        self.gallery_images = gallery_images

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = Path(str(config.hydra.sweep.dir))
        out = sweep / self.folder
        if not find_jobs(sweep, [out]):  # no job got as far as its folder: nothing to report, nothing written
            log.info("no job of the sweep wrote results under %s: no report", sweep)
            return
        try:
            report = write_report(sweep, out, gallery_images=self.gallery_images)
        except Exception:
            log.exception("the sweep report could not be written; run: python scripts/report.py %s", sweep)
            return
        log.info("report of %d jobs (%d cells) -> %s", len(report.jobs), len(report.cells), out / "README.md")
