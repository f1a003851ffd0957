"""Paired differences between two rows of ``scripts/tiny_prior_report.py`` reports, possibly of two reports (e.g. a
run with ``solver.restarts=4`` against the one without): image i of both rows restores the same measurement when
both reports start at the same image of the same split with the same seed (the shorter run's images are then the
first images of the longer one). Per metric: the mean per-image difference B - A, its standard error
(std of the differences with n - 1 / sqrt(n)) and on how many images B is higher.

    python scripts/paired_difference.py --a docs/results/x/report.json --a-row "dps no PAG" --b-row "dps PAG (table)"
    python scripts/paired_difference.py --a x/report.json --a-row "dps no PAG" --b y/report.json --b-row "no PAG"
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path

#: what must agree for image i of two reports to be the same image with the same measurement
SAME_IMAGES = ("prior", "split", "start", "seed")
METRICS = ("psnr", "ssim")


def paired_difference(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, int, int]:
    """(mean of b_i - a_i, its standard error, n, how many b_i > a_i) over the first min(len) pairs."""
    n = min(len(a), len(b))
    if n < 2:
        raise ValueError(f"a paired difference needs >= 2 images, got {n}")
    d = [float(b[i]) - float(a[i]) for i in range(n)]
    mean = sum(d) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    return mean, std / math.sqrt(n), n, sum(x > 0 for x in d)


def load(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def check_same_images(a: dict, b: dict) -> None:
    """``ValueError`` unless both reports restore the same images (``SAME_IMAGES``)."""
    differ = [k for k in SAME_IMAGES if a.get(k) != b.get(k)]
    if differ:
        raise ValueError(
            "the reports restore different images: " + ", ".join(f"{k} {a.get(k)} vs {b.get(k)}" for k in differ)
        )


def table(
    a: dict, a_row: str, b: dict, b_row: str, tasks: Sequence[str] | None = None, label: str | None = None
) -> str:
    """A markdown table: one line per task, ``B - A`` of each metric as mean ± standard error, and the image count;
    ``label`` names the comparison (default ``<b_row> − <a_row>``)."""
    check_same_images(a, b)
    tasks = list(tasks or [t for t in a["results"] if t in b["results"]])
    header = ["task", "B − A", *(f"{m.upper()} difference ± SE (B higher on)" for m in METRICS), "images"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for task in tasks:
        rows_a, rows_b = a["results"][task], b["results"][task]
        cells, n = [], 0
        for metric in METRICS:
            mean, se, n, higher = paired_difference(rows_a[a_row][metric], rows_b[b_row][metric])
            digits = 2 if metric == "psnr" else 3
            cells.append(f"{mean:+.{digits}f} ± {se:.{digits}f} ({higher}/{n})")
        lines.append("| " + " | ".join([task, label or f"{b_row} − {a_row}", *cells, str(n)]) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", required=True, help="report.json of row A")
    parser.add_argument("--a-row", required=True, help="row A's label, e.g. 'dps no PAG'")
    parser.add_argument("--b", help="report.json of row B (default: --a)")
    parser.add_argument("--b-row", required=True)
    parser.add_argument("--tasks", default="", help="comma-separated (default: every task of both)")
    parser.add_argument("--label", help="the comparison's name in the table (default: '<b-row> − <a-row>')")
    args = parser.parse_args(argv)
    a = load(args.a)
    b = load(args.b) if args.b else a
    print(table(a, args.a_row, b, args.b_row, [t for t in args.tasks.split(",") if t] or None, args.label))
