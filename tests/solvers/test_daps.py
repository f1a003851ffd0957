"""DAPS / LatentDAPS on random-weight tiny priors: one annealing step is the official algorithm's equations
(zhangbingliang2019/DAPS: sampler.py DAPS.sample, cores/scheduler.py EDMScheduler + DiffusionPFODE Euler,
cores/mcmc.py Langevin / HMC, model/precond.py VPPrecond), written here from those equations; PAG enters the ODE;
batch invariance; no autograd graph survives a step; priors of the wrong kind are refused."""

import gc
import math

import pytest
import torch

from operators import make_operator
from operators.random import generators_from_seeds
from priors import perturbed_self_attention
from priors.adm import ADMPrior
from solvers import PAG, StepContext
from solvers.daps import DAPS, LatentDAPS

LAYERS = ("input_blocks.3.1", "middle_block.1")
SD_LAYER = "input_blocks.8.1.transformer_blocks.0.attn1"


@pytest.fixture(scope="module")
def prior():
    return ADMPrior.from_preset("test", init="random", generator=torch.Generator().manual_seed(0)).eval()


@pytest.fixture(scope="module")
def sd_prior():
    from priors.sd import random_sd_prior

    return random_sd_prior(seed=0, image_size=32)


@pytest.fixture(scope="module")
def problem():
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    op = make_operator("box_inpaint", image_size=32, hole=12, margin=2, generator=generators_from_seeds([0, 1]))
    return op, op.measure(x, generators_from_seeds([5, 6]))


# -- the reference: the official equations, written independently -------------------------------------------------
def training_sigmas(num_train=1000):
    betas = torch.linspace(1e-4, 0.02, num_train, dtype=torch.float64)  # guided-diffusion's linear schedule
    abar = torch.cumprod(1 - betas, 0)
    return ((1 - abar) / abar).sqrt()


def snap(sigma, table):
    """Nearest training timestep in log sigma (our integer-timestep stand-in for VPPrecond's 999 t(sigma))."""
    return int((table.log() - math.log(sigma)).abs().argmin())


def edm_grid(sigma_max, sigma_min, n, rho=7):
    return [
        (sigma_max ** (1 / rho) + k / n * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
        for k in range(n + 1)
    ]


def reference_step(
    net_eps,
    x,
    i,
    y,
    op,
    gens,
    *,
    N,
    ode_steps,
    K,
    lr,
    tau,
    ratio,
    algo,
    momentum,
    clip,
    table,
    sigma_max,
    sigma_min,
    ode_sigma_min,
    decode=lambda z: z,
    eps_last=None,
):
    """One iteration of DAPS.sample: PF-ODE (Euler, EDM sigma(t) = t, s(t) = 1) -> MCMC -> forward diffusion."""
    levels = [table[snap(s, table)].item() for s in edm_grid(sigma_max, sigma_min, N)[:-1]] + [0.0]
    sigma = levels[i]
    ode = []
    for s in edm_grid(sigma, ode_sigma_min, ode_steps):
        t = snap(s, table)
        if not ode or ode[-1] != t:
            ode.append(t)
    with torch.no_grad():
        for k in range(len(ode) - 1):
            t, s, s_next = ode[k], table[ode[k]].item(), table[ode[k + 1]].item()
            eps_fn = eps_last if (k == len(ode) - 2 and eps_last is not None) else net_eps
            D = x - s * eps_fn(x / math.sqrt(s**2 + 1), t)  # VPPrecond: c_skip 1, c_out -sigma, c_in 1/sqrt(1+s^2)
            x = x + (s_next - s) * (x - D) / s  # derivative = -sigma score = (x - D) / sigma
    x0hat = x
    lr_i = lr * (1 + i / (N + 1) * (ratio - 1))

    def randn():
        return torch.cat([torch.randn(1, *x.shape[1:], generator=g) for g in gens])

    v = randn() if algo == "hmc" else None
    xm = x0hat.clone()
    for _ in range(K):
        xg = xm.clone().requires_grad_(True)
        grad = torch.autograd.grad(((op(decode(xg)) - y) ** 2).flatten(1).sum(-1).sum(), xg)[0]
        if clip is not None:
            grad = grad.clamp(-clip, clip)
        score = -grad / tau**2 + (xm - xm) + (x0hat - xm) / sigma**2  # data + (x_t - x)/s^2 + (x0hat - x_t)/s^2
        eps = randn()
        if algo == "langevin":
            xm = xm + lr_i * score + math.sqrt(2 * lr_i) * eps
        else:
            v = momentum * v + math.sqrt(lr_i) * score + math.sqrt(2 * (1 - momentum)) * eps
            xm = xm + v * math.sqrt(lr_i)
    return xm + randn() * levels[i + 1], x0hat


SETTINGS = dict(
    N=10, ode_steps=3, K=4, lr=1e-4, tau=0.05, ratio=0.3, sigma_max=100.0, sigma_min=0.1, ode_sigma_min=0.01
)


def make_daps(prior, op, algo="langevin", pag=None, **overrides):
    s = {**SETTINGS, **overrides}
    return DAPS(
        prior,
        op,
        lr=s["lr"],
        tau=s["tau"],
        num_steps=s["N"],
        ode_steps=s["ode_steps"],
        mcmc_steps=s["K"],
        lr_min_ratio=s["ratio"],
        sigma_max=s["sigma_max"],
        sigma_min=s["sigma_min"],
        ode_sigma_min=s["ode_sigma_min"],
        mc_algo=algo,
        momentum=0.7,
        pag=pag,
        progress=False,
    )


@pytest.mark.parametrize("algo", ["langevin", "hmc"])
def test_one_annealing_step_is_the_official_equations(prior, problem, algo):
    op, y = problem
    solver = make_daps(prior, op, algo)
    i = 3
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * solver.sigmas[i]
    x_next, x0_hat = solver.step(StepContext(solver.predictor(), y, generators_from_seeds([7, 8])), i, x)

    def net_eps(x_vp, t):
        return prior(x_vp, t).eps

    ref_next, ref_x0hat = reference_step(
        net_eps,
        x,
        i,
        y,
        op,
        generators_from_seeds([7, 8]),
        algo=algo,
        momentum=0.7,
        clip=None,
        table=training_sigmas(),
        **SETTINGS,
    )
    # float32 rounding of the network, amplified by sigma_i in D = x - sigma eps (and by the shared prefix of PAG)
    tol = 1e-5 * solver.sigmas[i]
    torch.testing.assert_close(x0_hat, ref_x0hat, rtol=0, atol=tol)
    torch.testing.assert_close(x_next, ref_next, rtol=0, atol=tol)
    assert not torch.equal(x_next, x0_hat)  # the MCMC and the re-noising moved it


def test_grid_and_nfe(prior, problem):
    op, _ = problem
    solver = DAPS(prior, op, progress=False)  # DAPS-1K
    table = training_sigmas()
    expected = [table[snap(s, table)].item() for s in edm_grid(100.0, 0.1, 200)[:-1]]
    assert solver.sigmas[:-1] == pytest.approx(expected) and solver.sigmas[-1] == 0
    assert len(solver.sigmas) == 201 and solver.nfe == 1000  # 200 x 5: no level repeats after snapping here


@pytest.mark.parametrize("x0_from", ["unguided", "guided"])
def test_pag_enters_the_ode_drift(prior, problem, x0_from):
    """Guided eps in every Euler step but the last; the last (the jump to x0_hat) per pag.x0_from."""
    op, y = problem
    s = 2.0
    pag = PAG(s, LAYERS, x0_from=x0_from)
    solver = make_daps(prior, op, pag=pag)
    i = 2
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * solver.sigmas[i]
    x_next, x0_hat = solver.step(StepContext(solver.predictor(), y, generators_from_seeds([7, 8])), i, x)

    def guided_eps(x_vp, t):
        eps = prior(x_vp, t).eps
        with perturbed_self_attention(prior, list(LAYERS)):
            eps_perturbed = prior(x_vp, t).eps
        return eps + s * (eps - eps_perturbed)

    def plain_eps(x_vp, t):
        return prior(x_vp, t).eps

    ref_next, ref_x0hat = reference_step(
        guided_eps,
        x,
        i,
        y,
        op,
        generators_from_seeds([7, 8]),
        algo="langevin",
        momentum=0.7,
        clip=None,
        table=training_sigmas(),
        eps_last=plain_eps if x0_from == "unguided" else None,
        **SETTINGS,
    )
    # float32 rounding of the network, amplified by sigma_i in D = x - sigma eps (and by the shared prefix of PAG)
    tol = 1e-5 * solver.sigmas[i]
    torch.testing.assert_close(x0_hat, ref_x0hat, rtol=0, atol=tol)
    torch.testing.assert_close(x_next, ref_next, rtol=0, atol=tol)
    plain = make_daps(prior, op)
    unguided, _ = plain.step(StepContext(plain.predictor(), y, generators_from_seeds([7, 8])), i, x)
    assert (x_next - unguided).abs().max() > 1e-3  # PAG changed the step


def test_pag_scale_zero_is_no_pag(prior, problem):
    op, y = problem
    base = make_daps(prior, op, N=4).restore(y, generators_from_seeds([3, 4]))
    zero = make_daps(prior, op, N=4, pag=PAG(0.0, LAYERS)).restore(y, generators_from_seeds([3, 4]))
    assert torch.equal(base, zero)


def test_batch_invariance(prior, problem):
    op, y = problem
    solver = make_daps(prior, op, N=4, pag=PAG(1.0, LAYERS))
    both = solver.restore(y, generators_from_seeds([3, 4]))
    ops = [
        make_operator("box_inpaint", image_size=32, hole=12, margin=2, generator=generators_from_seeds([k]))
        for k in (0, 1)
    ]
    for k in range(2):
        alone = make_daps(prior, ops[k], N=4, pag=PAG(1.0, LAYERS)).restore(
            y[k : k + 1], generators_from_seeds([3 + k])
        )
        torch.testing.assert_close(both[k : k + 1], alone, rtol=0, atol=2e-4)  # conv rounding by batch size


def _live_tensors() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if issubclass(type(o), torch.Tensor))


def test_memory_is_flat_over_steps(prior, problem):
    """No autograd graph and no tensor survives an annealing step: the live-tensor count is the same after every
    step, and the iterates carry no graph."""
    op, y = problem
    counts = []

    def callback(info):
        assert info.x_t.grad_fn is None and not info.x_t.requires_grad and info.x0_hat.grad_fn is None
        counts.append(_live_tensors())

    make_daps(prior, op, N=6, pag=PAG(1.0, LAYERS)).restore(
        y, generators_from_seeds([3, 4]), callback=callback, callback_every=1
    )
    assert len(counts) == 6 and len(set(counts[1:])) == 1, counts


def test_unconditional_sampling_runs(prior):
    out = make_daps(prior, None, N=3).restore(None, generators_from_seeds([0, 1]), batch_size=2)
    assert out.shape == (2, 3, 32, 32) and out.abs().max() <= 1


def test_priors_of_the_wrong_kind_are_refused(prior, sd_prior, problem):
    op, _ = problem
    with pytest.raises(ValueError, match="LatentDAPS"):
        DAPS(sd_prior, op)
    with pytest.raises(ValueError, match="latent priors"):
        LatentDAPS(prior, op)
    with pytest.raises(ValueError, match="mc_algo"):
        DAPS(prior, op, mc_algo="mala")


# -- LatentDAPS ------------------------------------------------------------------------------------------------------
LATENT = dict(N=6, ode_steps=2, K=3, lr=1e-4, tau=0.05, ratio=1.0, sigma_max=10.0, sigma_min=0.1, ode_sigma_min=0.001)


def make_latent(sd_prior, op, pag=None, N=6):
    s = LATENT
    return LatentDAPS(
        sd_prior,
        op,
        lr=s["lr"],
        tau=s["tau"],
        num_steps=N,
        ode_steps=s["ode_steps"],
        mcmc_steps=s["K"],
        lr_min_ratio=s["ratio"],
        momentum=0.45,
        pag=pag,
        progress=False,
    )


@pytest.fixture(scope="module")
def latent_problem():
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    op = make_operator("gaussian_blur", kernel_size=9, sigma=1.0)
    return op, op.measure(x, generators_from_seeds([3, 4]))


def test_latent_step_is_the_official_equations(sd_prior, latent_problem):
    """LatentDAPS: ODE on latents, HMC on latents through the decoder with the gradient clamped to [-1, 1]."""
    op, y = latent_problem
    solver = make_latent(sd_prior, op)
    assert solver.mc_algo == "hmc" and solver.grad_clip == 1.0
    i = 2
    x = torch.randn(2, *sd_prior.sample_shape, generator=torch.Generator().manual_seed(2)) * solver.sigmas[i]
    x_next, z0_hat = solver.step(StepContext(solver.predictor(), y, generators_from_seeds([7, 8])), i, x)

    abar = sd_prior.schedule.alphas_cumprod
    table = ((1 - abar) / abar).sqrt()
    ref_next, ref_z0hat = reference_step(
        lambda z, t: sd_prior(z, t).eps,
        x,
        i,
        y,
        op,
        generators_from_seeds([7, 8]),
        algo="hmc",
        momentum=0.45,
        clip=1.0,
        table=table,
        decode=sd_prior.decode,
        **LATENT,
    )
    torch.testing.assert_close(z0_hat, ref_z0hat, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x_next, ref_next, rtol=1e-4, atol=1e-5)


def test_latent_batch_invariance_and_pag_zero(sd_prior, latent_problem):
    op, y = latent_problem
    pag = PAG(1.0, (SD_LAYER,))
    both = make_latent(sd_prior, op, pag, N=3).restore(y, generators_from_seeds([3, 4]))
    assert both.shape == (2, 3, 32, 32)
    alone = make_latent(sd_prior, op, pag, N=3).restore(y[1:], generators_from_seeds([4]))
    torch.testing.assert_close(both[1:], alone, rtol=1e-4, atol=1e-4)
    base = make_latent(sd_prior, op, N=3).restore(y, generators_from_seeds([3, 4]))
    zero = make_latent(sd_prior, op, PAG(0.0, (SD_LAYER,)), N=3).restore(y, generators_from_seeds([3, 4]))
    assert torch.equal(base, zero)
