"""ADMPrior: the DiffusionPrior interface over an ADMUNet (eps / variance split, class labels, constructors)."""

import copy

import pytest
import torch

from priors import DiffusionPrior, NoiseSchedule, perturbed_self_attention
from priors.adm import ADMPrior, CheckpointError, pag_layers, save_adm


def batch(seed: int = 1) -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_attributes_follow_the_network():
    prior = ADMPrior.from_preset("test")
    assert isinstance(prior, DiffusionPrior) and not prior.is_latent
    assert prior.sample_shape == (3, 32, 32) and prior.variance == "learned_range"
    linear = NoiseSchedule.linear()
    assert torch.equal(prior.schedule.betas, linear.betas)
    assert prior.schedule.betas[0].item() == pytest.approx(1e-4) and prior.schedule.betas[-1].item() == 0.02
    fixed = ADMPrior.from_preset("test", learn_sigma=False, in_channels=1)
    assert fixed.sample_shape == (1, 32, 32) and fixed.variance == "fixed_small"


def test_eps_and_variance_are_the_two_halves_of_the_output():
    prior = ADMPrior.from_preset("test")
    x = batch()
    with torch.no_grad():
        out = prior(x, 250)
        raw = prior.network(x, torch.tensor([250, 250]))
    assert out.eps.shape == out.var_values.shape == x.shape
    assert torch.equal(out.eps, raw[:, :3]) and torch.equal(out.var_values, raw[:, 3:])
    assert not torch.allclose(out.eps, out.var_values)
    fixed = ADMPrior.from_preset("test", learn_sigma=False)
    with torch.no_grad():
        out = fixed(x, torch.tensor([10, 20]))
        assert out.var_values is None and torch.equal(out.eps, fixed.network(x, torch.tensor([10, 20])))


def test_random_init_is_seeded_and_nontrivial_guided_diffusion_init_is_zero():
    a = ADMPrior.from_preset("test", generator=torch.Generator().manual_seed(5))
    b = ADMPrior.from_preset("test", generator=torch.Generator().manual_seed(5))
    c = ADMPrior.from_preset("test", generator=torch.Generator().manual_seed(6))
    x = batch()
    with torch.no_grad():
        assert torch.equal(a(x, 7).eps, b(x, 7).eps) and not torch.allclose(a(x, 7).eps, c(x, 7).eps)
        assert ADMPrior.from_preset("test", init="guided_diffusion")(x, 7).eps.abs().max() == 0
    with pytest.raises(ValueError, match="unknown init"):
        ADMPrior.from_preset("test", init="xavier")


def test_class_labels_enter_as_an_added_embedding():
    prior = ADMPrior.from_preset("test", class_cond=True)
    x = batch()
    label = 417
    with torch.no_grad():
        out = prior(x, 300, label).eps
        assert torch.equal(out, prior(x, 300, torch.tensor([label, label])).eps)  # int label broadcasts
        assert not torch.allclose(out, prior(x, 300, 3).eps)
        # the same embedding, reached by moving label_emb[label] into time_embed's output bias
        moved = copy.deepcopy(prior)
        moved.network.time_embed[2].bias += moved.network.label_emb.weight[label]
        moved.network.label_emb.weight[label] = 0
        torch.testing.assert_close(moved(x, 300, label).eps, out, atol=1e-5, rtol=1e-5)


def test_label_errors():
    cond = ADMPrior.from_preset("test", class_cond=True)
    x = batch()
    with pytest.raises(ValueError, match="class-conditional"):
        cond(x, 10)
    with pytest.raises(ValueError, match=r"lie in \[0, 1000\)"):
        cond(x, 10, torch.tensor([0, 1000]))
    with pytest.raises(ValueError, match="shape"):
        cond(x, 10, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="unconditional"):
        ADMPrior.from_preset("test")(x, 10, 5)


def test_from_checkpoint_is_frozen_and_supports_pag(tmp_path):
    source = ADMPrior.from_preset("test")
    path = save_adm(source.network, tmp_path / "tiny.safetensors")
    prior = ADMPrior.from_checkpoint(path, "test")
    assert not any(p.requires_grad for p in prior.parameters()) and not prior.training
    x = batch().requires_grad_(True)
    out = prior(x, 100)
    (grad,) = torch.autograd.grad(out.eps.sum(), x)  # DPS differentiates through the frozen network
    assert grad.abs().sum() > 0
    with torch.no_grad():
        normal = prior(x, 100).eps
        with perturbed_self_attention(prior, pag_layers("test", "dps")):
            perturbed = prior(x, 100).eps
        assert torch.equal(normal, source(x, 100).eps) and not torch.allclose(normal, perturbed)


def test_from_checkpoint_never_falls_back_to_random_weights(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        ADMPrior.from_checkpoint(tmp_path / "ffhq_10m.pt", "ffhq_256")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.pt"):
        ADMPrior.from_checkpoint(tmp_path / "empty.pt", "ffhq_256")
