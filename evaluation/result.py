"""A metric's value, or the reason it could not be computed (never a made-up number)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


class MetricUnavailable(RuntimeError):
    """A metric cannot be computed here (missing weights, too few images); the message says why and how to fix it."""


@dataclass(frozen=True)
class MetricResult:
    """``value`` when the metric was computed, else None and ``reason``.

    ``str(result)`` is ``"lpips: 0.1234"`` or ``"lpips: unavailable: <reason>"``. ``details`` go into
    ``to_dict`` beside the value, e.g. the feature extractor of a FID or a KID's std over subsets.
    """

    name: str
    value: float | None = None
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if (self.value is None) == (self.reason is None):
            raise ValueError("a MetricResult has either a value or a reason, not both and not neither")

    @classmethod
    def unavailable(cls, name: str, reason: str, **details: Any) -> MetricResult:
        return cls(name, None, reason, details)

    @property
    def available(self) -> bool:
        return self.value is not None

    def to_dict(self) -> dict[str, Any]:
        """``{"value": v, **details}`` or ``{"value": None, "unavailable": reason, **details}`` (JSON-ready)."""
        if self.available:
            return {"value": self.value, **self.details}
        return {"value": None, "unavailable": self.reason, **self.details}

    def __str__(self) -> str:
        if not self.available:
            return f"{self.name}: unavailable: {self.reason}"
        if not math.isfinite(self.value):
            return f"{self.name}: {self.value}"
        std = self.details.get("std")
        return f"{self.name}: {self.value:.4f}" + (f" ± {std:.4f}" if std is not None else "")
