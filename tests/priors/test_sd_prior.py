"""StableDiffusionPrior: shapes, encode/decode against the VAE, prompts, parameterisations, memory levers."""

import pytest
import torch
from torch import nn

from priors import ModelOutput, NoiseSchedule
from priors.sd import StableDiffusionPrior, random_sd_prior, random_vae


@pytest.fixture(scope="module")
def prior():
    return random_sd_prior(seed=0)


@pytest.fixture
def images():
    g = torch.Generator().manual_seed(3)
    return torch.rand(2, 3, 32, 32, generator=g) * 2 - 1


def _latents(seed=4, batch=2):
    return torch.randn(batch, 4, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_shapes_schedule_and_flags(prior):
    assert prior.is_latent
    assert prior.network is prior.unet
    assert prior.vae_scale_factor == 4  # three VAE levels
    assert prior.image_size == (32, 32)
    assert prior.sample_shape == (4, 8, 8)
    assert prior.scaling_factor == pytest.approx(0.18215)
    torch.testing.assert_close(prior.schedule.betas, NoiseSchedule.scaled_linear().betas)
    assert prior.prediction_type == "epsilon"
    assert prior.has_text_encoder
    assert not any(p.requires_grad for p in prior.parameters())  # frozen: no weight gradients
    assert random_sd_prior(image_size=64).sample_shape == (4, 16, 16)
    assert random_sd_prior(down_factor=8, image_size=64).sample_shape == (4, 8, 8)
    with pytest.raises(ValueError, match="divisible"):
        random_sd_prior(image_size=30)


def test_encode_is_scaled_posterior_mean(prior, images):
    with torch.no_grad():
        posterior = prior.vae.encode(images).latent_dist
        z = prior.encode(images)
    assert z.shape == (2, *prior.sample_shape)
    torch.testing.assert_close(z, 0.18215 * posterior.mean)
    assert torch.equal(prior.encode(images), z)  # deterministic


def test_encode_sample_uses_the_generator(prior, images):
    with torch.no_grad():
        posterior = prior.vae.encode(images).latent_dist
        a = prior.encode(images, sample=True, generator=torch.Generator().manual_seed(7))
        b = prior.encode(images, sample=True, generator=torch.Generator().manual_seed(7))
        c = prior.encode(images, sample=True, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    noise = torch.randn(posterior.mean.shape, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(a, 0.18215 * (posterior.mean + posterior.std * noise))
    # one generator per image: a batch equals the single-image calls
    per_image = prior.encode(images, sample=True, generator=[torch.Generator().manual_seed(s) for s in (1, 2)])
    for i, s in enumerate((1, 2)):
        single = prior.encode(images[i : i + 1], sample=True, generator=torch.Generator().manual_seed(s))
        torch.testing.assert_close(per_image[i : i + 1], single)
    with pytest.raises(ValueError, match="generator"):
        prior.encode(images, sample=True)


def test_decode_inverts_scaling_and_is_differentiable(prior):
    z = _latents().requires_grad_(True)
    x = prior.decode(z)
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32
    with torch.no_grad():
        torch.testing.assert_close(x, prior.vae.decode(z / 0.18215).sample)
    (grad,) = torch.autograd.grad(x.square().sum(), z)
    assert grad.shape == z.shape and grad.abs().sum() > 0 and torch.isfinite(grad).all()
    assert prior.decode(z.detach() * 30, clamp=True).abs().max() <= 1


def test_decode_gradient_matches_finite_differences():
    """Directional derivative of a loss through decode (float64): autograd vs central differences."""
    prior = random_sd_prior(seed=1).double()
    z = _latents().double().requires_grad_(True)
    direction = _latents(seed=5).double()
    loss = lambda z: prior.decode(z).sin().sum()  # noqa: E731
    (grad,) = torch.autograd.grad(loss(z), z)
    h = 1e-5
    with torch.no_grad():
        numeric = (loss(z + h * direction) - loss(z - h * direction)) / (2 * h)
    torch.testing.assert_close((grad * direction).sum(), numeric, rtol=1e-6, atol=1e-8)


def test_forward_is_unet_with_null_embedding(prior):
    z, t = _latents(), torch.tensor([999, 10])
    with torch.no_grad():
        out = prior(z, t)
        ids = prior.tokenizer([""], padding="max_length", max_length=16, return_tensors="pt").input_ids
        null = prior.text_encoder(ids).last_hidden_state
        direct = prior.unet(z, t, encoder_hidden_states=null.expand(2, -1, -1)).sample
    assert isinstance(out, ModelOutput) and out.var_values is None
    torch.testing.assert_close(out.eps, direct)
    torch.testing.assert_close(prior.null_embedding, null)
    # an int timestep is broadcast over the batch; a (1, L, D) or (B, L, D) embedding both work
    with torch.no_grad():
        torch.testing.assert_close(prior(z, 10).eps[1], out.eps[1])
        torch.testing.assert_close(prior(z, t, cond=null).eps, out.eps)
        torch.testing.assert_close(prior(z, t, cond=null.expand(2, -1, -1)).eps, out.eps)
        torch.testing.assert_close(prior(z, t, cond="").eps, out.eps)
    with pytest.raises(ValueError, match="batch"):
        prior(z, t, cond=null.expand(3, -1, -1))


def test_prompt_embeddings_are_cached(prior):
    calls = []
    handle = prior.text_encoder.register_forward_hook(lambda m, a, o: calls.append(a[0].clone()))
    try:
        fresh = random_sd_prior(seed=0)
        fresh_calls = []
        h2 = fresh.text_encoder.register_forward_hook(lambda m, a, o: fresh_calls.append(1))
        z = _latents()
        with torch.no_grad():
            fresh(z, 500)
            fresh(z, 400)
            fresh.prompt_embedding("")
        h2.remove()
        assert len(fresh_calls) == 1  # the null embedding: computed once
        a = prior.prompt_embedding("a photo of a dog")
        b = prior.prompt_embedding("a photo of a dog")
        assert a is b and len(calls) == 1 and not a.requires_grad
        assert not torch.allclose(a, prior.null_embedding)
        # a batch of prompts, one per sample
        with torch.no_grad():
            mixed = prior(z, 500, cond=["", "a photo of a dog"]).eps
            torch.testing.assert_close(mixed[1:], prior(z[1:], 500, cond="a photo of a dog").eps)
            torch.testing.assert_close(mixed[:1], prior(z[:1], 500).eps)
    finally:
        handle.remove()


def test_without_text_encoder_only_the_empty_prompt():
    with_text = random_sd_prior(seed=0)
    bare = random_sd_prior(seed=0, with_text_encoder=False)
    assert not bare.has_text_encoder and bare.text_encoder is None
    torch.testing.assert_close(bare.null_embedding, with_text.null_embedding)
    z = _latents()
    with torch.no_grad():
        torch.testing.assert_close(bare(z, 300).eps, with_text(z, 300).eps)
    assert bare.prompt_embedding("") is bare.null_embedding
    with pytest.raises(ValueError, match="no text encoder"):
        bare.prompt_embedding("a photo of a face")
    with pytest.raises(ValueError, match="no text encoder"):
        bare(z, 300, cond="a photo of a face")
    with pytest.raises(ValueError, match="null_embedding"):
        StableDiffusionPrior(bare.unet, bare.vae)


class _OracleUNet(nn.Module):
    """Stands in for the UNet: returns a fixed prediction (the exact v or x0 of a known (x0, eps) pair)."""

    def __init__(self, prediction):
        super().__init__()
        self.prediction = prediction
        self.weight = nn.Parameter(torch.zeros(()))
        self.config = type("Config", (), {"sample_size": 8})()

    @property
    def dtype(self):
        return torch.float32

    def forward(self, x, t, encoder_hidden_states=None):
        return type("Out", (), {"sample": self.prediction})()


@pytest.mark.parametrize("prediction_type", ["v_prediction", "sample"])
def test_other_parameterisations_convert_to_eps(prediction_type):
    """Given the exact v (or x0) of x_t = sqrt(abar) x0 + sqrt(1 - abar) eps, the prior returns eps."""
    schedule = NoiseSchedule.scaled_linear()
    t = torch.tensor([50, 900])
    abar = schedule.alphas_cumprod[t].float().view(-1, 1, 1, 1)
    x0, eps = _latents(1), _latents(2)
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    target = abar.sqrt() * eps - (1 - abar).sqrt() * x0 if prediction_type == "v_prediction" else x0
    prior = StableDiffusionPrior(
        _OracleUNet(target),
        random_vae(),
        schedule,
        image_size=32,
        prediction_type=prediction_type,
        null_embedding=torch.zeros(1, 4, 8),
    )
    torch.testing.assert_close(prior(x_t, t).eps, eps, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="prediction_type"):
        StableDiffusionPrior(
            _OracleUNet(target), random_vae(), prediction_type="x0", null_embedding=torch.zeros(1, 4, 8)
        )


def test_v_prediction_from_scheduler_config():
    assert random_sd_prior(prediction_type="v_prediction").prediction_type == "v_prediction"


def _eps_and_grads(prior, z, t):
    z = z.clone().requires_grad_(True)
    eps = prior(z, t).eps
    x = prior.decode(eps)  # through the VAE decoder too
    (grad,) = torch.autograd.grad(eps.square().sum() + x.square().mean(), z)
    return eps.detach(), grad


def test_gradient_checkpointing_same_values_and_gradients():
    plain = random_sd_prior(seed=0)
    ckpt = random_sd_prior(seed=0, gradient_checkpointing=True, vae_gradient_checkpointing=True)
    assert ckpt.unet.is_gradient_checkpointing and ckpt.vae.is_gradient_checkpointing
    assert not plain.unet.is_gradient_checkpointing
    z, t = _latents(), torch.tensor([600, 20])
    counts = {"plain": 0, "ckpt": 0}
    convs = {"plain": plain.unet.down_blocks[0].resnets[0].conv1, "ckpt": ckpt.unet.down_blocks[0].resnets[0].conv1}
    hooks = [
        conv.register_forward_hook(lambda m, a, o, k=k: counts.__setitem__(k, counts[k] + 1))
        for k, conv in convs.items()
    ]
    eps_a, grad_a = _eps_and_grads(plain, z, t)
    eps_b, grad_b = _eps_and_grads(ckpt, z, t)
    for h in hooks:
        h.remove()
    assert counts == {"plain": 1, "ckpt": 2}  # checkpointing really recomputed the block in backward
    torch.testing.assert_close(eps_a, eps_b, rtol=0, atol=1e-6)
    torch.testing.assert_close(grad_a, grad_b, rtol=1e-5, atol=1e-6)


def test_autocast_returns_float32_close_to_float32():
    plain = random_sd_prior(seed=0)
    amp = random_sd_prior(seed=0, autocast_dtype="bf16")
    assert amp.autocast_dtype == torch.bfloat16 and amp.vae_autocast_dtype == torch.bfloat16
    seen = []
    hook = amp.unet.conv_in.register_forward_hook(lambda m, a, o: seen.append(o.dtype))
    z = _latents()
    eps_a, grad_a = _eps_and_grads(plain, z, 500)
    eps_b, grad_b = _eps_and_grads(amp, z, 500)
    hook.remove()
    assert seen == [torch.bfloat16]  # the UNet really ran in bfloat16
    assert eps_b.dtype == grad_b.dtype == torch.float32
    assert (eps_a - eps_b).norm() / eps_a.norm() < 0.05
    assert torch.nn.functional.cosine_similarity(grad_a.flatten(), grad_b.flatten(), dim=0) > 0.99
    x = amp.decode(z)
    assert x.dtype == torch.float32
    unet_only = random_sd_prior(seed=0, autocast_dtype=torch.bfloat16, vae_autocast_dtype=None)
    torch.testing.assert_close(unet_only.decode(z), plain.decode(z))


def test_vae_slicing_identical_with_gradients(images):
    plain = random_sd_prior(seed=0)
    sliced = random_sd_prior(seed=0, vae_slicing=True)
    assert sliced.vae.use_slicing
    x_a = images.clone().requires_grad_(True)
    x_b = images.clone().requires_grad_(True)
    za, zb = plain.encode(x_a), sliced.encode(x_b)
    torch.testing.assert_close(za, zb, rtol=1e-5, atol=1e-5)  # equal up to batch-size dependent rounding
    ya, yb = plain.decode(za), sliced.decode(zb)
    torch.testing.assert_close(ya, yb, rtol=1e-5, atol=1e-5)
    (ga,) = torch.autograd.grad(ya.sin().sum(), x_a)
    (gb,) = torch.autograd.grad(yb.sin().sum(), x_b)
    assert (ga - gb).norm() / ga.norm() < 1e-5


def test_vae_tiling_keeps_gradients_exact():
    """Tiled decode (16 px tiles for a 32 px image) is differentiable: autograd agrees with central
    differences (float64), and it really tiled (the decoder ran once per tile)."""
    prior = random_sd_prior(seed=0, vae_tiling=True, vae_tile_size=16).double()
    calls = []
    hook = prior.vae.decoder.register_forward_hook(lambda m, a, o: calls.append(a[0].shape[-1]))
    z = _latents().double().requires_grad_(True)
    direction = _latents(seed=6).double()
    loss = lambda z: prior.decode(z).sin().sum()  # noqa: E731
    (grad,) = torch.autograd.grad(loss(z), z)
    assert len(calls) == 9 and max(calls) == 4  # 3 x 3 overlapping tiles of 4 latents
    h = 1e-5
    with torch.no_grad():
        numeric = (loss(z + h * direction) - loss(z - h * direction)) / (2 * h)
    hook.remove()
    torch.testing.assert_close((grad * direction).sum(), numeric, rtol=1e-6, atol=1e-8)
    assert prior.decode(z).shape == (2, 3, 32, 32)
