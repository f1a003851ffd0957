#!/usr/bin/env python
"""Metrics on an existing output folder: PSNR / SSIM / LPIPS per image (recon vs label), FID and KID over the set.

    python scripts/evaluate.py results/ffhq_adm_ffhq_dps_1000steps_pag1_seed0_<hash>/box_inpaint
    python scripts/evaluate.py <task folder> --lpips-net vgg --lpips-weights ~/weights/vgg16-397923af.pth
    python scripts/evaluate.py <task folder> --fid-weights ~/weights/pt_inception-2015-12-05-6726825d.pth
    python scripts/evaluate.py results/demo_tiny_adm_dps_pag0_seed0/box_inpaint --features shapes

Writes ``evaluation.csv`` (one row per image) and ``evaluation.json`` (statistics, FID, KID and the feature
extractor they used) into the folder (or ``--out``); the run's own ``metrics.csv`` is left as it is. Images are
scored exactly as at run time, at the evaluation size and with the FID/KID features the run recorded in
summary.json (``--size`` / ``--features`` override). Weights are never downloaded here (a run, or
``scripts/fetch_weights.py``, fetches them): a metric without weights is reported as unavailable, with the reason.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from evaluation import evaluate_folder, run_features, run_recon, run_size
from imaging import write_json, write_text

COLUMNS = ("name", "psnr", "ssim", "lpips", "lpips_note")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a task folder holding recon/ and label/")
    parser.add_argument("--size", type=int, default=None, help="evaluation size (default: the run's metrics.size)")
    parser.add_argument(
        "--recon", default=None, choices=["raw", "pasted"], help="score recon/ or pasted/ (default: as the run did)"
    )
    parser.add_argument("--lpips-net", default="alex", choices=["alex", "vgg"])
    parser.add_argument("--lpips-weights", default=None, help="torchvision backbone file (default: TORCH_HOME cache)")
    parser.add_argument("--no-lpips", action="store_true")
    parser.add_argument(
        "--features",
        default=None,
        help="FID/KID features: inception | shapes | package.module:attr (default: the run's, else inception)",
    )
    parser.add_argument(
        "--fid-weights",
        default=None,
        help="feature network file (default: inception pt_inception-2015-12-05-6726825d.pth from the cache, shapes "
        "shipped)",
    )
    parser.add_argument("--fid-dims", type=int, default=2048, help="inception feature block")
    parser.add_argument("--kid-subsets", type=int, default=100)
    parser.add_argument("--kid-subset-size", type=int, default=None, help="default: min(1000, images // 2)")
    parser.add_argument("--no-fid", action="store_true", help="no FID / KID")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="where to write evaluation.csv/json (default: folder)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.folder.is_dir():
        print(f"error: {args.folder} is not a folder", file=sys.stderr)
        return 2
    size = args.size if args.size is not None else run_size(args.folder)
    features = args.features or run_features(args.folder) or "inception"
    try:
        report = evaluate_folder(
            args.folder,
            size=size,
            lpips=not args.no_lpips,
            lpips_net=args.lpips_net,
            lpips_weights=args.lpips_weights,
            fid=not args.no_fid,
            fid_weights=args.fid_weights,
            fid_dims=args.fid_dims,
            features=features,
            kid_subsets=args.kid_subsets,
            kid_subset_size=args.kid_subset_size,
            device=args.device,
            recon=args.recon or run_recon(args.folder),
        )
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = args.out or args.folder
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in report["rows"]:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in COLUMNS})
    write_text(out / "evaluation.csv", buffer.getvalue())
    summary = report["summary"]
    write_json(out / "evaluation.json", summary)

    def mean(entry: dict) -> str:
        return "unavailable" if entry.get("mean") is None else f"{entry['mean']:.4f}"

    fid, kid = summary["fid"], summary["kid"]
    kid_text = "unavailable" if kid["value"] is None else f"{kid['value']:.4f} ± {kid['std']:.4f}"
    print(
        f"{summary['count']} images | PSNR {mean(summary['psnr'])} dB | SSIM {mean(summary['ssim'])} | "
        f"LPIPS ({summary['lpips_net']}) {mean(summary['lpips'])} | "
        f"FID {'unavailable' if fid['value'] is None else format(fid['value'], '.2f')} | KID {kid_text} "
        f"[features: {summary['features']}] -> {out / 'evaluation.json'}"
    )
    for name in ("lpips", "fid", "kid"):
        reason = summary[name].get("unavailable")
        if reason:
            print(f"{name.upper()} unavailable: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
