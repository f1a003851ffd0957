#!/usr/bin/env python
"""Compare registered solvers on the same held-out images: PSNR / SSIM, network passes and seconds per image,
with and without PAG, each solver with its step-table row for the prior (``shapes`` for the tiny priors).

    python scripts/compare_solvers.py --prior tiny_adm --solvers dps,daps --tasks box_inpaint,sr4 --n 8 \
        --out docs/results/daps_tiny_adm
    python scripts/compare_solvers.py --prior tiny_sd --solvers psld,latent_daps --tasks box_inpaint --n 4 \
        --out docs/results/daps_tiny_sd

Same runner code as ``scripts/restore.py`` (configs, step table, operators, per-image seed streams); all images of
a task in one batch. "passes / image" counts the prior network's forward calls per image, the perturbed PAG passes
included (a shared-prefix perturbed pass counts as one although it recomputes only part of the network).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

import runner
from evaluation.pixel import psnr, ssim
from imaging.io import quantize, write_json, write_text
from runner.seeds import image_streams


def scores(x_hat: torch.Tensor, x: torch.Tensor) -> dict[str, list[float]]:
    """PSNR / SSIM on [0, 1] of the 8-bit images (what a saved PNG gives)."""
    a, b = (quantize(x_hat) + 1) / 2, (quantize(x) + 1) / 2
    return {"psnr": psnr(a, b).tolist(), "ssim": ssim(a, b).tolist()}


def run_one(args, prior, solver: str, task: str, pag: bool) -> dict:
    overrides = [
        f"prior={args.prior}",
        f"solver={solver}",
        f"task={task}",
        f"data.limit={args.n}",
        f"data.split={args.split}",
        f"data.start={args.start}",
        f"seed={args.seed}",
        *(["pag.enabled=true"] if pag else []),
        *args.override,
    ]
    cfg = runner.compose(*overrides)
    size = runner.prior_image_size(prior)
    data = runner.build_dataset(cfg.data, size)
    x = torch.stack([data.load(s) for s in data.samples])
    indices = [s.index for s in data.samples]
    streams = image_streams(args.seed, indices)
    operator = runner.build_operator(cfg.task, size, streams.operator)
    y = operator.measure(x, streams.noise)
    settings = runner.resolve_settings(cfg)
    sampler = runner.build_solver(settings, cfg.solver, prior, operator, progress=args.progress)
    calls = [0]
    hook = prior.network.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    start = time.time()
    try:
        x_hat = sampler.restore(y, image_streams(args.seed, indices).sampler)
    finally:
        hook.remove()
    seconds = time.time() - start
    return scores(x_hat, x) | {
        "passes_per_image": calls[0],  # one batched call serves every image
        "seconds_per_image": seconds / len(indices),
        "settings": settings.describe(),
    }


def mean(values: list[float]) -> float:
    return float(torch.tensor(values, dtype=torch.float64).mean())


def table(rows: list[dict]) -> str:
    lines = [
        "| solver | PAG | task | PSNR (dB) | SSIM | passes / image | s / image |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['solver']} | {'on' if r['pag'] else 'off'} | {r['task']} | {mean(r['psnr']):.2f} | "
            f"{mean(r['ssim']):.3f} | {r['passes_per_image']} | {r['seconds_per_image']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prior", default="tiny_adm")
    parser.add_argument("--solvers", default="dps,daps")
    parser.add_argument("--tasks", default="box_inpaint,sr4")
    parser.add_argument("--pag", default="off,on", help="off, on or off,on")
    parser.add_argument("--n", type=int, default=8, help="images per task")
    parser.add_argument("--split", default="test")
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("override", nargs="*", help="extra Hydra overrides for every run")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = runner.compose(f"prior={args.prior}", *args.override)
    prior = runner.build_prior(cfg.prior, torch.device("cpu"), torch.float32)

    rows = []
    for task in args.tasks.split(","):
        for solver in args.solvers.split(","):
            for pag in [p == "on" for p in args.pag.split(",")]:
                row = {"solver": solver, "pag": pag, "task": task} | run_one(args, prior, solver, task, pag)
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
            "command": "python scripts/compare_solvers.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "rows": rows,
        },
    )
    write_text(args.out / "table.md", markdown + "\n")
    print(markdown)


if __name__ == "__main__":
    main()
