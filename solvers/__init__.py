"""Posterior samplers: DPS and DiffPIR (pixel priors), PSLD (latent priors), with Perturbed-Attention Guidance."""

from .common import DivergenceError, StepInfo
from .diffpir import DiffPIR
from .dps import DPS
from .guidance import PAG, NoisePrediction, NoisePredictor, as_pag
from .proximal import DataProximal, data_prox
from .psld import PSLD
from .sample import sample

__all__ = [
    "DPS",
    "PAG",
    "PSLD",
    "DataProximal",
    "DiffPIR",
    "DivergenceError",
    "NoisePrediction",
    "NoisePredictor",
    "StepInfo",
    "as_pag",
    "data_prox",
    "sample",
]
