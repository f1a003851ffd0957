#!/usr/bin/env python
"""Train a small ADM-architecture pixel prior on the procedural shapes dataset, on the CPU.

    python scripts/train_prior.py --out runs/tiny_adm --steps 12000
    python scripts/train_prior.py --out runs/tiny_adm --steps 12000      # again: resumes from the checkpoint
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
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from imaging.shapes import ShapesDataset
from priors import NoiseSchedule
from priors.adm import ADMUNet, save_adm

MODEL_CONFIG = {
    "image_size": 32,
    "num_channels": 32,
    "num_res_blocks": 2,
    "channel_mult": "1,2,2",
    "attention_resolutions": "16,8",
    "num_head_channels": 32,
    "learn_sigma": True,
    "use_scale_shift_norm": True,
    "resblock_updown": True,
    "dropout": 0.0,
}


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


def build_model(seed: int) -> ADMUNet:
    """Model init from its own seeded RNG stream (isolated from the global one)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ADMUNet(**MODEL_CONFIG)


def load_dataset(n: int, cache: Path) -> torch.Tensor:
    """The first n training images (rendering takes minutes: cached as uint8 next to the run)."""
    if cache.exists():
        data = np.load(cache)
        if len(data) >= n:
            return torch.from_numpy(data[:n]).float() / 127.5 - 1
    images = ShapesDataset("train", n=n, size=MODEL_CONFIG["image_size"])
    data = np.stack([((images[i] + 1) * 127.5).round().clamp(0, 255).byte().numpy() for i in tqdm(range(n), "render")])
    np.save(cache, data)
    return torch.from_numpy(data).float() / 127.5 - 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="run folder (checkpoint, log)")
    parser.add_argument("--steps", type=int, default=12000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--num-images", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-every", type=int, default=500)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--export", type=Path, help="write the EMA weights + config (safetensors) and exit")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    ckpt_path = args.out / "checkpoint.pt"

    model = build_model(args.seed)
    ema = build_model(args.seed)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    data_gen = torch.Generator().manual_seed(args.seed + 1)
    noise_gen = torch.Generator().manual_seed(args.seed + 2)
    step = 0
    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        data_gen.set_state(state["data_gen"])
        noise_gen.set_state(state["noise_gen"])
        step = state["step"]
        print(f"resumed from {ckpt_path} at step {step}")

    if args.export:
        export = args.export
        export.parent.mkdir(parents=True, exist_ok=True)
        save_adm(ema, export.with_suffix(".safetensors"))
        meta = {
            "model": MODEL_CONFIG,
            "steps": step,
            "seed": args.seed,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "ema": args.ema,
            "num_images": args.num_images,
            "dataset": "imaging.shapes train",
        }
        export.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
        print(f"exported EMA weights of step {step} to {export}.safetensors")
        return

    data = load_dataset(args.num_images, args.out / f"shapes_train_{args.num_images}.npy")
    loss_fn = HybridLoss(NoiseSchedule.linear())
    log = (args.out / "loss.csv").open("a")
    if step == 0:
        log.write("step,loss,mse,vlb,seconds\n")
    model.train()
    start = time.time()
    bar = tqdm(total=args.steps, initial=step, desc="train")
    while step < args.steps:
        idx = torch.randint(0, len(data), (args.batch_size,), generator=data_gen)
        x0 = data[idx]
        flip = torch.rand(args.batch_size, generator=data_gen) < 0.5  # horizontal flips
        x0 = torch.where(flip.view(-1, 1, 1, 1), x0.flip(-1), x0)
        t = torch.randint(0, 1000, (args.batch_size,), generator=noise_gen)
        noise = torch.randn(x0.shape, generator=noise_gen)
        loss, mse, vlb = loss_fn(model, x0, t, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), model.parameters()):
                p_ema.lerp_(p, 1 - args.ema)
        step += 1
        bar.update(1)
        if step % 50 == 0:
            log.write(f"{step},{loss.item():.5f},{mse.item():.5f},{vlb.item():.5f},{time.time() - start:.1f}\n")
            log.flush()
            bar.set_postfix(mse=f"{mse.item():.4f}")
        if step % args.save_every == 0 or step == args.steps:
            state = {
                "model": model.state_dict(),
                "ema": ema.state_dict(),
                "optimizer": optimizer.state_dict(),
                "data_gen": data_gen.get_state(),
                "noise_gen": noise_gen.get_state(),
                "step": step,
                "config": MODEL_CONFIG,
            }
            tmp = ckpt_path.with_suffix(".tmp")
            torch.save(state, tmp)
            tmp.replace(ckpt_path)  # atomic: a crash never leaves a half-written checkpoint
    bar.close()
    log.close()


if __name__ == "__main__":
    main()
