"""The output folder of one task: images, per-image records, ``metrics.csv``, ``summary.json``.

Layout (DPS's, plus records and grids)::

    <task_dir>/input/<name>.png      the measurement y (super-resolution: the small image as it is)
    <task_dir>/label/<name>.png      the ground truth the metrics use: at the evaluation size, from the source image
    <task_dir>/recon/<name>.png      the restoration
    <task_dir>/pasted/<name>.png     inpainting only: mask * ground truth + (1 - mask) * recon (PSLD_PAG's output)
    <task_dir>/progress/<name>.png   x0_hat every ``progress_every`` steps, left to right
    <task_dir>/grid/<name>.png       label | input | recon [| progress]
    <task_dir>/records/<name>.json   the image's result (status, metrics, seconds): written last, atomically
    <task_dir>/metrics.csv           one row per image, rebuilt from records/
    <task_dir>/summary.json          means, counts, FID, settings and the resolved config
    <task_dir>/experiment.json       the settings that determine the results (checked when resuming)

A record exists only once all of its image's files are in place (an image restored again loses its record before
its files are rewritten), so a run killed at any point knows exactly which images have results; it resumes by
restoring again every batch with an image that has none, whole (``runner.data``: a batch is the unit of work, so
each image is computed in the same batch as in an uninterrupted run). Several processes (shards) may share a
folder: each writes its own batches' records; the tables are snapshots of the records present when written.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from imaging import write_json, write_text

from .errors import SetupError

log = logging.getLogger(__name__)

IMAGE_KINDS = ("input", "label", "recon", "pasted", "progress", "grid")
CSV_COLUMNS = ("name", "index", "status", "psnr", "ssim", "lpips", "lpips_note", "seconds", "error")
#: metrics.csv's lpips_note when LPIPS could not be computed (the reason is in summary.json, once)
UNAVAILABLE_NOTE = "unavailable: see metrics.lpips.unavailable in summary.json"
#: record statuses: done (restored and scored), failed (diverged), skipped (unreadable file)
STATUSES = ("done", "failed", "skipped")


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, Mapping):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: data}


class TaskFolder:
    """Paths and persistence for ``<out_dir>/<task>``."""

    def __init__(self, task_dir: str | Path):
        self.root = Path(task_dir)

    # -- paths ----------------------------------------------------------------------------------------------
    def image_path(self, kind: str, name: str) -> Path:
        if kind not in IMAGE_KINDS:
            raise ValueError(f"unknown image kind {kind!r}; valid: {IMAGE_KINDS}")
        return self.root / kind / f"{name}.png"

    def record_path(self, name: str) -> Path:
        return self.root / "records" / f"{name}.json"

    @property
    def metrics_csv(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def summary_json(self) -> Path:
        return self.root / "summary.json"

    @property
    def experiment_json(self) -> Path:
        return self.root / "experiment.json"

    # -- experiment identity ----------------------------------------------------------------------------------
    def claim(self, experiment: Mapping[str, Any]) -> None:
        """Record ``experiment`` (the result-determining settings) or check it against the folder's.

        A folder holding results of different settings is refused, listing the differences, so that a rerun
        never mixes two experiments in one table. A folder with no finished image (an aborted start) is taken over.
        """
        path = self.experiment_json
        finished = any(r["status"] in ("done", "failed") for r in self.read_records().values())
        if path.is_file() and finished:
            stored = json.loads(path.read_text())
            old, new = _flatten(stored), _flatten(json.loads(json.dumps(experiment)))
            diffs = [
                f"{k}: folder has {old.get(k, '<unset>')!r}, this run {new.get(k, '<unset>')!r}"
                for k in sorted(old.keys() | new.keys())
                if old.get(k) != new.get(k)
            ]
            if diffs:
                raise SetupError(
                    f"{self.root} holds results of different settings:\n  "
                    + "\n  ".join(diffs[:20])
                    + "\nResume with the folder's settings, or write elsewhere: out_dir=<folder> or tag=_<variant> "
                    "(or delete the folder to start over)"
                )
            return
        write_json(path, experiment)

    # -- records --------------------------------------------------------------------------------------------
    def read_records(self) -> dict[str, dict[str, Any]]:
        """All records by image name (unreadable record files are ignored: their images are redone)."""
        records = {}
        folder = self.root / "records"
        if not folder.is_dir():
            return records
        for path in sorted(folder.glob("*.json")):
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                log.warning("ignoring unreadable record %s (%s): that image will be redone", path, exc)
                continue
            if record.get("status") in STATUSES:
                records[record["name"]] = record
        return records

    def write_record(self, record: Mapping[str, Any]) -> None:
        if record.get("status") not in STATUSES:
            raise ValueError(f"record status must be one of {STATUSES}, got {record.get('status')!r}")
        write_json(self.record_path(str(record["name"])), dict(record))

    def forget(self, name: str) -> None:
        """Remove the record of ``name`` (before its files are rewritten: no record vouches for half-written files)."""
        self.record_path(name).unlink(missing_ok=True)

    def is_complete(self, record: Mapping[str, Any]) -> bool:
        """A done record counts only if its recon file is still there."""
        return record.get("status") != "done" or self.image_path("recon", record["name"]).is_file()

    # -- tables ---------------------------------------------------------------------------------------------
    def write_metrics_csv(self, records: Iterable[Mapping[str, Any]]) -> None:
        """One row per record, images in index order, then skipped files by name; an unavailable LPIPS is noted
        briefly (``UNAVAILABLE_NOTE``), its reason being in ``summary.json``."""
        rows = sorted(records, key=lambda r: (r.get("index") is None, r.get("index") or 0, r["name"]))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for r in rows:
            row = {k: ("" if r.get(k) is None else r.get(k)) for k in CSV_COLUMNS}
            if str(row["lpips_note"]).startswith("unavailable: "):  # the same long reason in every row: say it once
                row["lpips_note"] = UNAVAILABLE_NOTE
            writer.writerow(row)
        write_text(self.metrics_csv, buffer.getvalue())

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        write_json(self.summary_json, summary)


def read_metrics_csv(path: str | Path) -> list[dict[str, str]]:
    """The rows of a ``metrics.csv`` as dicts of strings."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
