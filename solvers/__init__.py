"""Posterior samplers: DPS (pixel priors), PSLD (latent priors), with Perturbed-Attention Guidance."""

from .common import DivergenceError, StepInfo
from .dps import DPS
from .guidance import PAG, NoisePrediction, NoisePredictor, as_pag
from .psld import PSLD
from .sample import sample

__all__ = [
    "DPS",
    "PAG",
    "PSLD",
    "DivergenceError",
    "NoisePrediction",
    "NoisePredictor",
    "StepInfo",
    "as_pag",
    "sample",
]
