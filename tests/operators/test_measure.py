"""Measurement noise through operators, per-image generators, the registry and its errors."""

import pytest
import torch

from operators import (
    OPERATORS,
    GaussianNoise,
    NoNoise,
    PoissonNoise,
    SuperResolution,
    generators_from_seeds,
    make_operator,
)


def test_registry_names() -> None:
    linear = {"box_inpaint", "random_inpaint", "super_resolution", "gaussian_blur", "motion_blur"}
    assert set(OPERATORS) == linear | {"phase_retrieval", "hdr", "nonlinear_blur"}


def test_unknown_operator_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown operator 'deblur'") as info:
        make_operator("deblur")
    for name in OPERATORS:
        assert name in str(info.value)


@pytest.mark.parametrize("name", sorted(name for name, cls in OPERATORS.items() if cls.is_linear))
def test_wrong_rank_is_a_clear_error(name: str) -> None:
    kwargs = {"super_resolution": {}, "gaussian_blur": {}}.get(name, {"generator": torch.Generator()})
    op = make_operator(name, **kwargs)
    for bad in (torch.zeros(3, 256, 256), torch.zeros(1, 1, 3, 256, 256)):
        with pytest.raises(ValueError, match="rank"):
            op(bad)
        with pytest.raises(ValueError, match="rank"):
            op.adjoint(bad)


def test_noise_argument_forms() -> None:
    assert isinstance(SuperResolution(4).noise, GaussianNoise) and SuperResolution(4).noise.sigma == 0.05
    op = make_operator("super_resolution", noise={"name": "gaussian", "sigma": 0.1})
    assert isinstance(op.noise, GaussianNoise) and op.noise.sigma == 0.1
    assert isinstance(SuperResolution(4, noise={"name": "poisson", "rate": 2.0}).noise, PoissonNoise)
    assert isinstance(SuperResolution(4, noise={"name": "none"}).noise, NoNoise)
    with pytest.raises(ValueError, match="'name'"):
        SuperResolution(4, noise={"sigma": 0.1})
    with pytest.raises(ValueError, match="unknown noise"):
        SuperResolution(4, noise={"name": "speckle"})


def test_gaussian_measurement_noise_has_std_sigma() -> None:
    op = make_operator("gaussian_blur", kernel_size=15, sigma=2.0, noise={"name": "gaussian", "sigma": 0.05})
    x = torch.rand(2, 3, 128, 128, dtype=torch.float64) * 2 - 1
    y = op.measure(x, generator=generators_from_seeds([0, 1]))
    residual = y - op(x)
    # 98304 samples: the std estimate is within ~0.3% (1 sd), the mean within ~1.6e-4 (1 sd)
    assert abs(residual.std().item() - 0.05) < 0.05 * 0.02
    assert abs(residual.mean().item()) < 1e-3


def test_poisson_measurement_runs_and_is_reproducible() -> None:
    op = make_operator("super_resolution", factor=4, noise={"name": "poisson", "rate": 1.0})
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    y1 = op.measure(x, generator=generators_from_seeds([5, 6]))
    y2 = op.measure(x, generator=generators_from_seeds([5, 6]))
    assert torch.equal(y1, y2)
    assert not torch.equal(y1, op.measure(x, generator=generators_from_seeds([7, 8])))
    counts = (y1.double() + 1) / 2 * 255  # whole photon counts at rate 1
    torch.testing.assert_close(counts, counts.round(), rtol=0, atol=1e-4)
    assert (y1 - op(x)).abs().mean() < 0.1  # noise around the clean measurement


@pytest.mark.parametrize("name", ["box_inpaint", "random_inpaint", "motion_blur"])
def test_measure_with_per_image_generators_equals_measuring_each_image_alone(name: str) -> None:
    seeds = [21, 22, 23]
    extra = {
        "box_inpaint": {"image_size": 96, "hole": 32},
        "random_inpaint": {"image_size": 96},
        "motion_blur": {"kernel_size": 31},
    }[name]
    batched = make_operator(name, generator=generators_from_seeds(seeds), **extra)
    x = torch.rand(3, 3, 96, 96) * 2 - 1
    noise_seeds = [100, 101, 102]
    y = batched.measure(x, generator=generators_from_seeds(noise_seeds))
    for i, (seed, noise_seed) in enumerate(zip(seeds, noise_seeds)):
        alone = make_operator(name, generator=generators_from_seeds([seed]), **extra)
        y_i = alone.measure(x[i : i + 1], generator=generators_from_seeds([noise_seed]))
        torch.testing.assert_close(y[i : i + 1], y_i)


def test_operators_move_with_to_and_compute_in_input_dtype() -> None:
    op = make_operator("motion_blur", kernel_size=15, generator=torch.Generator().manual_seed(0))
    op64 = op.to(torch.float64)
    assert op64.kernel.dtype == torch.float64
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    assert op64(x).dtype == torch.float64
    assert op(x.float()).dtype == torch.float32
