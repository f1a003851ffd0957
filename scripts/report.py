#!/usr/bin/env python
"""Tables, plots and a gallery from a results root or a multirun's sweep folder (every job under it).

    python scripts/report.py results                        # -> results/report/
    python scripts/report.py results --out /tmp/report --gallery-images 20
    python scripts/report.py results --fid-weights ~/weights/pt_inception-2015-12-05-6726825d.pth

Jobs that differ only by shard (data.shard / data.num_shards) are merged: metrics over the merged per-image rows,
FID recomputed over the merged files. A multirun writes the same report into its sweep folder by itself (the
``hydra.callbacks.report`` entry of conf/config.yaml).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="results root or sweep folder")
    parser.add_argument("--out", type=Path, default=None, help="report folder (default: <root>/report)")
    parser.add_argument("--gallery-images", type=int, default=50, help="images per task in the gallery")
    parser.add_argument("--gallery-size", type=int, default=256, help="gallery images are downscaled to this")
    parser.add_argument("--fid-weights", default=None, help="Inception weights for FID over merged shards")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        print(f"error: {args.root} is not a folder", file=sys.stderr)
        return 2
    from runner.report import find_jobs, write_report  # after the argument checks: torch, matplotlib take seconds

    out = args.out or args.root / "report"
    if not find_jobs(args.root, [out]):  # before writing anything: a command that fails leaves no folder behind
        print(
            f"error: no jobs under {args.root} (no task folder with summary.json or experiment.json)", file=sys.stderr
        )
        return 2
    report = write_report(
        args.root, out, gallery_images=args.gallery_images, gallery_size=args.gallery_size, fid_weights=args.fid_weights
    )
    print(f"{len(report.jobs)} jobs, {len(report.cells)} cells, {len(report.tables)} tables -> {out / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
