"""The small priors trained with this project's code and shipped with it (procedural shapes, 32 px).

- ``load_tiny_adm()``: an ADM-architecture pixel prior (``scripts/train_prior.py``), for DPS;
- ``load_tiny_sd()``: a latent diffusion prior with SD1.5's block types (``scripts/train_latent_prior.py``), for
  PSLD, loaded through the same ``priors.sd.load_sd`` as Stable Diffusion 1.5.

Each comes with the command that produced it (``adm_shapes32.json``, ``sd_shapes32/training.json``).
They are demos and test fixtures, not models of natural images.
"""

from __future__ import annotations

from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
TINY_ADM = HERE / "adm_shapes32.safetensors"
TINY_SD = HERE / "sd_shapes32"


def load_tiny_adm(device: str | torch.device = "cpu"):
    """The shipped tiny pixel prior as an ``ADMPrior`` (strict loading)."""
    from priors.adm import ADMPrior

    return ADMPrior.from_checkpoint(TINY_ADM, device=device)


def load_tiny_sd(device: str | torch.device = "cpu", **options):
    """The shipped tiny latent prior as a ``StableDiffusionPrior`` (``options``: see ``priors.sd.load_sd``)."""
    from priors.sd import load_sd

    return load_sd(TINY_SD, device=device, **options)


__all__ = ["TINY_ADM", "TINY_SD", "load_tiny_adm", "load_tiny_sd"]
