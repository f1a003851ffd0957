"""Posterior samplers over diffusion priors, with Perturbed-Attention Guidance, declared in one registry.

``SOLVERS`` maps a solver's name to its ``SolverSpec`` (class, prior space, step-size names, step-table section):
DPS (pixel priors) and PSLD (latent priors) today.
"""

from .common import DivergenceError, StepInfo
from .dps import DPS
from .guidance import PAG, NoisePrediction, NoisePredictor
from .psld import PSLD
from .registry import SOLVERS, Solver, SolverSpec, default_solver, prior_space, solvers_for
from .sample import sample

__all__ = [
    "DPS",
    "PAG",
    "PSLD",
    "SOLVERS",
    "DivergenceError",
    "NoisePrediction",
    "NoisePredictor",
    "Solver",
    "SolverSpec",
    "StepInfo",
    "default_solver",
    "prior_space",
    "sample",
    "solvers_for",
]
