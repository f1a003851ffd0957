"""The latent-prior training script runs its stages, resumes, and exports a folder that load_sd reads."""

import torch

from operators.random import generators_from_seeds

from .conftest import load_script


def _main(*argv: str) -> None:
    load_script("train_latent_prior.py").main(list(argv))


def test_stages_export_and_load(tmp_path):
    common = ("--out", str(tmp_path), "--num-images", "8", "--batch-size", "2", "--save-every", "1")
    _main(*common, "--stage", "vae", "--steps", "2")
    _main(*common, "--stage", "unet", "--steps", "1")
    _main(*common, "--stage", "unet", "--steps", "2")  # resumes the UNet at step 1
    unet_state = torch.load(tmp_path / "unet.pt", weights_only=False)
    assert unet_state["step"] == 2
    _main(*common, "--export", str(tmp_path / "export"))

    from priors.sd import load_sd
    from solvers import sample

    prior = load_sd(tmp_path / "export")
    assert prior.sample_shape == (4, 8, 8) and prior.image_size == (32, 32)
    assert not prior.has_text_encoder  # a fixed null embedding stands in for the empty prompt
    latents = torch.load(tmp_path / "latents.pt", weights_only=True)
    # the scaling factor makes the training latents unit-variance, as SD's 0.18215 does
    assert abs(float((latents["latents"] * prior.scaling_factor).std()) - 1) < 1e-4
    images = sample(prior, 1, generators_from_seeds([0]), num_steps=2, progress=False)
    assert images.shape == (1, 3, 32, 32) and torch.isfinite(images).all()
