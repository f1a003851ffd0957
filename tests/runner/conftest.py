"""A synthetic sweep written by hand: what the report tests aggregate, with the values they expect."""

from __future__ import annotations

import csv
import json
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(autouse=True)
def _offline(offline_metrics_and_clean_env):
    """No cached metric weights and none of the configs' environment variables (tests/conftest.py)."""


TASKS = ("box_inpaint", "sr4")
#: method -> its PAG scale (None: off)
METHODS = {"dps": None, "dps_pag": 2.0}
NAMES = [f"img_{i}" for i in range(4)]
FAILED = ("dps_pag", "sr4", "img_3")  # the one image that diverged
COLUMNS = ("name", "index", "status", "psnr", "ssim", "lpips", "lpips_note", "seconds", "error", "sharpness")


def psnr_of(method: str, task: str, i: int) -> float:
    """Hand-chosen values: PAG is better on box_inpaint; on sr4 its mean is higher only because img_3 failed."""
    return {"box_inpaint": 20.0, "sr4": 25.0}[task] + 1.5 * i + (1.0 if method == "dps_pag" else 0.0)


def ssim_of(method: str, task: str, i: int) -> float:
    return 0.5 + 0.05 * i + (0.02 if method == "dps" else 0.0)


def _png(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def write_job(folder: Path, method: str, task: str, shard: int, *, summary: bool = True) -> None:
    """One shard's task folder: PNGs, metrics.csv and (unless still running) summary.json."""
    folder.mkdir(parents=True)
    scale = METHODS[method]
    rows = []
    for i, name in enumerate(NAMES):
        if i % 2 != shard:
            continue
        failed = (method, task, name) == FAILED
        seed = zlib.crc32(f"{method}/{task}/{name}".encode())
        _png(folder / "label" / f"{name}.png", i)
        _png(folder / "input" / f"{name}.png", 100 + i)
        if not failed:
            _png(folder / "recon" / f"{name}.png", seed)
        rows.append(
            {
                "name": name,
                "index": i,
                "status": "failed" if failed else "done",
                "psnr": "" if failed else psnr_of(method, task, i),
                "ssim": "" if failed else ssim_of(method, task, i),
                "lpips": "",
                "lpips_note": "unavailable: no AlexNet weights here",
                "seconds": 1.0 + i + (0.5 if scale else 0.0),
                "error": "DivergenceError: nan" if failed else "",
                "sharpness": i * 0.1,  # a metric column the report has never heard of
            }
        )
    with open(folder / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    if not summary:
        return
    pag = (
        None
        if scale is None
        else {
            "scale": scale,
            "layers": ["middle_block.1"],
            "adaptive_scale": 0.0,
            "x0_from": "unguided",
            "mode": "shared_prefix",
        }
    )
    sources = {"zeta": "steps.dps.shapes.tasks.x.zeta", "num_steps": "steps.dps.shapes.num_steps"}
    if pag:
        sources |= {"pag.scale": "pag.scale", "pag.layers": "steps.dps.shapes.pag_layers"}
    done = [r for r in rows if r["status"] == "done"]
    failed = [r for r in rows if r["status"] == "failed"]
    summary_json = {
        "task": task,
        "folder": str(folder),
        "counts": {"images": 4, "done": len(done), "failed": len(failed), "skipped": 0, "remaining": 2},
        "metrics": {
            "size": None,
            "psnr": {"mean": 0.0, "std": 0.0, "count": len(done)},  # never used: means come from the rows
            "fid": {"value": 50.0 + shard},  # per shard: must never be averaged
            "kid": {"value": 0.01},  # a set metric the report does not know
        },
        "settings": {
            "solver": "dps",
            "dataset": "shapes",
            "task": task,
            "zeta": 0.3 + TASKS.index(task),
            "num_steps": 100,
            "pag": pag,
            "sources": sources,
        },
        "config": {
            "task": {"name": task},
            "prior": {"name": "tiny_adm"},
            "data": {"name": "demo", "dataset": "shapes", "limit": 4, "shard": shard, "num_shards": 2},
            "seed": 0,
            "dtype": "float32",
            "tag": "",
            "metrics": {"size": None, "fid": {"weights": None, "dims": 2048}},
        },
    }
    (folder / "summary.json").write_text(json.dumps(summary_json))


@pytest.fixture
def synthetic_sweep(tmp_path) -> Path:
    """Two methods x two tasks x two shards, each shard in its own folder (names carry no meaning)."""
    root = tmp_path / "sweep"
    k = 0
    for method in METHODS:
        for task in TASKS:
            for shard in (0, 1):
                write_job(root / f"job{k:02d}" / "out", method, task, shard)
                k += 1
    return root
