"""The Hydra callback that writes a sweep's report when a multirun ends (``hydra.callbacks.report`` in
``conf/config.yaml``; drop it with ``~hydra.callbacks.report``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class ReportCallback(Callback):
    """``on_multirun_end``: ``write_report(<sweep dir>, <sweep dir>/<folder>)``. A failing report is logged, not
    raised: the jobs' results are already on disk and ``scripts/report.py`` can redo it."""

    def __init__(self, folder: str = "report", gallery_images: int = 50) -> None:
        self.folder = folder
        self.gallery_images = gallery_images

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from . import find_jobs, write_report  # the package imports this module

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
