"""Per-image random draws from explicit generators.

Every random choice in the project (noise, masks, kernels, initial latents) goes through these helpers,
so that image ``i`` of a batch sees exactly the numbers it would see if it were restored alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

Generators = torch.Generator | Sequence[torch.Generator]


def generators_from_seeds(seeds: Sequence[int], device: str | torch.device = "cpu") -> list[torch.Generator]:
    """One generator per seed (``seed + index`` per image is the project's convention)."""
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]


def as_generator_list(
    generator: Generators | None, batch_size: int, *, what: str = "this draw"
) -> list[torch.Generator]:
    """Normalise ``generator`` to a list of ``batch_size`` generators.

    A single generator is shared (drawn from sequentially, image by image): deterministic, but image ``i``
    then depends on the images before it. Pass one generator per image for batch-size invariance.
    """
    if generator is None:
        raise ValueError(
            f"{what} is random and needs an explicit generator: pass generator=torch.Generator().manual_seed(seed) "
            "or a list with one generator per image"
        )
    if isinstance(generator, torch.Generator):
        return [generator] * batch_size
    generators = list(generator)
    if len(generators) != batch_size:
        raise ValueError(f"{what}: got {len(generators)} generators for a batch of {batch_size}")
    return generators


def randn(
    shape: Sequence[int],
    generator: Generators | None,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal tensor of ``shape`` (batch first), each sample drawn from its own generator.

    Samples are drawn on the generator's device and then moved, so a CPU generator gives the same
    numbers whatever device the computation runs on.
    """
    batch, *rest = shape
    gens = as_generator_list(generator, batch, what="Gaussian noise")
    samples = [torch.randn(rest, generator=g, device=g.device, dtype=torch.float32) for g in gens]
    out = torch.stack(samples) if samples else torch.empty((0, *rest))
    return out.to(device=device if device is not None else out.device, dtype=dtype)


def parameter_generators(generator: Generators | None, *, what: str) -> list[torch.Generator]:
    """Generators for drawing an operator's random parameters (masks, kernels).

    A single generator draws one parameter set that broadcasts over any batch; a list of B generators draws
    B sets, one per image (image ``i`` gets exactly what it would get from its own generator alone).
    """
    if generator is None:
        raise ValueError(
            f"{what} is random and needs an explicit generator: pass generator=torch.Generator().manual_seed(seed) "
            "(one draw shared by the whole batch) or a list with one generator per image"
        )
    if isinstance(generator, torch.Generator):
        return [generator]
    generators = list(generator)
    if not generators or not all(isinstance(g, torch.Generator) for g in generators):
        raise TypeError(f"{what}: generator must be a torch.Generator or a non-empty list of them")
    return generators


def rand_scalar(generator: torch.Generator, low: float = 0.0, high: float = 1.0) -> float:
    """One draw from U(low, high) in float64, taken on the generator's device."""
    u = torch.rand((), generator=generator, device=generator.device, dtype=torch.float64).item()
    return low + (high - low) * u
