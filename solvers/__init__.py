"""Posterior samplers over diffusion priors, with Perturbed-Attention Guidance, declared in one registry.

``SOLVERS`` maps a solver's name to its ``SolverSpec`` (class, prior space, step-size names, step-table section;
its options, ``SolverOption``, read from the constructor): DPS, DiffPIR and DAPS (pixel priors), PSLD and LatentDAPS
(latent priors).
"""

from .common import DivergenceError, StepInfo
from .daps import DAPS, LatentDAPS
from .diffpir import DiffPIR
from .dps import DPS
from .guidance import PAG, NoisePrediction, NoisePredictor
from .proximal import DataProximal, data_prox
from .psld import PSLD
from .registry import (
    SOLVERS,
    SPACES,
    Allowed,
    Solver,
    SolverOption,
    SolverSpec,
    default_solver,
    prior_space,
    solvers_for,
)
from .sample import sample

__all__ = [
    "DAPS",
    "DPS",
    "PAG",
    "PSLD",
    "SOLVERS",
    "SPACES",
    "Allowed",
    "DataProximal",
    "DiffPIR",
    "DivergenceError",
    "LatentDAPS",
    "NoisePrediction",
    "NoisePredictor",
    "Solver",
    "SolverOption",
    "SolverSpec",
    "StepInfo",
    "data_prox",
    "default_solver",
    "prior_space",
    "sample",
    "solvers_for",
]
