"""Compare registered solvers on the same held-out images: PSNR / SSIM, network passes and seconds per image,
with and without PAG, each solver with its step-table row for the prior (``shapes`` for the tiny priors).

    python scripts/compare_solvers.py --prior tiny_adm --solvers dps,daps --tasks box_inpaint,sr4 --n 8 \
        --out docs/results/daps_tiny_adm
    python scripts/compare_solvers.py --prior tiny_sd --solvers psld,latent_daps --tasks box_inpaint --n 4 \
        --out docs/results/daps_tiny_sd

``--solvers`` defaults to every registered solver of the prior's space (``solvers.solvers_for``); a solver that
cannot run a task (it needs what the task's operator does not offer, docs/solvers.md) is skipped with a note.
KID (with its std over subsets) of each row's restorations against ``--reference`` shapes test images (indices from
100 000, never restored here) on ``--features`` (default the shipped shapes network; ``none`` for no KID column).
Same runner code as ``scripts/restore.py`` (configs, step table, operators, per-image seed streams); all images of
a task in one batch. "passes / image" counts the prior network's forward calls per image, the perturbed PAG passes
included (a shared-prefix perturbed pass counts as one although it recomputes only part of the network).
"""

from __future__ import annotations

import sys

import torch

from evaluation import load_extractor
from evaluation.kid import KID_MIN_IMAGES
from imaging.io import write_json, write_text
from solvers import solvers_for

from ..build import SolverMismatch, build_prior
from ..config import compose
from ..heldout import ShapesReference, held_out_batch, pixel_scores, restore_batch
from ..report import markdown_table
from .cli import checked_names, measurement_parser
from .passes import PassCounter


def run_one(args, prior, solver: str, task: str, pag: bool, reference: ShapesReference | None) -> dict:
    cfg = compose(
        f"prior={args.prior}",
        f"solver={solver}",
        f"task={task}",
        f"data.limit={args.n}",
        f"data.split={args.split}",
        f"data.start={args.start}",
        f"seed={args.seed}",
        *(["pag.enabled=true"] if pag else []),
        *args.override,
    )
    batch = held_out_batch(cfg, prior)
    with PassCounter(prior) as passes:
        x_hat, seconds, settings = restore_batch(cfg, prior, batch, progress=args.progress)
    row = pixel_scores(x_hat, batch.x) | {
        "passes_per_image": passes.forward,  # one batched call serves every image
        "seconds_per_image": seconds / len(batch.indices),
        "settings": settings.describe(),
    }
    if reference is not None:
        row["distribution"] = reference(x_hat)
    return row


def mean(values: list[float]) -> float:
    return float(torch.tensor(values, dtype=torch.float64).mean())


def table(rows: list[dict]) -> str:
    with_kid = any("distribution" in r for r in rows)
    header = ["solver", "PAG", "task", "PSNR (dB)", "SSIM", *(["KID ± std"] if with_kid else [])]
    cells = []
    for r in rows:
        kid = []
        if with_kid:
            d = r.get("distribution")
            kid = [f"{d['kid']:.3f} ± {d['kid_std']:.3f}" if d else "n/a"]
        pixel = [f"{mean(r['psnr']):.2f}", f"{mean(r['ssim']):.3f}"]
        cost = [str(r["passes_per_image"]), f"{r['seconds_per_image']:.1f}"]
        cells.append([r["solver"], "on" if r["pag"] else "off", r["task"], *pixel, *kid, *cost])
    return markdown_table([*header, "passes / image", "s / image"], cells)


def main(argv: list[str] | None = None) -> None:
    parser = measurement_parser(__doc__, tasks="box_inpaint,sr4", n=8)
    parser.add_argument("--solvers", default=None, help="comma-separated; default: every solver of the prior's space")
    parser.add_argument("--pag", default="off,on", help="off, on or off,on")
    args = parser.parse_args(argv)
    tasks, solvers = checked_names(parser, args)  # before the prior and the reference features load
    if args.features != "none" and min(args.n, args.reference) < KID_MIN_IMAGES:
        parser.error(f"--n {args.n} / --reference {args.reference}: KID needs >= {KID_MIN_IMAGES} images per set")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = compose(f"prior={args.prior}", *args.override)
    if solvers is None:
        solvers = solvers_for("latent" if cfg.prior.latent else "pixel")
    prior = build_prior(cfg.prior, torch.device("cpu"), torch.float32)

    reference = None
    if args.features != "none":
        reference = ShapesReference(load_extractor(args.features), args.reference, args.seed)
    rows = []
    for task in tasks:
        for solver in solvers:
            for pag in [p == "on" for p in args.pag.split(",")]:
                try:
                    result = run_one(args, prior, solver, task, pag, reference)
                except SolverMismatch as exc:
                    print(f"skipped: {exc}", flush=True)
                    break
                row = {"solver": solver, "pag": pag, "task": task} | result
                rows.append(row)
                print(table([row]).splitlines()[-1], flush=True)
    markdown = table(rows)
    write_json(
        args.out / "report.json",
        {
            "prior": args.prior,
            "split": args.split,
            "n": args.n,
            "seed": args.seed,
            "threads": torch.get_num_threads(),
            "features": None if reference is None else reference.extractor.name,
            "reference": None
            if reference is None
            else {"split": "test", "start": reference.start, "n": args.reference},
            "command": "python scripts/compare_solvers.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "rows": rows,
        },
    )
    write_text(args.out / "table.md", markdown + "\n")
    print(markdown)
