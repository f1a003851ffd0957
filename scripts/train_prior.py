#!/usr/bin/env python
"""Train a small ADM-architecture pixel prior on the procedural shapes dataset, on the CPU.

    python scripts/train_prior.py --out runs/tiny_adm --steps 5000
    python scripts/train_prior.py --out runs/tiny_adm --steps 5000       # again: resumes from the checkpoint
    python scripts/train_prior.py --out runs/tiny_adm --export priors/tiny/adm_shapes32   # ship the EMA weights

Loss: improved-DDPM's hybrid objective for learn_sigma models: ||eps - eps_theta||^2 + lambda L_vlb, where
L_vlb is the KL between the true posterior q(x_{t-1} | x_t, x_0) and the model's Gaussian with the learned
range variance (the mean's gradient stopped, as in Nichol & Dhariwal 2021), lambda = 0.001.
Deterministic given --seed: model init, data order and noise come from explicit generators whose states
are checkpointed, so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

from priors import NoiseSchedule
from priors.adm import ADMUNet, save_adm
from priors.tiny import TINY_ADM_CONFIG
from priors.training import TrainState, shapes_training_images


def normal_kl(mean1, logvar1, mean2, logvar2):
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)), elementwise."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


class HybridLoss:
    """L_simple + lambda L_vlb over the full 1000-step chain (t drawn uniformly)."""

    def __init__(self, schedule: NoiseSchedule, vlb_weight: float = 1e-3):
        self.chain = schedule.sampling(list(range(schedule.num_train_timesteps - 1, -1, -1)))
        self.T = schedule.num_train_timesteps
        self.vlb_weight = vlb_weight

    def index(self, t: torch.Tensor) -> torch.Tensor:
        return self.T - 1 - t  # sampling index of timestep t in the descending chain

    def __call__(self, model: torch.nn.Module, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor):
        c = self.chain
        idx = self.index(t)

        def per_sample(values):
            return values[idx].to(x0.dtype).view(-1, 1, 1, 1)

        abar = per_sample(c.alphas_cumprod)
        x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
        out = model(x_t, t)
        eps, var_values = out.chunk(2, dim=1)
        mse = ((eps - noise) ** 2).mean(dim=(1, 2, 3))

        # variational bound term: true posterior vs model with stopped-gradient mean
        beta = per_sample(c.betas)
        abar_prev = per_sample(c.alphas_cumprod_prev)
        coef_x0 = beta * abar_prev.sqrt() / (1 - abar)
        coef_xt = (1 - abar_prev) * (1 - beta).sqrt() / (1 - abar)
        true_mean = coef_x0 * x0 + coef_xt * x_t
        true_logvar = per_sample(c.posterior_log_variance_clipped)
        x0_hat = ((x_t - (1 - abar).sqrt() * eps.detach()) / abar.sqrt()).clamp(-1, 1)
        model_mean = coef_x0 * x0_hat + coef_xt * x_t
        frac = (var_values + 1) / 2
        model_logvar = frac * torch.log(beta) + (1 - frac) * true_logvar
        kl = normal_kl(true_mean, true_logvar, model_mean, model_logvar).mean(dim=(1, 2, 3)) / math.log(2.0)
        vlb = kl * self.T  # the bound sums over T terms; t is one uniform draw
        return (mse + self.vlb_weight * vlb).mean(), mse.mean().detach(), vlb.mean().detach()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="run folder (checkpoint, log)")
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--num-images", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-every", type=int, default=250)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--export", type=Path, help="write the EMA weights + config (safetensors) and exit")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    state = TrainState(lambda: ADMUNet(**TINY_ADM_CONFIG), args.seed, args.lr, args.out / "checkpoint.pt")

    if args.export:
        save_adm(state.ema, args.export.with_suffix(".safetensors"))
        meta = {
            "model": TINY_ADM_CONFIG,
            "steps": state.step,
            "seed": args.seed,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "ema": args.ema,
            "num_images": args.num_images,
            "dataset": "imaging.shapes, train split",
            "train_command": (
                f"python scripts/train_prior.py --out {args.out} --steps {state.step} --batch-size {args.batch_size} "
                f"--lr {args.lr} --ema {args.ema} --num-images {args.num_images} --seed {args.seed}"
            ),
            "export_command": "python scripts/train_prior.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        }
        args.export.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
        print(f"exported the EMA weights of step {state.step} to {args.export}.safetensors")
        return

    data = shapes_training_images(args.num_images, TINY_ADM_CONFIG["image_size"], args.out / "shapes_train.npy")
    hybrid = HybridLoss(NoiseSchedule.linear())

    def loss_fn(x0: torch.Tensor):
        t = torch.randint(0, 1000, (len(x0),), generator=state.noise_gen)
        noise = torch.randn(x0.shape, generator=state.noise_gen)
        loss, mse, vlb = hybrid(state.model, x0, t, noise)
        return loss, {"loss": loss.item(), "mse": mse.item(), "vlb": vlb.item()}

    state.train(
        loss_fn,
        data,
        steps=args.steps,
        batch_size=args.batch_size,
        ema_decay=args.ema,
        save_every=args.save_every,
        log_path=args.out / "loss.csv",
    )


if __name__ == "__main__":
    main()
