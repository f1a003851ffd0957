"""The tiny-prior training script is deterministic and resumes where it stopped."""

from pathlib import Path

import torch
from safetensors.torch import load_file

from priors.tiny import TINY_ADM_CONFIG

from .conftest import load_script


def _script():
    return load_script("train_prior.py")


def _train(out: Path, steps: int) -> dict:
    _script().main(
        ["--out", str(out), "--steps", str(steps), "--batch-size", "2", "--num-images", "6", "--save-every", "1"]
    )
    return torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)


def _max_diff(a: dict, b: dict) -> float:
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_same_seed_same_weights(tmp_path):
    a, b = _train(tmp_path / "a", 2), _train(tmp_path / "b", 2)
    assert _max_diff(a["model"], b["model"]) == 0


def test_resumed_training_continues_the_same_run(tmp_path):
    before = _train(tmp_path / "resumed", 2)
    resumed = _train(tmp_path / "resumed", 3)  # a second invocation picks up the checkpoint of step 2
    straight = _train(tmp_path / "straight", 3)
    assert resumed["step"] == straight["step"] == 3
    # the random streams (batch indices, flips, timesteps, noise) continue exactly
    assert torch.equal(resumed["data_gen"], straight["data_gen"])
    assert torch.equal(resumed["noise_gen"], straight["noise_gen"])
    # weights: equal up to CPU float rounding, which differs by memory layout between processes (~1e-8 in the
    # gradients, amplified by Adam where gradients are ~0); far below what one training step changes
    step_change = _max_diff(straight["model"], before["model"])
    assert _max_diff(resumed["model"], straight["model"]) < 0.1 * step_change


def test_export_writes_a_strictly_loadable_prior(tmp_path):
    from priors.adm import ADMPrior

    _train(tmp_path, 1)
    _script().main(["--out", str(tmp_path), "--export", str(tmp_path / "export" / "model")])
    weights = load_file(tmp_path / "export" / "model.safetensors")
    prior = ADMPrior.from_checkpoint(tmp_path / "export" / "model.safetensors")
    assert prior.network.config["num_channels"] == TINY_ADM_CONFIG["num_channels"]
    assert set(weights) == set(prior.network.state_dict())
