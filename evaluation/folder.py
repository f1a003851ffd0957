"""Metrics on an existing output folder (``<out>/<task>/{recon,label}/<name>.png``): what ``scripts/evaluate.py``
runs. Scores are computed exactly as at run time (``ImageScorer``), so they reproduce ``metrics.csv``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from imaging import read_png

from .result import MetricResult
from .scoring import ImageScorer, describe, fid_between_files, paired_pngs


def _run_metric(task_dir: Path, key: str) -> Any:
    summary = task_dir / "summary.json"
    if not summary.is_file():
        return None
    try:
        return json.loads(summary.read_text()).get("metrics", {}).get(key)
    except (ValueError, AttributeError):
        return None


def run_size(task_dir: Path) -> int | None:
    """The evaluation size a run recorded in its ``summary.json`` (``metrics.size``), else None."""
    return _run_metric(task_dir, "size")


def run_recon(task_dir: Path) -> str:
    """Which restoration a run scored (``metrics.recon`` in its ``summary.json``): ``raw`` or ``pasted``."""
    return _run_metric(task_dir, "recon") or "raw"


def evaluate_folder(
    task_dir: str | os.PathLike,
    *,
    size: int | None = None,
    lpips: bool = True,
    lpips_net: str = "alex",
    lpips_weights: str | None = None,
    fid: bool = True,
    fid_weights: str | None = None,
    fid_dims: int = 2048,
    device: str = "cpu",
    recon: str = "raw",
) -> dict[str, Any]:
    """Per-image PSNR/SSIM/LPIPS of ``recon/`` (``recon="pasted"``: ``pasted/``) vs ``label/`` and the set's FID:
    ``{"rows", "summary"}``."""
    task_dir = Path(task_dir)
    kind = "pasted" if recon == "pasted" else "recon"
    pairs = paired_pngs(task_dir / kind, task_dir / "label")
    if not pairs:
        raise FileNotFoundError(f"no {kind}/<name>.png with a label/<name>.png under {task_dir}")
    scorer = ImageScorer(
        size,
        lpips=lpips,
        lpips_net=lpips_net,
        lpips_weights=lpips_weights,
        device=device,
        lpips_setting="--lpips-weights",
    )
    rows = []
    for name, recon_path, label_path in pairs:
        scores = scorer(read_png(recon_path)[None], read_png(label_path)[None])[0]
        rows.append({"name": name, **scores})
    if fid:
        fid_result = fid_between_files(
            [r for _, r, _ in pairs],
            [lb for _, _, lb in pairs],
            size=size,
            weights=fid_weights,
            dims=fid_dims,
            device=device,
            setting="--fid-weights",
        )
    else:
        fid_result = MetricResult.unavailable("fid", "disabled (--no-fid)")
    summary = {
        "folder": str(task_dir),
        "count": len(rows),
        "size": size,
        "recon": recon,
        "psnr": describe([r["psnr"] for r in rows]),
        "ssim": describe([r["ssim"] for r in rows]),
        "lpips": describe([r["lpips"] for r in rows])
        | ({} if scorer.lpips_model is not None else {"unavailable": scorer.lpips_reason}),
        "lpips_net": lpips_net,
        "fid": fid_result.to_dict(),
    }
    return {"rows": rows, "summary": summary}
