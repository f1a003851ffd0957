"""The paper's tables from merged cells: rows = method (solver, PAG scale), columns = task x metric.

Per-image metrics (PSNR, SSIM, LPIPS, any other numeric column of ``metrics.csv``) are mean +- std (population
std, as ``summary.json``) over the images that finished (status ``done``) in all of a cell's shards. Set metrics
(FID, KID, any summary entry with a ``value``) are taken from a one-folder cell's ``summary.json``, KID with its std
over subsets; for a cell merged from several folders FID and KID are recomputed over the merged files (never
averaged per shard), other set metrics are reported unavailable. The best value of each column is marked among
*complete* cells (every image finished, none failed); incomplete cells are flagged and listed.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .collect import NON_METRIC_COLUMNS, Cell

#: True: higher is better; False: lower is better (unknown metrics get no best mark)
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "lpips": False, "fid": False, "kid": False, "seconds": False}
METRIC_ORDER = ("fid", "kid", "lpips", "psnr", "ssim")
METRIC_TITLES = {"fid": "FID", "kid": "KID", "lpips": "LPIPS", "psnr": "PSNR", "ssim": "SSIM", "seconds": "s/img"}
FORMATS = {"psnr": ".2f", "ssim": ".3f", "lpips": ".3f", "fid": ".2f", "kid": ".4f", "seconds": ".2f"}
TASK_ORDER = ("sr4", "sr8", "box_inpaint", "random_inpaint", "gaussian_deblur", "motion_deblur")
INCOMPLETE, FAILED = "†", "‡"


@dataclass
class Stat:
    """A metric of one cell: mean (+ std over images for per-image metrics), or why it is unavailable."""

    mean: float | None = None
    std: float | None = None
    count: int = 0
    reason: str | None = None
    best: bool = False

    def text(self, metric: str) -> str:
        if self.mean is None:
            return "n/a"
        fmt = FORMATS.get(metric, ".4g")
        if self.std is None:
            return format(self.mean, fmt)
        return f"{self.mean:{fmt}} ± {self.std:{fmt}}"


@dataclass
class Table:
    """One data set x prior: ``cells[(method, task)]`` and each cell's ``stats[metric]``."""

    dataset: tuple[str, str]
    tasks: list[str]
    methods: list[tuple]
    labels: dict[tuple, str]
    cells: dict[tuple[tuple, str], Cell]
    stats: dict[tuple[tuple, str], dict[str, Stat]]
    metrics: list[str]
    unavailable: dict[str, list[str]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.dataset[0]}_{self.dataset[1]}"

    def flags(self, method: tuple, task: str) -> str:
        cell = self.cells.get((method, task))
        if cell is None:
            return ""
        return (INCOMPLETE if cell.remaining != 0 else "") + (FAILED if cell.failed else "")


def per_image_metrics(cells: Sequence[Cell]) -> list[str]:
    """Numeric per-image columns present in any cell (not name, index, status, seconds, notes)."""
    found = set()
    for cell in cells:
        for row in cell.rows.values():
            found.update(k for k in row if k not in NON_METRIC_COLUMNS and not k.startswith("_"))
    return sorted(k for k in found if not k.endswith("_note"))


def ordered(metrics: set[str] | Sequence[str]) -> list[str]:
    known = [m for m in METRIC_ORDER if m in metrics]
    return known + sorted(set(metrics) - set(known))


def describe_values(values: Sequence[float | None]) -> Stat:
    v = np.array([x for x in values if x is not None], dtype=np.float64)
    if v.size == 0:
        return Stat(reason="no value")
    return Stat(float(v.mean()), float(v.std()), int(v.size))


def cell_stats(cell: Cell, metrics: Sequence[str], set_metric: Callable[[Cell, str], Stat]) -> dict[str, Stat]:
    """Every metric of a cell: per-image ones over its done rows, set ones through ``set_metric``."""
    done = cell.status_rows("done")
    out = {}
    for metric in metrics:
        if metric in {m for j in cell.jobs for m in j.set_metrics}:
            out[metric] = set_metric(cell, metric)
            continue
        stat = describe_values([r.get(metric) for r in done])
        if stat.mean is None:
            notes = sorted({str(r.get(f"{metric}_note") or "") for r in done} - {""})
            stat.reason = notes[0].removeprefix("unavailable: ") if notes else "no finished image has it"
        out[metric] = stat
    out["seconds"] = describe_values([r.get("seconds") for r in done])
    return out


def summary_set_metric(cell: Cell, metric: str, recompute: Callable[[Cell, str], Stat] | None = None) -> Stat:
    """A set metric: the job's own value for one folder; FID / KID recomputed for several (never averaged)."""
    if len(cell.jobs) == 1:
        entry = cell.jobs[0].set_metrics.get(metric) or {}
        if entry.get("value") is None:
            return Stat(reason=str(entry.get("unavailable") or "not in summary.json"))
        std = entry.get("std")  # KID: its std over subsets (how much the estimate moves with the images drawn)
        return Stat(float(entry["value"]), None if std is None else float(std), cell.done)
    if cell.remaining != 0:
        return Stat(reason=f"{metric.upper()} over the merged shards needs every image: some have no result yet")
    if metric in ("fid", "kid") and recompute is not None:
        return recompute(cell, metric)
    return Stat(reason=f"{metric.upper()} per shard cannot be merged; recompute it over the merged set")


def method_label(method: tuple, varying: Sequence[str], table_scales: Sequence[float] = ()) -> str:
    """``DPS``, ``DPS + PAG (s=2)``, ``PSLD + PAG (table s=1)`` (the step-size table's scale, when it is the same for
    every task of the row; else ``table s``) plus the settings that vary between rows."""
    items = dict(method)
    label = str(items["solver"]).upper()
    pag = items["pag"]
    if pag == "table":
        scales = sorted(set(table_scales))
        label += " + PAG (table s" + (f"={scales[0]:g}" if len(scales) == 1 else "") + ")"
    elif pag != "off":
        label += f" + PAG (s={float(pag):g})"
    extras = [f"{k}={items[k]}" for k in varying if k in items and k not in ("solver", "pag")]
    return label + (f" [{', '.join(extras)}]" if extras else "")


def _method_order(method: tuple) -> tuple:
    items = dict(method)
    pag = items["pag"]
    pag_key = (0, 0.0) if pag == "off" else (2, 0.0) if pag == "table" else (1, float(pag))
    return (str(items["solver"]), pag_key, [(k, str(v)) for k, v in method])


def build_tables(cells: Sequence[Cell], set_metric: Callable[[Cell, str], Stat] = summary_set_metric) -> list[Table]:
    """One table per (data set, prior), best marks set."""
    tables = []
    for dataset in sorted({c.dataset for c in cells}):
        group = [c for c in cells if c.dataset == dataset]
        tasks = sorted({c.task for c in group}, key=lambda t: (TASK_ORDER.index(t) if t in TASK_ORDER else 99, t))
        methods = sorted({c.method for c in group}, key=_method_order)
        keys = {k for m in methods for k, _ in m}
        # a setting labels the rows when methods that have it differ in it (PAG-only keys do not split PAG off)
        varying = sorted(k for k in keys if len({dict(m)[k] for m in methods if k in dict(m)}) > 1)
        labels = {m: method_label(m, varying, [c.pag_scale for c in group if c.method == m]) for m in methods}
        set_names = {name for c in group for j in c.jobs for name in j.set_metrics}
        candidates = ordered(set(per_image_metrics(group)) | set_names)
        stats = {(c.method, c.task): cell_stats(c, candidates, set_metric) for c in group}
        shown = [m for m in candidates if any(s[m].mean is not None for s in stats.values())]
        unavailable = {
            m: sorted({s[m].reason for s in stats.values() if s[m].mean is None and s[m].reason}) for m in candidates
        }
        table = Table(
            dataset, tasks, methods, labels, {(c.method, c.task): c for c in group}, stats, shown, unavailable
        )
        mark_best(table)
        tables.append(table)
    return tables


def mark_best(table: Table) -> None:
    """Mark the best complete cell(s) of every (task, metric) column; ties all marked."""
    for task in table.tasks:
        for metric in [*table.metrics, "seconds"]:
            higher = HIGHER_IS_BETTER.get(metric)
            if higher is None:
                continue
            entries = [
                (stats[metric].mean, stats[metric])
                for (method, t), stats in table.stats.items()
                if t == task and table.cells[(method, t)].complete and stats[metric].mean is not None
            ]
            entries = [(v, s) for v, s in entries if math.isfinite(v)]
            if not entries:
                continue
            best = max(v for v, _ in entries) if higher else min(v for v, _ in entries)
            for v, s in entries:
                s.best = v == best


# -- renderers ------------------------------------------------------------------------------------------------
def _arrow(metric: str) -> str:
    higher = HIGHER_IS_BETTER.get(metric)
    return "" if higher is None else (" ↑" if higher else " ↓")


def _title(metric: str) -> str:
    return METRIC_TITLES.get(metric, metric.upper())


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]], rule: Sequence[str] | None = None) -> str:
    """A GitHub Markdown table of already formatted cells: ``| a | b |`` rows under the header and a rule row
    (``---`` for every column unless ``rule`` gives the alignments). An empty header cell reads ``| |``."""
    head = "|" + "|".join(f" {cell} " if cell else " " for cell in header) + "|"
    lines = [head, "|" + "|".join(rule or ["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def to_markdown(table: Table) -> str:
    """GitHub Markdown: one column per task x metric, best in bold, flags after the value."""
    header = ["Method"] + [f"{t} {_title(m)}{_arrow(m)}" for t in table.tasks for m in table.metrics]
    rows = []
    for method in table.methods:
        cells = [table.labels[method]]
        for task in table.tasks:
            stats = table.stats.get((method, task))
            for metric in table.metrics:
                if stats is None:
                    cells.append("—")
                    continue
                text = stats[metric].text(metric)
                cells.append((f"**{text}**" if stats[metric].best else text) + table.flags(method, task))
        rows.append(cells)
    return markdown_table(header, rows, rule=[":--"] + ["--:"] * (len(header) - 1)) + "\n"


def _latex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#")):
        text = text.replace(a, b)
    return text.replace("±", r"$\pm$")


def to_latex(table: Table) -> str:
    """A booktabs tabular in the paper's layout: task headers over metric sub-columns, best in bold."""
    k = len(table.metrics)
    spec = "l" + "c" * (k * len(table.tasks))
    lines = [r"\begin{tabular}{" + spec + "}", r"\toprule"]
    lines.append(
        "Method & " + " & ".join(rf"\multicolumn{{{k}}}{{c}}{{{_latex_escape(t)}}}" for t in table.tasks) + r" \\"
    )
    rules = [rf"\cmidrule(lr){{{2 + i * k}-{1 + (i + 1) * k}}}" for i in range(len(table.tasks))]
    lines.append(" ".join(rules))
    arrows = {" ↑": r"$\uparrow$", " ↓": r"$\downarrow$", "": ""}
    lines.append(
        " & "
        + " & ".join(f"{_title(m)} {arrows[_arrow(m)]}".strip() for _ in table.tasks for m in table.metrics)
        + r" \\"
    )
    lines.append(r"\midrule")
    flags = {INCOMPLETE: r"$^\dagger$", FAILED: r"$^\ddagger$"}
    for method in table.methods:
        cells = [_latex_escape(table.labels[method])]
        for task in table.tasks:
            stats = table.stats.get((method, task))
            flag = "".join(flags[f] for f in table.flags(method, task))
            for metric in table.metrics:
                if stats is None:
                    cells.append("--")
                    continue
                text = _latex_escape(stats[metric].text(metric))
                cells.append((rf"\textbf{{{text}}}" if stats[metric].best else text) + flag)
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    """Numbers in the same layout: per task x metric ``mean``, ``std``, ``best``; per task the image counts."""
    header = ["method", "solver", "pag_scale"]
    for task in table.tasks:
        for metric in [*table.metrics, "seconds"]:
            header += [f"{task}:{metric}:mean", f"{task}:{metric}:std", f"{task}:{metric}:best"]
        header += [f"{task}:done", f"{task}:failed", f"{task}:images", f"{task}:complete"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for method in table.methods:
        pag = dict(method)["pag"]
        row: list[Any] = [table.labels[method], dict(method)["solver"], 0 if pag == "off" else pag]
        for task in table.tasks:
            cell, stats = table.cells.get((method, task)), table.stats.get((method, task))
            for metric in [*table.metrics, "seconds"]:
                s = stats[metric] if stats else Stat()
                row += ["" if s.mean is None else s.mean, "" if s.std is None else s.std, int(s.best)]
            if cell is None:
                row += ["", "", "", 0]
            else:
                row += [cell.done, cell.failed, "" if cell.images is None else cell.images, int(cell.complete)]
        writer.writerow(row)
    return buffer.getvalue()


def flag_lines(table: Table) -> list[str]:
    """One line per cell that is missing, incomplete or has failed images."""
    lines = []
    for method in table.methods:
        for task in table.tasks:
            where = f"{table.labels[method]} / {task}"
            cell = table.cells.get((method, task))
            if cell is None:
                lines.append(f"{where}: no job")
                continue
            images = "?" if cell.images is None else cell.images
            parts = []
            if cell.remaining is None:
                parts.append(f"running: {cell.done} done, {cell.failed} failed so far (no job has finished)")
            elif cell.remaining:
                parts.append(f"{INCOMPLETE} incomplete: {cell.done}/{images} done, {cell.remaining} without result")
            if cell.failed:
                names = ", ".join(r["name"] for r in cell.status_rows("failed"))
                parts.append(f"{FAILED} {cell.failed} of {images} failed ({names}); means are over the rest")
            if cell.duplicates:
                parts.append(f"{len(cell.duplicates)} images found in more than one folder (kept one each)")
            if parts:
                lines.append(f"{where}: " + "; ".join(parts))
    return lines
