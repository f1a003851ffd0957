"""Your own operator: a plain differentiable function wrapped as an ``Operator`` (``from_function``), and operators
named ``<module>:<name>`` loaded from the working directory or ``PYTHONPATH`` (``load_operator``, what
``task=custom task.operator=<module>:<name>`` resolves)."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .base import NoiseSpec, Operator

Function = Callable[[torch.Tensor], torch.Tensor]

#: the inner-product identity's tolerance, relative to ||A x|| ||y|| (its Cauchy-Schwarz bound), by dtype
ADJOINT_RTOL = {torch.float64: 1e-8, torch.float32: 1e-4}
ADJOINT_RTOL_REDUCED = 1e-2
#: the seed of the random probe of the adjoint check (fixed: the check is reproducible)
PROBE_SEED = 0


class FunctionOperator(Operator):
    """An ``Operator`` around ``function`` (see ``from_function``). Whether it is linear is set per instance
    (``op.is_linear``); the class itself claims nothing."""

    is_linear = False

    def __init__(
        self,
        function: Function,
        noise: NoiseSpec = None,
        adjoint: Function | None = None,
        linear: bool | None = None,
        name: str = "custom",
        image_shape: tuple[int, int, int] | None = None,
    ):
        super().__init__(noise)
        if linear is None:
            linear = adjoint is not None
        if adjoint is not None and not linear:
            raise ValueError(f"operator {name!r}: an adjoint was given with linear=False; only a linear map has one")
        self.function = function  # an nn.Module is registered as a submodule (moves with .to())
        self.given_adjoint = adjoint
        self.is_linear = bool(linear)
        self.name = name
        self.image_shape = None if image_shape is None else tuple(int(s) for s in image_shape)
        self._last_shape: tuple[int, ...] | None = None
        self._adjoint_checked = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_image(x)
        self._last_shape = tuple(x.shape[1:])
        return self.function(x)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """The given adjoint, else the vector-Jacobian product of the (linear) function; checked once against the
        inner-product identity <A x, y> = <x, A^T y> on a random probe before its first use."""
        if not self.is_linear:
            raise NotImplementedError(
                f"operator {self.name!r} is nonlinear (linear=False): it has no adjoint; solvers that need one "
                "(A^T, prox_l2, pinv) cannot use it"
            )
        if not self._adjoint_checked:
            self.check_adjoint(dtype=y.dtype, device=y.device)
        return self._apply_adjoint(y)

    def _apply_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        if self.given_adjoint is not None:
            return self.given_adjoint(y)
        return self._vjp(y)

    def _input_shape(self) -> tuple[int, ...]:
        shape = self.image_shape or self._last_shape
        if shape is None:
            raise RuntimeError(
                f"operator {self.name!r}: the vector-Jacobian adjoint needs the image shape; apply the operator to an "
                "image once first, or pass image_shape=(C, H, W) (or an explicit adjoint=)"
            )
        return shape

    def _vjp(self, y: torch.Tensor) -> torch.Tensor:
        """A^T y = d<A x, y>/dx, at x = 0 (any point: A is linear); differentiable in y when y requires grad."""
        x = torch.zeros((y.shape[0], *self._input_shape()), dtype=y.dtype, device=y.device, requires_grad=True)
        with torch.enable_grad():
            out = self.function(x)
            (grad,) = torch.autograd.grad(out, x, grad_outputs=y, create_graph=y.requires_grad, allow_unused=True)
        return torch.zeros_like(x) if grad is None else grad

    def check_adjoint(self, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> float:
        """Check <A x, y> = <x, A^T y> for a random x and y (generator seeded ``PROBE_SEED``); returns the relative
        error, raises ValueError when it exceeds the tolerance of ``dtype``."""
        generator = torch.Generator().manual_seed(PROBE_SEED)
        x = torch.randn((1, *self._input_shape()), generator=generator, dtype=torch.float64).to(device, dtype)
        with torch.no_grad():
            ax = self.function(x)
        y = torch.randn(ax.shape, generator=generator, dtype=torch.float64).to(device, dtype)
        aty = self._apply_adjoint(y)
        if aty.shape != x.shape:
            raise ValueError(
                f"operator {self.name!r}: the adjoint maps measurements {tuple(y.shape)} to {tuple(aty.shape)}, "
                f"not to images {tuple(x.shape)}"
            )
        lhs, rhs = float((ax.double() * y.double()).sum()), float((x.double() * aty.double()).sum())
        scale = float(ax.double().norm() * y.double().norm()) or 1.0
        error = abs(lhs - rhs) / scale
        tol = ADJOINT_RTOL.get(dtype, ADJOINT_RTOL_REDUCED)
        if not error <= tol:
            source = "the given adjoint" if self.given_adjoint is not None else "the vector-Jacobian product"
            raise ValueError(
                f"operator {self.name!r}: {source} fails the inner-product identity <A x, y> = <x, A^T y> on a "
                f"random probe ({lhs:.6g} vs {rhs:.6g}, relative error {error:.1e} > {tol:.0e}): pass the exact "
                "adjoint, or linear=False if A is not linear"
            )
        self._adjoint_checked = True
        return error

    def extra_repr(self) -> str:
        return f"name={self.name!r}, linear={self.is_linear}, adjoint={'given' if self.given_adjoint else 'vjp'}"


def from_function(
    A: Function,
    noise_sigma: float | None = 0.05,
    adjoint: Function | None = None,
    linear: bool | None = None,
    name: str = "custom",
    *,
    noise: NoiseSpec = None,
    image_shape: tuple[int, int, int] | None = None,
) -> Operator:
    """An ``Operator`` y = A(x) + n from a differentiable function ``A`` on (B, C, H, W) images in [-1, 1].

    - ``noise_sigma``: Gaussian noise std on [-1, 1] (0.05 as DPS; 0 or None: noiseless); or ``noise=`` any noise
      spec (``{"name": "poisson", "rate": 1.0}``), which wins.
    - ``linear``: whether A is linear (default: True iff ``adjoint`` is given). A linear operator gets ``adjoint``,
      ``prox_l2`` and ``pinv`` (conjugate gradients); its adjoint is ``adjoint`` when given, else the
      vector-Jacobian product of A. Either is checked once against <A x, y> = <x, A^T y> on a random probe at its
      first use (a ValueError names the failure).
    - ``image_shape``: (C, H, W), for a vector-Jacobian adjoint used before any ``op(x)`` call.
    """
    if noise is None:
        noise = {"name": "gaussian", "sigma": float(noise_sigma)} if noise_sigma else {"name": "none"}
    return FunctionOperator(A, noise=noise, adjoint=adjoint, linear=linear, name=name, image_shape=image_shape)


def resolve_operator(spec: str) -> Any:
    """The object named by ``"<module>:<name>"`` (dotted names allowed on both sides), importing ``<module>`` from
    ``PYTHONPATH`` or, failing that, from the working directory."""
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise ValueError(f"an operator is named '<module>:<name>' (e.g. my_ops:Subsample), got {spec!r}")
    module_name, attribute = spec.split(":")

    def not_found(exc: ModuleNotFoundError) -> ValueError:
        return ValueError(
            f"operator {spec!r}: no module {module_name!r} in the working directory ({os.getcwd()}) or on "
            f"PYTHONPATH ({exc})"
        )

    cwd = os.getcwd()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name.split(".")[0]:
            raise  # the module exists but imports something missing: that error says what
        if cwd in sys.path:
            raise not_found(exc) from exc
        sys.path.insert(0, cwd)  # the working directory, where `python scripts/...` does not look
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as again:
            if again.name != module_name.split(".")[0]:
                raise  # found in the working directory, but it imports something missing: that error says what
            raise not_found(again) from again
        finally:
            sys.path.remove(cwd)
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ValueError(f"operator {spec!r}: {module_name} has no {attribute!r}")
        target = getattr(target, part)
    return target


def load_operator(spec: str, **kwargs: Any) -> Operator:
    """The operator named ``"<module>:<name>"``: an ``Operator`` subclass (constructed with ``kwargs``), a function
    returning an ``Operator`` (called with ``kwargs``), or an ``Operator`` instance (no ``kwargs``)."""
    target = resolve_operator(spec)
    if isinstance(target, Operator):
        if kwargs:
            raise ValueError(f"operator {spec!r} is an instance: it takes no arguments, got {sorted(kwargs)}")
        return target
    if inspect.isclass(target) and not issubclass(target, Operator):
        raise TypeError(f"operator {spec!r}: the class {target.__name__} is not an operators.Operator subclass")
    if not callable(target) or isinstance(target, nn.Module):
        raise TypeError(f"operator {spec!r} must be an Operator subclass, an Operator, or a function returning one")
    operator = target(**kwargs)
    if not isinstance(operator, Operator):
        raise TypeError(
            f"operator {spec!r} returned {type(operator).__name__}, not an operators.Operator; wrap a plain function "
            "A(x) with operators.from_function(A, noise_sigma=...)"
        )
    return operator
