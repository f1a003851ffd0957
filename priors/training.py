"""Plumbing shared by the scripts that train the small shipped priors: data cache, EMA, resumable state.

Determinism: every random draw of a training run comes from generators owned by ``TrainState``; their
states are checkpointed with the weights, so a run resumed from a checkpoint continues exactly as an
uninterrupted one would. Checkpoints are written atomically (temp file + rename).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm


def seeded_init(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build a model with its initial weights drawn from ``seed``, leaving the global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def shapes_training_images(n: int, size: int, cache: Path) -> torch.Tensor:
    """The first ``n`` images of the shapes ``train`` split, (n, 3, size, size) in [-1, 1].

    Rendering takes minutes, so the images are cached as uint8 in ``cache`` (a .npy file).
    """
    from imaging.shapes import ShapesDataset

    if cache.exists():
        data = np.load(cache)
        if len(data) >= n and data.shape[-1] == size:
            return torch.from_numpy(data[:n]).float() / 127.5 - 1
    images = ShapesDataset("train", n=n, size=size)
    data = np.stack([((images[i] + 1) * 127.5).round().clamp(0, 255).byte().numpy() for i in tqdm(range(n), "render")])
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, data)
    return torch.from_numpy(data).float() / 127.5 - 1


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model, parameter by parameter."""
    for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
        p_ema.lerp_(p, 1 - decay)


class TrainState:
    """Model, EMA copy, optimizer, data/noise generators and step counter of one training run."""

    def __init__(self, build: Callable[[], nn.Module], seed: int, lr: float, path: Path, weight_decay: float = 0.0):
        self.model = seeded_init(build, seed)
        self.ema = seeded_init(build, seed)
        self.ema.load_state_dict(self.model.state_dict())
        self.ema.requires_grad_(False)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=weight_decay)
        self.data_gen = torch.Generator().manual_seed(seed + 1)
        self.noise_gen = torch.Generator().manual_seed(seed + 2)
        self.step = 0
        self.path = path
        if path.exists():
            state = torch.load(path, map_location="cpu", weights_only=False)
            self.model.load_state_dict(state["model"])
            self.ema.load_state_dict(state["ema"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.data_gen.set_state(state["data_gen"])
            self.noise_gen.set_state(state["noise_gen"])
            self.step = state["step"]
            print(f"resumed from {path} at step {self.step}")

    def save(self, **extra) -> None:
        state = {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "data_gen": self.data_gen.get_state(),
            "noise_gen": self.noise_gen.get_state(),
            "step": self.step,
            **extra,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.path)  # a crash never leaves a half-written checkpoint

    def batch(self, data: torch.Tensor, batch_size: int, flip: bool = True) -> torch.Tensor:
        """A random batch (with replacement), horizontally flipped half of the time."""
        idx = torch.randint(0, len(data), (batch_size,), generator=self.data_gen)
        x = data[idx]
        if flip:
            flips = torch.rand(batch_size, generator=self.data_gen) < 0.5
            x = torch.where(flips.view(-1, 1, 1, 1), x.flip(-1), x)
        return x

    def train(
        self,
        loss_fn: Callable[[torch.Tensor], tuple[torch.Tensor, dict[str, float]]],
        data: torch.Tensor,
        *,
        steps: int,
        batch_size: int,
        ema_decay: float,
        save_every: int,
        log_path: Path,
        desc: str = "train",
        clip_grad: float = 1.0,
        flip: bool = True,
        ema_warmup: bool = False,
    ) -> None:
        """Optimise ``loss_fn(batch) -> (loss, logged)`` up to ``steps``; log every 50, save every ``save_every``.

        ``ema_warmup``: decay min(ema_decay, (1 + step) / (10 + step)), so that a short run's EMA does not keep a
        large share of the initial weights (0.999 ** 1500 = 22 %).
        """
        self.model.train()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        new_log = not log_path.exists()
        start = time.time()
        with log_path.open("a") as log, tqdm(total=steps, initial=self.step, desc=desc) as bar:
            while self.step < steps:
                loss, logged = loss_fn(self.batch(data, batch_size, flip=flip))
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip_grad)
                self.optimizer.step()
                decay = min(ema_decay, (1 + self.step) / (10 + self.step)) if ema_warmup else ema_decay
                ema_update(self.ema, self.model, decay)
                self.step += 1
                bar.update(1)
                if self.step % 50 == 0:
                    if new_log:
                        log.write("step," + ",".join(logged) + ",seconds\n")
                        new_log = False
                    values = ",".join(f"{v:.5f}" for v in logged.values())
                    log.write(f"{self.step},{values},{time.time() - start:.1f}\n")
                    log.flush()
                    bar.set_postfix({k: f"{v:.4f}" for k, v in logged.items()})
                if self.step % save_every == 0 or self.step == steps:
                    self.save()
