"""A metric's value, or the reason it could not be computed (never a made-up number)."""

from __future__ import annotations

import math
from dataclasses import dataclass


class MetricUnavailable(RuntimeError):
    """A metric cannot be computed here (missing weights, too few images); the message says why and how to fix it."""


@dataclass(frozen=True)
class MetricResult:
    """``value`` when the metric was computed, else None and ``reason``.

    ``str(result)`` is ``"lpips: 0.1234"`` or ``"lpips: unavailable: <reason>"``.
    """

    name: str
    value: float | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        if (self.value is None) == (self.reason is None):
            raise ValueError("a MetricResult has either a value or a reason, not both and not neither")

    @classmethod
    def unavailable(cls, name: str, reason: str) -> MetricResult:
        return cls(name, None, reason)

    @property
    def available(self) -> bool:
        return self.value is not None

    def to_dict(self) -> dict[str, float | str | None]:
        """``{"value": v}`` or ``{"value": None, "unavailable": reason}`` (JSON-ready)."""
        if self.available:
            return {"value": self.value}
        return {"value": None, "unavailable": self.reason}

    def __str__(self) -> str:
        if not self.available:
            return f"{self.name}: unavailable: {self.reason}"
        return f"{self.name}: {self.value:.4f}" if math.isfinite(self.value) else f"{self.name}: {self.value}"
