"""RED-diff: the official loop on a random-weight ADM (float64, same noise draws), the stationary point on a Gaussian
prior, batch invariance, where PAG enters, and the options."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from operators import Operator, make_operator
from operators.random import generators_from_seeds
from priors import GaussianPrior, NoiseSchedule, linear_operator_matrix, perturbed_self_attention
from priors.adm import ADMPrior
from solvers import PAG, REDDiff

LAYERS = ("input_blocks.3.1", "middle_block.1")


@pytest.fixture(scope="module")
def prior64():
    prior = ADMPrior.from_preset("test", init="random", generator=torch.Generator().manual_seed(0)).eval()
    return prior.double()


@pytest.fixture(scope="module")
def images():
    return torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2 - 1


def make_op(task: str, seeds=(0, 1, 2)) -> Operator:
    if task == "box_inpaint":
        op = make_operator("box_inpaint", image_size=32, hole=12, margin=2, generator=generators_from_seeds(seeds))
    else:
        op = make_operator("super_resolution", factor=4)
    return op.double()


def official_reddiff(prior, op, y, seed, *, num_steps, lam, lr, sigma_x0=0.0, pag_scale=0.0):
    """NVlabs/RED-diff ``algos/reddiff.py`` ``REDDIFF.sample`` for one image (a batch of one), written out:
    ``get_timesteps`` (skip = 1000 // N, ts = range(0, 1000, skip), run reversed), ``Diffusion.alpha(t)`` = abar_t of
    the linear schedule, mu_0 = H_pinv(y) (a dense minimum-norm least-squares solve here), ``torch.optim.Adam([mu], lr,
    betas=(0.9, 0.99))``, loss = w_t mean(sg(eps_pred - eps) x0_pred) + v mean((y - H x0_pred)^2) / 2 with
    w_t = lambda sqrt(1 - abar_t) / sqrt(abar_t), v = 1. PAG (not in the official code): eps_pred is the guided
    eps + s (eps - eps_perturbed). Noise: the chain's order (x_T first, unused; then eps per step, x0's noise after
    it). Returns mu after every step."""
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    alphas = torch.cumprod(1 - betas, dim=0)
    skip = 1000 // num_steps
    ts = list(range(0, 1000, skip))
    A = linear_operator_matrix(op, (3, 32, 32))
    g = torch.Generator().manual_seed(seed)

    def draw():  # the project's draws: float32 from the image's generator, then cast
        return torch.randn((1, 3, 32, 32), generator=g).double()

    draw()  # the chain's x_T, unused by RED-diff
    # H_pinv(y) = A^+ y, the minimum-norm least-squares solution (LAPACK gelsy: a complete orthogonal factorization,
    # the same vector as pinv(A) @ y at a quarter of pinv's SVD cost on this 3072 x 3072 matrix)
    mu_0 = torch.linalg.lstsq(A, y.flatten().unsqueeze(1), driver="gelsy").solution
    mu = mu_0.view(1, 3, 32, 32).requires_grad_(True)
    optimizer = torch.optim.Adam([mu], lr=lr, betas=(0.9, 0.99), weight_decay=0.0)
    out = []
    for t in reversed(ts):
        a = alphas[t]
        noise_xt = draw()
        noise_x0 = draw() if sigma_x0 > 0 else 0.0
        x0_pred = mu + sigma_x0 * noise_x0
        xt = a.sqrt() * x0_pred + (1 - a).sqrt() * noise_xt
        with torch.no_grad():
            et = prior(xt, t).eps
            if pag_scale > 0:
                with perturbed_self_attention(prior, LAYERS):
                    et = et + pag_scale * (et - prior(xt, t).eps)
        e_obs = y - op(x0_pred)
        loss_obs = (e_obs**2).mean() / 2
        loss_noise = torch.mul((et - noise_xt).detach(), x0_pred).mean()
        w_t = lam * (1 - a).sqrt() / a.sqrt()
        loss = w_t * loss_noise + 1.0 * loss_obs
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        out.append(mu.detach().clone())
    return out


@pytest.mark.parametrize(
    ("task", "pag_scale", "sigma_x0"),
    [
        ("box_inpaint", 0.0, 0.0),
        ("super_resolution", 0.0, 0.0),
        ("box_inpaint", 2.0, 0.0),
        ("super_resolution", 0.0, 0.01),
    ],
)
def test_chain_equals_the_official_loop(prior64, images, task, pag_scale, sigma_x0):
    """Every step's mu of a batch of 3 against the official loop run on each image alone (float64).

    Tolerance 1e-8: Adam's update g / (sqrt(v) + 1e-8) has slope up to 1 / (4e-8) where |g| ~ 1e-8, so the rounding
    of a gradient entry near 0 (the dense pseudo-inverse here against the operator's closed form, sums in another
    order) moves mu by up to ~1e-9; a change of an equation, a weight or a noise draw moves it by >= 1e-4."""
    op = make_op(task)
    y = op.measure(images, generators_from_seeds([5, 6, 7]))
    n, lam, lr = 5, 0.5, 0.05
    pag = PAG(pag_scale, LAYERS) if pag_scale else None
    solver = REDDiff(prior64, op, lam=lam, lr=lr, num_steps=n, pag=pag, sigma_x0=sigma_x0, progress=False)
    assert solver.timesteps == [800, 600, 400, 200, 0]
    seen: dict[int, torch.Tensor] = {}
    out = solver.restore(
        y, generators_from_seeds([3, 4, 5]), callback=lambda s: seen.update({s.i: s.x_t}), callback_every=1
    )
    for b in range(3):
        single = make_op(task, seeds=(b,))
        ref = official_reddiff(
            prior64, single, y[b : b + 1], 3 + b, num_steps=n, lam=lam, lr=lr, sigma_x0=sigma_x0, pag_scale=pag_scale
        )
        for i in range(n):
            torch.testing.assert_close(seen[i][b : b + 1], ref[i], rtol=0, atol=1e-8)
        torch.testing.assert_close(out[b : b + 1], ref[-1].clamp(-1, 1), rtol=0, atol=1e-8)
    assert not torch.equal(seen[0], seen[n - 1])  # the loop moves mu


def test_stationary_point_on_a_gaussian_prior(matrix_operator):
    """Gaussian prior N(m, S), a schedule held at one noise level abar = a, linear weighting.

    With x_t = sqrt(a) mu + sqrt(1 - a) eps the exact eps_pred is sqrt(1 - a) C^-1 (x_t - sqrt(a) m) with
    C = a S + (1 - a) I, so E_eps[eps_pred - eps] = sqrt(a (1 - a)) C^-1 (mu - m). The per-image loss's gradient in
    mu is then, in expectation (d pixels, p measurements, w = lambda sqrt(1 - a) / sqrt(a)):

        (v / p) A^T (A mu - y) + (w / d) sqrt(a (1 - a)) C^-1 (mu - m)
      = (v / p) A^T (A mu - y) + (lambda (1 - a) / d) C^-1 (mu - m),

    the gradient of v / (2p) ||y - A mu||^2 + lambda (1 - a) / (2d) (mu - m)^T C^-1 (mu - m), whose minimiser is

        mu* = [(v / p) A^T A + (lambda (1 - a) / d) C^-1]^-1 [(v / p) A^T y + (lambda (1 - a) / d) C^-1 m].

    Adam's mean drift vanishes there, so with a small lr and many steps mu fluctuates around mu*: the average over
    images and the last iterates must be near mu*, much nearer than the start A^+ y and than the regulariser-free
    optimum."""
    shape, d, p = (1, 4, 4), 16, 8
    g = torch.Generator().manual_seed(0)
    coords = torch.cartesian_prod(torch.arange(4.0), torch.arange(4.0)).double()
    S = 0.3 * torch.exp(-torch.cdist(coords, coords) / 2.0) + 0.05 * torch.eye(d, dtype=torch.float64)
    m = 0.2 * torch.randn(d, generator=g, dtype=torch.float64)
    a = 0.5
    betas = torch.full((1000,), 1e-14, dtype=torch.float64)
    betas[0] = 1 - a  # abar_t = a (1 - 1e-14)^t: the same level at every step
    prior = GaussianPrior(m, S, shape, schedule=NoiseSchedule(betas))
    A = torch.randn(p, d, generator=g, dtype=torch.float64) / math.sqrt(p)
    op = matrix_operator(A, noise_sigma=0.0, shape=shape).double()
    x = (m + torch.linalg.cholesky(S) @ torch.randn(d, generator=g, dtype=torch.float64)).view(1, *shape)
    y = op(x)
    lam, v = 2.0, 1.0
    C = a * S + (1 - a) * torch.eye(d, dtype=torch.float64)
    Ci = torch.linalg.inv(C)
    r = lam * (1 - a) / d
    mu_star = torch.linalg.solve(v / p * A.T @ A + r * Ci, v / p * A.T @ y.flatten() + r * Ci @ m)

    n, steps = 32, 1000
    iterates = []
    solver = REDDiff(prior, op, lam=lam, lr=2e-3, num_steps=steps, obs_weight=v, progress=False)
    solver.restore(
        y.expand(n, -1, -1, -1),
        generators_from_seeds(range(n)),
        callback=lambda s: iterates.append(s.x_t) if s.i >= steps - 300 else None,
        callback_every=1,
    )
    mu_bar = torch.stack(iterates).flatten(2).mean(dim=(0, 1))
    start = torch.linalg.pinv(A) @ y.flatten()
    error = (mu_bar - mu_star).norm()
    assert error < 0.05 * (start - mu_star).norm(), (error, (start - mu_star).norm())
    assert (mu_star - start).norm() > 0.1  # the regulariser moves the answer: the test can tell


def test_batch_of_n_equals_n_single_runs(prior64, images):
    op = make_op("box_inpaint")
    y = op.measure(images, generators_from_seeds([5, 6, 7]))
    pag = PAG(1.5, LAYERS)
    batch = REDDiff(prior64, op, num_steps=4, pag=pag, progress=False).restore(y, generators_from_seeds([10, 11, 12]))
    for i in range(3):
        alone = REDDiff(prior64, make_op("box_inpaint", seeds=(i,)), num_steps=4, pag=pag, progress=False).restore(
            y[i : i + 1], generators_from_seeds([10 + i])
        )
        torch.testing.assert_close(batch[i : i + 1], alone, rtol=0, atol=1e-12)


def test_pag_scale_zero_is_no_pag_bit_for_bit_and_x0_from_has_no_effect(prior64, images):
    op = make_op("super_resolution")
    y = op.measure(images, generators_from_seeds([5, 6, 7]))

    def run(pag):
        return REDDiff(prior64, op, num_steps=4, pag=pag, progress=False).restore(y, generators_from_seeds([3, 4, 5]))

    base = run(None)
    assert torch.equal(base, run(PAG(0.0, LAYERS)))
    guided = run(PAG(2.0, LAYERS))
    assert torch.equal(guided, run(PAG(2.0, LAYERS, x0_from="guided")))
    assert (guided - base).abs().max() > 1e-4  # PAG changes the regulariser


class Square(Operator):
    """A nonlinear, differentiable operator (no adjoint, no pseudo-inverse)."""

    def forward(self, x):
        return x * x


def test_init_and_nonlinear_operators(prior64, images):
    op = make_op("box_inpaint")
    y = op.measure(images, generators_from_seeds([5, 6, 7]))
    seen = {}

    def first(init):
        REDDiff(prior64, op, num_steps=2, init=init, lr=1e-12, progress=False).restore(
            y, generators_from_seeds([3, 4, 5]), callback=lambda s: seen.setdefault(init, s.x0_hat), callback_every=1
        )
        return seen[init]

    torch.testing.assert_close(first("auto"), op.observed_mask * y, rtol=0, atol=0)  # A^+ y = m y
    assert torch.equal(first("measurement"), y)
    assert torch.equal(first("zeros"), torch.zeros_like(y))
    x_T = torch.randn((3, 32, 32), generator=torch.Generator().manual_seed(3)).double()
    torch.testing.assert_close(first("x_T")[0], x_T, rtol=0, atol=0)

    blur = make_operator("gaussian_blur", kernel_size=9, sigma=1.0).double()
    sr = make_op("super_resolution")
    assert REDDiff(prior64, blur, progress=False).resolved_init(y, y) == "measurement"  # not the noisy A^+ y
    assert REDDiff(prior64, sr, progress=False).resolved_init(sr(y), y) == "pinv"  # the official SR start

    square = Square().double()
    with pytest.raises(ValueError, match="init='pinv' needs a linear operator"):
        REDDiff(prior64, square, init="pinv", progress=False)
    x = REDDiff(prior64, square, num_steps=3, progress=False).restore(square(images), generators_from_seeds([0, 1, 2]))
    assert torch.isfinite(x).all()


def test_weights_are_the_official_functions_of_snr_inv(prior64):
    op = make_op("super_resolution")
    abar = NoiseSchedule.linear().alphas_cumprod
    expected = {
        "linear": lambda s: s,
        "sqrt": math.sqrt,
        "square": lambda s: s * s,
        "log": lambda s: math.log(1 + s),
        "trunc_linear": lambda s: min(s, 1.0),
        "power2over3": lambda s: s ** (2 / 3),
        "const": lambda s: 1.0,
    }
    for kind, f in expected.items():
        solver = REDDiff(prior64, op, lam=0.3, num_steps=10, weight=kind, progress=False)
        for i, t in enumerate(solver.timesteps):
            snr_inv = math.sqrt((1 - float(abar[t])) / float(abar[t]))
            assert solver.w(i) == pytest.approx(0.3 * f(snr_inv), rel=1e-12), (kind, t)
    with pytest.raises(ValueError, match="weight must be one of"):
        REDDiff(prior64, op, weight="cubic", progress=False)


def test_float32_runs_and_is_deterministic(prior64, images):
    prior = copy.deepcopy(prior64).float()
    op = make_operator("gaussian_blur", kernel_size=9, sigma=1.0)
    y = op.measure(images.float(), generators_from_seeds([5, 6, 7]))
    runs = [
        REDDiff(prior, op, num_steps=3, progress=False).restore(y, generators_from_seeds([1, 2, 3])) for _ in range(2)
    ]
    assert runs[0].dtype == torch.float32 and torch.equal(runs[0], runs[1])
