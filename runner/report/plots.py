"""Figures of a sweep (matplotlib, Agg backend, PNG + SVG): each metric against the PAG scale per task, the PSNR
vs LPIPS/FID trade-off per method, and seconds per image per method."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display, no GUI toolkit
import matplotlib.pyplot as plt
from matplotlib.lines import Line2D

from .tables import HIGHER_IS_BETTER, Table, _title


def _save(fig, out: Path, stem: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.png", out / f"{stem}.svg"]
    for path in paths:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return paths


def _series(table: Table) -> dict[str, list[tuple]]:
    """Methods grouped into lines across PAG scales: same solver and settings, PAG off or on at some scale. PAG
    settings that vary between methods (e.g. the layer) split the lines; the PAG-off method starts each of them."""
    lines: dict[str, list[tuple]] = {}
    bases: dict[str, dict] = {}
    for method in table.methods:
        if dict(method)["pag"] == "off":
            continue
        items = {k: v for k, v in method if k != "pag" and (not k.startswith("pag.") or _varies(table, k))}
        label = table.labels[method].split(" + PAG")[0].split(" [")[0]
        extras = [f"{k}={v}" for k, v in sorted(items.items()) if k != "solver" and _varies(table, k)]
        name = label + (f" [{', '.join(extras)}]" if extras else "")
        lines.setdefault(name, []).append(method)
        bases[name] = {k: v for k, v in items.items() if not k.startswith("pag.")}
    for method in table.methods:
        if dict(method)["pag"] != "off":
            continue
        items = {k: v for k, v in method if k != "pag" and not k.startswith("pag.")}
        joined = [name for name, base in bases.items() if base == items]
        if not joined:  # no PAG run with these settings: a line of its own
            label = table.labels[method].split(" [")[0]
            extras = [f"{k}={v}" for k, v in sorted(items.items()) if k != "solver" and _varies(table, k)]
            joined = [label + (f" [{', '.join(extras)}]" if extras else "")]
        for name in joined:
            lines.setdefault(name, []).insert(0, method)
    return lines


def _varies(table: Table, key: str) -> bool:
    return len({dict(m)[key] for m in table.methods if key in dict(m)}) > 1


def metric_vs_pag(table: Table, out: Path) -> list[Path]:
    """One figure per metric: a panel per task, mean +- std against the PAG scale the cell ran with (0: off)."""
    paths = []
    for metric in table.metrics:
        fig, axes = plt.subplots(
            1, len(table.tasks), figsize=(3.2 * len(table.tasks), 3.0), squeeze=False, layout="constrained"
        )
        series = _series(table)
        colors = {name: f"C{i % 10}" for i, name in enumerate(series)}  # one colour per line in every panel
        for ax, task in zip(axes[0], table.tasks):
            for name, methods in series.items():
                points = []
                for method in methods:
                    cell, stats = table.cells.get((method, task)), table.stats.get((method, task))
                    if cell is not None and stats[metric].mean is not None:
                        points.append((cell.pag_scale, stats[metric].mean, stats[metric].std or 0.0))
                if points:
                    points.sort()
                    xs, ys, es = zip(*points)
                    ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=name, color=colors[name])
            arrow = {True: " (higher better)", False: " (lower better)"}.get(HIGHER_IS_BETTER.get(metric), "")
            ax.set_title(task, fontsize=9)
            ax.set_xlabel("PAG scale s")
            if ax is axes[0][0]:
                ax.set_ylabel(_title(metric) + arrow, fontsize=8)
            ax.grid(alpha=0.3)
        # every line in the legend, also those missing from the first panel
        handles = [Line2D([], [], color=colors[name], marker="o", label=name) for name in series]
        axes[0][0].legend(handles=handles, fontsize=7)
        fig.suptitle(f"{_title(metric)} vs PAG scale — {table.name}", fontsize=10)
        paths += _save(fig, out, f"{table.name}_{metric}_vs_pag")
    return paths


def _legend(ax, panels) -> None:
    """A legend on ``ax`` of every labelled artist of ``panels`` (each label once); none when nothing is labelled
    (matplotlib would warn "No artists with labels found to put in legend")."""
    labelled: dict[str, Any] = {}
    for panel in panels:
        for handle, label in zip(*panel.get_legend_handles_labels()):
            labelled.setdefault(label, handle)
    if labelled:
        ax.legend(list(labelled.values()), list(labelled), fontsize=7)


def tradeoff(table: Table, out: Path) -> tuple[list[Path], list[str]]:
    """PSNR (y) against LPIPS / FID (x) per method, a panel per task; notes for what had to be skipped."""
    paths, notes = [], []
    if "psnr" not in table.metrics:
        return paths, [f"{table.name}: trade-off plots skipped: no PSNR values"]
    for other in ("lpips", "fid"):
        if other not in table.metrics:
            notes.append(
                f"{table.name}: PSNR vs {_title(other)} plot skipped: no {_title(other)} values (see above why)"
            )
            continue
        fig, axes = plt.subplots(
            1, len(table.tasks), figsize=(3.2 * len(table.tasks), 3.0), squeeze=False, layout="constrained"
        )
        for ax, task in zip(axes[0], table.tasks):
            for method in table.methods:
                stats = table.stats.get((method, task))
                if stats and stats["psnr"].mean is not None and stats[other].mean is not None:
                    ax.scatter(stats[other].mean, stats["psnr"].mean, label=table.labels[method])
            ax.set_title(task, fontsize=9)
            ax.set_xlabel(f"{_title(other)} (lower better)")
            if ax is axes[0][0]:
                ax.set_ylabel("PSNR dB (higher better)", fontsize=8)
            ax.grid(alpha=0.3)
        _legend(axes[0][0], [ax for row in axes for ax in row])
        fig.suptitle(f"PSNR vs {_title(other)} — {table.name}", fontsize=10)
        paths += _save(fig, out, f"{table.name}_psnr_vs_{other}")
    return paths, notes


def seconds_per_image(table: Table, out: Path) -> list[Path]:
    """Grouped bars: mean seconds per image for every method, one bar per task."""
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(table.methods) + 2), 3.0), layout="constrained")
    width = 0.8 / max(len(table.tasks), 1)
    for i, task in enumerate(table.tasks):
        xs, ys, es = [], [], []
        for j, method in enumerate(table.methods):
            stats = table.stats.get((method, task))
            if stats and stats["seconds"].mean is not None:
                xs.append(j + i * width)
                ys.append(stats["seconds"].mean)
                es.append(stats["seconds"].std or 0.0)
        ax.bar(xs, ys, width, yerr=es, capsize=2, label=task)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(table.methods))])
    ax.set_xticklabels([table.labels[m] for m in table.methods], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("seconds per image")
    _legend(ax, [ax])
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(f"Time per image — {table.name}", fontsize=10)
    return _save(fig, out, f"{table.name}_seconds")


def write_plots(table: Table, out: Path) -> tuple[list[Path], list[str]]:
    """Every figure of a table into ``out``: (paths, notes on skipped figures)."""
    paths = metric_vs_pag(table, out)
    more, notes = tradeoff(table, out)
    return paths + more + seconds_per_image(table, out), notes
