"""Metrics on an existing output folder (``<out>/<task>/{recon,label}/<name>.png``): what ``scripts/evaluate.py``
runs. Scores are computed exactly as at run time (``ImageScorer``), so they reproduce ``metrics.csv``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from imaging import read_png

from .result import MetricResult
from .scoring import ImageScorer, describe, distribution_between_files, paired_pngs


def _run_metrics(task_dir: Path) -> dict[str, Any]:
    summary = task_dir / "summary.json"
    if not summary.is_file():
        return {}
    try:
        metrics = json.loads(summary.read_text()).get("metrics", {})
    except ValueError:
        return {}
    return metrics if isinstance(metrics, dict) else {}


def run_features(task_dir: Path) -> str | None:
    """The FID/KID feature extractor a run was configured with (``metrics.features`` in summary.json), else None."""
    return _run_metrics(Path(task_dir)).get("features")


def run_size(task_dir: Path) -> int | None:
    """The evaluation size a run recorded in its ``summary.json`` (``metrics.size``), else None."""
    return _run_metrics(Path(task_dir)).get("size")


def run_recon(task_dir: Path) -> str:
    """Which restoration a run scored (``metrics.recon`` in its ``summary.json``): ``raw`` or ``pasted``."""
    return _run_metrics(Path(task_dir)).get("recon") or "raw"


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
    features: str = "inception",
    kid_subsets: int = 100,
    kid_subset_size: int | None = None,
    device: str = "cpu",
    recon: str = "raw",
) -> dict[str, Any]:
    """Per-image PSNR/SSIM/LPIPS of ``recon/`` (``recon="pasted"``: ``pasted/``) vs ``label/`` and the set's FID /
    KID on ``features``: ``{"rows", "summary"}`` (``fid_weights``: the feature network's file, default the
    extractor's own)."""
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
        distribution = distribution_between_files(
            [r for _, r, _ in pairs],
            [lb for _, _, lb in pairs],
            features=features,
            size=size,
            weights=fid_weights,
            dims=fid_dims,
            device=device,
            setting="--fid-weights",
            kid_subsets=kid_subsets,
            kid_subset_size=kid_subset_size,
        )
    else:
        off = "disabled (--no-fid)"
        distribution = {m: MetricResult.unavailable(m, off, extractor=features) for m in ("fid", "kid")}
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
        "features": distribution["fid"].details.get("extractor", features),
        "fid": distribution["fid"].to_dict(),
        "kid": distribution["kid"].to_dict(),
    }
    return {"rows": rows, "summary": summary}
