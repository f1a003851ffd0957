"""The noise schedule against closed forms and against diffusers' independent schedulers."""

import math

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from priors import NoiseSchedule


def test_linear_schedule_matches_ddpm_constants():
    s = NoiseSchedule.linear()
    assert s.num_train_timesteps == 1000
    assert s.betas[0].item() == pytest.approx(1e-4) and s.betas[-1].item() == pytest.approx(0.02)
    # closed form: abar_T = prod(1 - beta_t) with betas linear; DDPM's widely quoted abar_T ~ 4.04e-5
    expected = math.prod(1 - (1e-4 + (0.02 - 1e-4) * i / 999) for i in range(1000))
    assert s.alphas_cumprod[-1].item() == pytest.approx(expected, rel=1e-9)
    assert s.alphas_cumprod[-1].item() == pytest.approx(4.04e-5, rel=1e-2)


@pytest.mark.parametrize("kind", ["linear", "scaled_linear"])
def test_schedules_match_diffusers(kind):
    ours = NoiseSchedule.linear() if kind == "linear" else NoiseSchedule.scaled_linear()
    theirs = DDPMScheduler(
        beta_schedule=kind,
        **({} if kind == "linear" else {"beta_start": 0.00085, "beta_end": 0.012}),
    )
    torch.testing.assert_close(ours.alphas_cumprod.float(), theirs.alphas_cumprod, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(
        NoiseSchedule.from_diffusers(theirs).alphas_cumprod, ours.alphas_cumprod, rtol=1e-5, atol=0
    )


def test_tweedie_inverts_the_forward_process(generator):
    s = NoiseSchedule.linear()
    sched = s.sampling(s.timesteps(50))
    x0 = torch.rand(2, 3, 8, 8, generator=generator, dtype=torch.float64) * 2 - 1
    eps = torch.randn(x0.shape, generator=generator, dtype=torch.float64)
    for i in range(len(sched)):
        x_t = sched.add_noise(i, x0, eps)
        torch.testing.assert_close(
            sched.predict_x0(i, x_t, eps), x0, rtol=0, atol=1e-9 / sched.alphas_cumprod[i].sqrt().item()
        )
        torch.testing.assert_close(sched.predict_eps(i, x_t, x0), eps, rtol=0, atol=1e-8)


def test_even_respacing_is_guided_diffusions():
    s = NoiseSchedule.linear()
    assert s.timesteps(1000) == list(range(999, -1, -1))
    ts = s.timesteps(250)
    # space_timesteps(1000, [250]): round(i * 999 / 249) for i < 250, independent recomputation
    assert ts == sorted((round(i * 999 / 249) for i in range(250)), reverse=True)
    assert ts[0] == 999 and ts[-1] == 0 and len(set(ts)) == 250
    sched = s.sampling(ts)
    # respaced betas: 1 - abar_t / abar_prev, and abar is preserved at the kept steps
    abar = s.alphas_cumprod
    torch.testing.assert_close(sched.alphas_cumprod, abar[ts])
    torch.testing.assert_close(sched.betas[:-1], 1 - abar[ts[:-1]] / abar[ts[1:]])


def test_leading_spacing_matches_diffusers_ddim():
    s = NoiseSchedule.scaled_linear()
    ddim = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1)
    ddim.set_timesteps(50)
    assert s.timesteps(50, spacing="leading", offset=1) == ddim.timesteps.tolist()


def test_ddpm_step_matches_diffusers_learned_range(generator):
    """Our respaced DDPM ancestral step (x0 clipped, learned-range variance) against DDPMScheduler.step."""
    s = NoiseSchedule.linear()
    ts = s.timesteps(20)
    sched = s.sampling(ts)
    ref = DDPMScheduler(beta_schedule="linear", variance_type="learned_range", clip_sample=True)
    ref.set_timesteps(timesteps=ts)
    x_t = torch.randn(2, 3, 4, 4, generator=generator, dtype=torch.float64)
    eps = torch.randn(x_t.shape, generator=generator, dtype=torch.float64)
    v = torch.rand(x_t.shape, generator=generator, dtype=torch.float64) * 2 - 1
    for i in [0, 5, 18]:  # not the last step, where diffusers and guided-diffusion both add no noise
        t = ts[i]
        # diffusers draws its noise with randn_tensor from the generator we pass: draw the same numbers
        noise = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(i), dtype=torch.float32)
        x0 = sched.predict_x0(i, x_t, eps).clamp(-1, 1)
        log_var = sched.log_variance(i, x_t, "learned_range", v)
        ours = sched.ddpm_step(i, x0, x_t, noise.double(), log_var)
        theirs = ref.step(
            torch.cat([eps, v], 1).float(), t, x_t.float(), generator=torch.Generator().manual_seed(i)
        ).prev_sample
        torch.testing.assert_close(ours.float(), theirs, rtol=1e-4, atol=1e-5)


def test_ddim_eta0_is_deterministic_and_matches_diffusers(generator):
    s = NoiseSchedule.scaled_linear()
    ts = s.timesteps(10, spacing="leading", offset=1)
    sched = s.sampling(ts, final_alpha_cumprod=float(s.alphas_cumprod[0]))
    ref = DDIMScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        steps_offset=1,
        set_alpha_to_one=False,
        clip_sample=False,
    )
    ref.set_timesteps(10)
    x_t = torch.randn(1, 4, 8, 8, generator=generator, dtype=torch.float64)
    eps = torch.randn(x_t.shape, generator=generator, dtype=torch.float64)
    for i, t in enumerate(ts):
        x0 = sched.predict_x0(i, x_t, eps)
        a = sched.ddim_step(i, x0, eps, eta=0.0)
        b = sched.ddim_step(i, x0, eps, eta=0.0)
        assert torch.equal(a, b)
        theirs = ref.step(eps.float(), t, x_t.float(), eta=0.0).prev_sample
        torch.testing.assert_close(a.float(), theirs, rtol=1e-4, atol=1e-5)


def test_ddim_sigma_eta1_equals_ddpm_posterior_std():
    """Song et al.: with eta = 1 the DDIM noise level is the DDPM posterior standard deviation."""
    s = NoiseSchedule.linear()
    sched = s.sampling(s.timesteps(100))
    for i in [0, 50, 98]:
        torch.testing.assert_close(sched.ddim_sigma(i, 1.0) ** 2, sched.posterior_variance[i])


def test_bad_arguments_raise():
    s = NoiseSchedule.linear()
    with pytest.raises(ValueError, match="between 1 and 1000"):
        s.timesteps(0)
    with pytest.raises(ValueError, match="spacing"):
        s.timesteps(10, spacing="bogus")
    with pytest.raises(ValueError, match="decreasing"):
        s.sampling([1, 2, 3])
    with pytest.raises(ValueError, match="betas"):
        NoiseSchedule(torch.tensor([0.5, 1.5]))
