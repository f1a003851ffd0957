"""Posterior samplers over diffusion priors, with Perturbed-Attention Guidance, declared in one registry.

``SOLVERS`` maps a solver's name to its ``SolverSpec`` (class, prior space, step-size names, step-table section;
its options, ``SolverOption``, read from the constructor): DPS, DiffPIR, DAPS, DDNM, PiGDM and RED-diff (pixel
priors), PSLD, LatentDAPS and ReSample (latent priors). Each is its settings and its
``step(ctx, i, x) -> (x_next, x0_hat)``; ``run_chain`` (``ChainSolver.restore``) runs the steps for all of them.
``restore_best_of`` runs any of them several times and keeps, per image, the run whose measurement fits best
(restarts).
"""

from .chain import ChainSolver, DivergenceError, StepContext, StepInfo, run_chain
from .daps import DAPS, LatentDAPS
from .ddnm import DDNM
from .diffpir import DiffPIR
from .dps import DPS
from .guidance import PAG, NoisePrediction, NoisePredictor
from .pigdm import PiGDM
from .proximal import DataProximal, data_prox
from .psld import PSLD
from .reddiff import REDDiff
from .registry import (
    SOLVERS,
    SPACES,
    Allowed,
    ReferenceTask,
    Solver,
    SolverOption,
    SolverSpec,
    default_solver,
    fit_error,
    prior_space,
    solvers_for,
    solvers_that_fit,
)
from .resample import ReSample
from .restarts import BestOf, measurement_residual, restore_best_of
from .sample import sample

__all__ = [
    "DAPS",
    "DDNM",
    "DPS",
    "PAG",
    "PSLD",
    "SOLVERS",
    "SPACES",
    "Allowed",
    "BestOf",
    "ChainSolver",
    "DataProximal",
    "DiffPIR",
    "DivergenceError",
    "LatentDAPS",
    "NoisePrediction",
    "NoisePredictor",
    "PiGDM",
    "REDDiff",
    "ReSample",
    "ReferenceTask",
    "Solver",
    "SolverOption",
    "SolverSpec",
    "StepContext",
    "StepInfo",
    "data_prox",
    "default_solver",
    "fit_error",
    "measurement_residual",
    "prior_space",
    "restore_best_of",
    "run_chain",
    "sample",
    "solvers_for",
    "solvers_that_fit",
]
