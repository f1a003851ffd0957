"""The nonlinear operators against their references' formulas, written here independently of operators/:

- phase retrieval: DPS's ``PhaseRetrievalOperator`` (guided_diffusion/measurements.py) and DAPS's ``PhaseRetrieval``
  (forward_operator/__init__.py), both through fastMRI's ``fft2c_new`` (ifftshift, orthonormal FFT, fftshift);
- HDR: DAPS's ``HighDynamicRange``: clip(scale x, -1, 1);
- the learned blur: bkse's KernelWizard ``adaptKernel`` (models/kernel_encoding/kernel_wizard.py and the
  backbones it builds on) as plain functional code reading the state dict by its published key names.

Gradients by finite differences (``torch.autograd.gradcheck`` in float64), batch invariance, and the weights file:
random weights in the published state-dict format load strictly; a missing file is a one-line error.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from operators import (
    OPERATORS,
    BlurWeightsMissing,
    GaussianNoise,
    HighDynamicRange,
    KernelWizard,
    KernelWizardOptions,
    NonlinearBlur,
    PhaseRetrieval,
    generators_from_seeds,
    load_kernel_wizard,
    make_operator,
)

NONLINEAR = ("phase_retrieval", "hdr", "nonlinear_blur")
#: a small KernelWizard (same layout, fewer channels and blocks) for gradients in float64
SMALL = KernelWizardOptions(nf=4, front_RBs=1, back_RBs=1, kernel_dim=32, extractor_blocks=1)


def images(seed: int, shape=(2, 3, 16, 16), dtype=torch.float64) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 2 - 1


def test_registered_nonlinear_and_without_algebra():
    for name in NONLINEAR:
        assert name in OPERATORS and OPERATORS[name].name == name
        assert OPERATORS[name].is_linear is False
    op = PhaseRetrieval(image_size=8)
    x = images(0, (1, 3, 8, 8))
    with pytest.raises(NotImplementedError):
        op.adjoint(op(x))
    with pytest.raises(NotImplementedError, match="linear"):
        op.prox_l2(op(x), x, 1.0)
    with pytest.raises(NotImplementedError, match="linear"):
        op.pinv(op(x))


# -- phase retrieval ---------------------------------------------------------------------------------------------
def fft2c_magnitude(x: torch.Tensor) -> torch.Tensor:
    """|fftshift(fft2(ifftshift(x), norm="ortho"))| over the last two dims (fastMRI's fft2c_new)."""
    dims = (-2, -1)
    return torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(x, dim=dims), norm="ortho"), dim=dims).abs()


def test_phase_retrieval_padding_is_the_references_at_256_px():
    for convention in ("dps", "daps"):
        assert PhaseRetrieval(oversample=2.0, image_size=256, convention=convention).pad == 64  # int(2 / 8 * 256)
    assert PhaseRetrieval(oversample=2.0, image_size=32).pad == 8
    assert PhaseRetrieval().noise_sigma == 0.05  # both references' sigma


@pytest.mark.parametrize("convention", ["dps", "daps"])
def test_phase_retrieval_matches_the_reference_formula(convention):
    x = images(1)
    op = PhaseRetrieval(oversample=2.0, image_size=16, convention=convention)
    pad = int(2.0 / 8.0 * 16)
    source = x if convention == "dps" else x * 0.5 + 0.5  # DAPS maps [-1, 1] to [0, 1] first
    expected = fft2c_magnitude(F.pad(source, (pad, pad, pad, pad)))
    y = op(x)
    assert y.shape == (2, 3, 16 + 2 * pad, 16 + 2 * pad) and y.dtype == torch.float64
    torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12)
    # Parseval (orthonormal DFT): the measurement keeps the padded image's energy
    torch.testing.assert_close(y.pow(2).sum(dim=(-2, -1)), source.pow(2).sum(dim=(-2, -1)), rtol=1e-12, atol=0)


def test_phase_retrieval_conventions_differ_and_float32_stays_float32():
    x = images(2, dtype=torch.float32)
    dps, daps = PhaseRetrieval(image_size=16)(x), PhaseRetrieval(image_size=16, convention="daps")(x)
    assert dps.dtype == torch.float32 and (dps - daps).abs().max() > 0.1
    # the DC term of the DAPS convention is sum((x + 1) / 2) / sqrt(N) per channel, N the padded size (24 x 24)
    dc = daps[..., 12, 12]
    torch.testing.assert_close(dc, ((x + 1) / 2).sum(dim=(-2, -1)) / 24, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="convention"):
        PhaseRetrieval(convention="fienup")


# -- HDR ---------------------------------------------------------------------------------------------------------
def test_hdr_matches_daps_formula():
    x = images(3)
    op = HighDynamicRange(scale=2.0)
    expected = torch.where(2 * x > 1, torch.ones_like(x), torch.where(2 * x < -1, -torch.ones_like(x), 2 * x))
    torch.testing.assert_close(op(x), expected, rtol=0, atol=0)
    assert make_operator("hdr").scale == 2.0 and op.noise_sigma == 0.05
    with pytest.raises(ValueError, match="scale"):
        HighDynamicRange(scale=0)


# -- gradients and batch invariance -------------------------------------------------------------------------------
def test_phase_retrieval_gradient_by_finite_differences():
    for convention in ("dps", "daps"):
        op = PhaseRetrieval(image_size=6, convention=convention)
        x = images(4, (1, 2, 6, 6)).requires_grad_()
        assert torch.autograd.gradcheck(op, (x,), eps=1e-6, atol=1e-6)


def test_hdr_gradient_by_finite_differences():
    x = images(5, (1, 2, 5, 5))
    x = torch.where((x.abs() - 0.5).abs() < 0.05, x * 0.8, x).requires_grad_()  # away from the kinks |x| = 1/2
    assert torch.autograd.gradcheck(HighDynamicRange(2.0), (x,), eps=1e-6, atol=1e-6)
    (grad,) = torch.autograd.grad(HighDynamicRange(2.0)(x).sum(), x)
    torch.testing.assert_close(grad, torch.where(x.abs() < 0.5, 2.0, 0.0).double())  # scale inside, 0 clipped


def directional(op, x0: torch.Tensor, seed: int, k: int = 3):
    """t -> <w, op(x0 + sum_i t_i d_i)>: a scalar function of k numbers, whose finite differences check op's VJP
    along k random directions (a full Jacobian of an image-to-image network is too large for gradcheck)."""
    g = torch.Generator().manual_seed(seed)
    directions = torch.randn((k, *x0.shape), generator=g, dtype=x0.dtype) * 0.1
    w = torch.randn(op(x0).shape, generator=g, dtype=x0.dtype)
    return lambda t: (w * op(x0 + torch.einsum("k,k...->...", t, directions))).sum()


def test_nonlinear_blur_gradient_by_finite_differences():
    network = random_weights(KernelWizard(SMALL), seed=0, std=0.1).double()
    op = NonlinearBlur(network=network, image_size=128, generator=generators_from_seeds([0])).double()
    x0 = images(6, (1, 3, 128, 128)) * 0.4  # inside [-1, 1] after the blur: away from the output clamp
    t = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(directional(op, x0, seed=7), (t,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", NONLINEAR)
def test_batch_invariance(name):
    """Image i of a batch measures as image i alone (per-image kernel codes for the learned blur)."""
    x = images(8, (3, 3, 128, 128), dtype=torch.float32) * 0.5

    def build(seeds):
        if name == "nonlinear_blur":
            return NonlinearBlur(network=SMALL_NETWORK, image_size=128, generator=generators_from_seeds(seeds))
        return make_operator(name, **({"image_size": 128} if name == "phase_retrieval" else {}))

    batched = build([10, 11, 12])(x)
    for i in range(3):
        torch.testing.assert_close(batched[i : i + 1], build([10 + i])(x[i : i + 1]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NONLINEAR)
def test_wrong_rank_is_a_clear_error(name):
    kwargs = {"nonlinear_blur": dict(network=SMALL_NETWORK, image_size=128, generator=torch.Generator())}
    op = make_operator(name, **kwargs.get(name, {}))
    for bad in (torch.zeros(3, 128, 128), torch.zeros(1, 1, 3, 128, 128)):
        with pytest.raises(ValueError, match="rank"):
            op(bad)


# -- the learned blur ---------------------------------------------------------------------------------------------
def random_weights(network: KernelWizard, seed: int, std: float = 0.02) -> KernelWizard:
    """Every tensor of the state dict redrawn ~ N(0, std^2) (moderate activations through 30 residual blocks)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in network.state_dict().values():
            tensor.copy_(torch.randn(tensor.shape, generator=g) * std)
    return network


SMALL_NETWORK = random_weights(KernelWizard(SMALL), seed=1, std=0.1)


@pytest.fixture(scope="module")
def published():
    """A KernelWizard with random weights in the published GOPRO_wVAE.pth format (default options)."""
    return random_weights(KernelWizard(), seed=2)


def test_state_dict_has_the_published_layout(published):
    """Key names and shapes of bkse's KernelWizard with options/generate_blur/default.yml (nf 64, 10 + 20 residual
    blocks, kernel_dim 512 with the VAE, norm none: convs without bias except bkse's biased ones)."""
    state = published.state_dict()
    expected_shapes = {
        "feature_extractor.0.weight": (64, 3, 3, 3),
        "feature_extractor.0.bias": (64,),
        "feature_extractor.4.weight": (64, 64, 3, 3),
        "feature_extractor.15.conv2.bias": (64,),
        "kernel_extractor.model.1.weight": (64, 128, 7, 7),  # 2 nf in (sharp and blurred features), no bias
        "kernel_extractor.model.4.weight": (128, 64, 3, 3),
        "kernel_extractor.model.16.weight": (1024, 1024, 3, 3),  # channels capped at 2 * kernel_dim
        "kernel_extractor.model.22.conv_block.5.weight": (1024, 1024, 3, 3),
        "adapter.model.down.0.weight": (64, 64, 4, 4),
        "adapter.model.up.1.weight": (128, 64, 4, 4),
        "adapter.model.up.1.bias": (64,),
        "adapter.model.submodule.down.1.weight": (128, 64, 4, 4),
        "adapter.model.submodule.up.1.weight": (256, 64, 4, 4),
        "adapter.model.submodule.submodule.submodule.submodule.down.1.weight": (512, 512, 4, 4),
        "adapter.model.submodule.submodule.submodule.submodule.up.1.weight": (1024, 512, 4, 4),
        "recon_trunk.19.conv1.weight": (64, 64, 3, 3),
        "recon_trunk.20.weight": (256, 64, 3, 3),
        "recon_trunk.23.weight": (256, 64, 3, 3),
        "recon_trunk.26.weight": (64, 64, 3, 3),
        "recon_trunk.28.weight": (3, 64, 3, 3),
        "recon_trunk.28.bias": (3,),
    }
    for key, shape in expected_shapes.items():
        assert tuple(state[key].shape) == shape, key
    for key in ("kernel_extractor.model.1.bias", "adapter.model.down.0.bias", "adapter.model.submodule.up.1.bias"):
        assert key not in state
    # feature extractor 3 convs + 10 blocks x 4; kernel extractor 1 + 5 convs + 4 blocks x 2; U-Net 3 + 3 x 2 + 2;
    # reconstruction 20 blocks x 4 + 4 convs x 2
    assert len(state) == (6 + 40) + (6 + 8) + (3 + 6 + 2) + (80 + 8) == 159


def reference_adapt_kernel(state: dict, x: torch.Tensor, code: torch.Tensor, front: int, back: int) -> torch.Tensor:
    """bkse's ``KernelWizard.adaptKernel`` in functional form, from the state dict by key name."""

    def conv(h, key, stride=1):
        return F.conv2d(h, state[f"{key}.weight"], state.get(f"{key}.bias"), stride, 1)

    def residual(h, key):  # ResidualBlock_noBN
        return h + conv(F.relu(conv(h, f"{key}.conv1")), f"{key}.conv2")

    h = F.leaky_relu(conv(x, "feature_extractor.0"), 0.1)
    h = F.leaky_relu(conv(h, "feature_extractor.2", 2), 0.1)
    h = F.leaky_relu(conv(h, "feature_extractor.4", 2), 0.1)
    for i in range(front):
        h = residual(h, f"feature_extractor.{6 + i}")

    def unet(level: int, h: torch.Tensor) -> torch.Tensor:  # UnetSkipConnectionBlock, norm none, 5 levels
        key = "adapter.model" + ".submodule" * level
        if level == 0:  # outermost: conv down, ReLU, transposed conv with bias, tanh; no skip
            down = F.conv2d(h, state[f"{key}.down.0.weight"], None, 2, 1)
            up = F.conv_transpose2d(F.relu(unet(1, down)), state[f"{key}.up.1.weight"], state[f"{key}.up.1.bias"], 2, 1)
            return torch.tanh(up)
        h = F.leaky_relu(h, 0.2)  # bkse's LeakyReLU(0.2, inplace=True): the skip below sees it too
        down = F.conv2d(h, state[f"{key}.down.1.weight"], None, 2, 1)
        inner = torch.cat((down, code), dim=1) if level == 4 else unet(level + 1, down)
        up = F.conv_transpose2d(F.relu(inner), state[f"{key}.up.1.weight"], None, 2, 1)
        return torch.cat((up, h), dim=1)

    h = unet(0, h)
    for i in range(back):
        h = residual(h, f"recon_trunk.{i}")
    h = F.leaky_relu(F.pixel_shuffle(conv(h, f"recon_trunk.{back}"), 2), 0.1)
    h = F.leaky_relu(F.pixel_shuffle(conv(h, f"recon_trunk.{back + 3}"), 2), 0.1)
    h = F.leaky_relu(conv(h, f"recon_trunk.{back + 6}"), 0.1)
    return conv(h, f"recon_trunk.{back + 8}") + x


def test_nonlinear_blur_matches_the_reference(published):
    op = NonlinearBlur(network=published, image_size=128, generator=generators_from_seeds([3, 4]))
    x = images(9, (2, 3, 128, 128), dtype=torch.float32)
    code = op.code
    assert code.shape == (2, 512, 1, 1)  # (512, 2, 2) at 256 px: H / 128
    with torch.no_grad():
        blurred = reference_adapt_kernel(published.state_dict(), (x + 1) / 2, code, front=10, back=20)
        torch.testing.assert_close(published.adapt_kernel((x + 1) / 2, code), blurred, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(op(x), (2 * blurred - 1).clamp(-1, 1), rtol=1e-4, atol=1e-4)
    assert (op(x) - x).abs().mean() > 0.01 and (op(x).abs() < 1).float().mean() > 0.5  # not all clamped


def test_kernel_codes_follow_each_convention(published):
    # DPS: randn(512, h, w) * 1.2 per image, here from each image's generator
    op = NonlinearBlur(network=SMALL_NETWORK, image_size=256, generator=generators_from_seeds([5, 6]))
    for i, seed in enumerate((5, 6)):
        expected = torch.randn((32, 2, 2), generator=torch.Generator().manual_seed(seed)) * 1.2
        torch.testing.assert_close(op.code[i], expected, rtol=0, atol=0)
    # DAPS: np.random.seed(0); np.random.randn(1, 512, 2, 2) * 1.2, one code for every image (no generator needed)
    daps = NonlinearBlur(network=published, convention="daps")
    state = np.random.get_state()  # noqa: NPY002
    np.random.seed(0)  # noqa: NPY002 (the reference's global-RNG calls, verbatim)
    expected = torch.from_numpy(np.random.randn(1, 512, 2, 2) * 1.2).float()  # noqa: NPY002
    np.random.set_state(state)  # noqa: NPY002
    torch.testing.assert_close(daps.code, expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="generator"):
        NonlinearBlur(network=SMALL_NETWORK, image_size=128)
    with pytest.raises(ValueError, match="multiple of 128"):
        NonlinearBlur(network=SMALL_NETWORK, image_size=32, generator=torch.Generator())


def test_published_format_loads_strictly(published, tmp_path):
    path = tmp_path / "GOPRO_wVAE.pth"
    torch.save(published.state_dict(), path)
    op = make_operator("nonlinear_blur", weights=str(path), image_size=128, generator=generators_from_seeds([3]))
    for key, value in published.state_dict().items():
        assert torch.equal(op.network.state_dict()[key], value), key
    assert not any(p.requires_grad for p in op.network.parameters())  # a fixed operator, not trained by solvers
    x = images(10, (1, 3, 128, 128), dtype=torch.float32)
    alone = NonlinearBlur(network=published, image_size=128, generator=generators_from_seeds([3]))
    torch.testing.assert_close(op(x), alone(x))


@pytest.mark.parametrize("change", ["missing", "extra", "shape"])
def test_state_dict_that_differs_is_refused(change, tmp_path):
    state = KernelWizard(SMALL).state_dict()
    if change == "missing":
        del state["recon_trunk.0.conv1.weight"]
    elif change == "extra":
        state["adapter.model.down.0.bias"] = torch.zeros(4)
    else:
        state["feature_extractor.0.weight"] = torch.zeros(4, 3, 5, 5)
    path = tmp_path / "weights.pth"
    torch.save(state, path)
    message = {"missing": "Missing key", "extra": "Unexpected key", "shape": "size mismatch"}[change]
    with pytest.raises(RuntimeError, match=message):
        load_kernel_wizard(path, SMALL)


def test_missing_weights_file_is_a_one_line_error(tmp_path):
    path = tmp_path / "models" / "GOPRO_wVAE.pth"
    with pytest.raises(BlurWeightsMissing) as info:
        make_operator("nonlinear_blur", weights=str(path), image_size=256, generator=torch.Generator())
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ValueError)
    assert "\n" not in message
    for part in (str(path), "https://drive.google.com/file/d/1vRoDpIsrTRYZKsOMPNbPcMtFDpCT6Foy", "task.params.weights"):
        assert part in message


def test_measure_adds_the_noise():
    op = HighDynamicRange(noise=GaussianNoise(0.05))
    x = torch.zeros(2, 3, 64, 64)
    y = op.measure(x, generator=generators_from_seeds([0, 1]))
    assert abs(float(y.std()) - 0.05) < 0.002
