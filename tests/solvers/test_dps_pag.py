"""DPS + PAG on the tiny ADM preset: the step is the formula, the data term sees the unguided x0_hat,
the perturbed pass is cheap and exact."""

import pytest
import torch

from operators import make_operator
from operators.random import generators_from_seeds
from priors import perturbed_self_attention
from priors.adm import ADMPrior
from solvers import DPS, PAG, NoisePredictor, StepContext

LAYERS = ("input_blocks.3.1", "middle_block.1")


@pytest.fixture(scope="module")
def prior():
    return ADMPrior.from_preset("test", init="random", generator=torch.Generator().manual_seed(0)).eval()


@pytest.fixture(scope="module")
def problem(prior):
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    op = make_operator("box_inpaint", image_size=32, hole=12, margin=2, generator=generators_from_seeds([0, 1, 2]))
    y = op.measure(x, generators_from_seeds([5, 6, 7]))
    return op, y


def test_pag_scale_zero_is_bit_identical_to_no_pag(prior, problem):
    op, y = problem
    base = DPS(prior, op, zeta=1.0, num_steps=4, progress=False).restore(y, generators_from_seeds([3, 4, 5]))
    zero = DPS(prior, op, zeta=1.0, num_steps=4, pag=PAG(0.0, LAYERS), progress=False).restore(
        y, generators_from_seeds([3, 4, 5])
    )
    assert torch.equal(base, zero)


@pytest.mark.parametrize("mode", ["shared_prefix", "prefix_only", "no_grad", "naive"])
def test_guided_noise_is_the_formula(prior, mode):
    x_t = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    t, s = 600, 2.5
    with torch.no_grad():
        eps = prior(x_t, t).eps
        with perturbed_self_attention(prior, LAYERS):
            eps_perturbed = prior(x_t, t).eps
    pred = NoisePredictor(prior, PAG(s, LAYERS, mode=mode))(x_t.requires_grad_(), t)
    torch.testing.assert_close(pred.eps, eps, rtol=0, atol=1e-6)
    torch.testing.assert_close(pred.eps_perturbed, eps_perturbed, rtol=0, atol=1e-6)
    torch.testing.assert_close(pred.eps_guided, eps + s * (eps - eps_perturbed), rtol=0, atol=1e-5)
    # only the reference's naive mode builds an autograd graph for the perturbed pass
    assert pred.eps_perturbed.requires_grad == (mode == "naive")
    assert pred.eps.requires_grad


def test_shared_prefix_equals_full_perturbed_pass(prior):
    x_t = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    shared = NoisePredictor(prior, PAG(1.0, ("middle_block.1",), mode="shared_prefix"))(x_t, 300)
    full = NoisePredictor(prior, PAG(1.0, ("middle_block.1",), mode="no_grad"))(x_t, 300)
    torch.testing.assert_close(shared.eps_perturbed, full.eps_perturbed, rtol=0, atol=1e-6)


def test_dps_pag_step_by_hand(prior, problem):
    """One DPS+PAG step against the DPS (Algorithm 1) and PAG (paper Sec. 4) formulas, from separate forward passes."""
    op, y = problem
    zeta, s = 0.7, 2.0
    solver = DPS(prior, op, zeta=zeta, num_steps=10, pag=PAG(s, LAYERS), progress=False)
    sched, i = solver.schedule, 3
    t = int(sched.timesteps[i])
    x_t = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(8))
    noise = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(9))

    x = x_t.clone().requires_grad_(True)
    out = prior(x, t)
    with torch.no_grad(), perturbed_self_attention(prior, LAYERS):
        eps_perturbed = prior(x_t, t).eps
    abar = sched.alphas_cumprod[i].item()
    x0_hat = ((x - (1 - abar) ** 0.5 * out.eps) / abar**0.5).clamp(-1, 1)
    eps_guided = out.eps.detach() + s * (out.eps.detach() - eps_perturbed)
    x0_guided = ((x_t - (1 - abar) ** 0.5 * eps_guided) / abar**0.5).clamp(-1, 1)
    log_var = sched.log_variance(i, x_t, "learned_range", out.var_values.detach())
    x_prime = sched.posterior_mean(i, x0_guided, x_t) + torch.exp(0.5 * log_var) * noise
    loss = sum((y[b] - op(x0_hat)[b]).norm() for b in range(3))
    expected = x_prime - zeta * torch.autograd.grad(loss, x)[0]

    got, got_x0 = solver.step(StepContext(NoisePredictor(prior, solver.pag), y, noise=noise), i, x_t)
    # float32: the shared prefix splits decoder convs into live and skip parts (priors.SkipBranch), which rounds
    # eps differently by ~1e-7, amplified by 1/sqrt(abar) in x0_hat
    torch.testing.assert_close(got, expected, rtol=0, atol=2e-5)
    torch.testing.assert_close(got_x0, x0_hat.detach(), rtol=0, atol=2e-5)


class RecordingOperator(torch.nn.Module):
    """Wraps an operator and remembers what A was applied to."""

    def __init__(self, op):
        super().__init__()
        self.op, self.inputs = op, []

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        return self.op(x)


@pytest.fixture(scope="module")
def prior64():
    return ADMPrior.from_preset("test", init="random", generator=torch.Generator().manual_seed(0)).double()


@pytest.mark.parametrize("x0_from", ["unguided", "guided"])
def test_data_term_sees_the_unguided_x0_hat(prior64, problem, x0_from):
    """Float64: at t ~ 800, 1/sqrt(abar) ~ 40 amplifies float32 rounding of eps past any sharp tolerance."""
    prior = prior64
    op, y = problem
    op, y = op.double(), y.double()
    recorder = RecordingOperator(op)
    solver = DPS(prior, op, zeta=1.0, num_steps=10, pag=PAG(3.0, LAYERS, x0_from=x0_from), progress=False)
    solver.operator = recorder
    x_t = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    noise = torch.zeros_like(x_t)
    solver.step(StepContext(NoisePredictor(prior, solver.pag), y, noise=noise), 2, x_t)
    (seen,) = recorder.inputs
    sched, t = solver.schedule, int(solver.schedule.timesteps[2])
    with torch.no_grad():
        eps = prior(x_t, t).eps
        with perturbed_self_attention(prior, LAYERS):
            eps_perturbed = prior(x_t, t).eps
    unguided = sched.predict_x0(2, x_t, eps).clamp(-1, 1)
    guided = sched.predict_x0(2, x_t, eps + 3.0 * (eps - eps_perturbed)).clamp(-1, 1)
    expected, other = (unguided, guided) if x0_from == "unguided" else (guided, unguided)
    torch.testing.assert_close(seen, expected, rtol=0, atol=1e-10)
    assert (seen - other).abs().max() > 1e-3  # the two differ, so the check above can fail


def test_batch_invariance_with_pag(prior64, problem):
    """Float64, so that what is compared is the algorithm and not float32 convolutions, whose rounding
    depends on the batch size (~2e-6 in eps, amplified by 1/sqrt(abar) ~ 150 in x0_hat at t ~ T)."""
    op, y = problem
    solver = DPS(prior64, op.double(), zeta=1.0, num_steps=5, pag=PAG(2.0, LAYERS), progress=False)
    batch = solver.restore(y.double(), generators_from_seeds([20, 21, 22]))
    for i in range(3):
        single_op = make_operator("box_inpaint", image_size=32, hole=12, margin=2, generator=generators_from_seeds([i]))
        alone = DPS(prior64, single_op.double(), zeta=1.0, num_steps=5, pag=PAG(2.0, LAYERS), progress=False).restore(
            y[i : i + 1].double(), generators_from_seeds([20 + i])
        )
        torch.testing.assert_close(batch[i : i + 1], alone, rtol=0, atol=1e-5)


def test_adaptive_scale_and_validation():
    pag = PAG(3.0, LAYERS, adaptive_scale=0.01)
    assert pag.scale_at(1000) == 3.0
    assert pag.scale_at(900) == pytest.approx(2.0)
    assert pag.scale_at(100) == 0.0
    with pytest.raises(ValueError, match="at least one"):
        PAG(1.0, ())
    with pytest.raises(ValueError, match="mode"):
        PAG(1.0, LAYERS, mode="fast")


def test_unknown_layer_fails_at_construction(prior):
    with pytest.raises(ValueError, match=r"unknown self-attention layer 'input_blocks.2.1'.*Valid layers"):
        DPS(prior, None, pag=PAG(1.0, ("input_blocks.2.1",)), progress=False).restore(
            None, generators_from_seeds([0]), batch_size=1
        )
