"""Guidance: how the noise predictions of one step are combined (PAG, CFG, CFG + PAG).

PAG (Ahn et al. 2024), diffusers' convention:   eps_guided = eps + s (eps - eps_perturbed),  s = 0: off.
CFG + PAG:   eps_guided = eps_u + w (eps_c - eps_u) + s (eps_c - eps_c_perturbed).

In inverse problems the sampler step uses eps_guided while the data-consistency gradient uses x0_hat
from the *unguided* eps (PSLD_PAG, paper App. 0.A.3 / 0.C.1); ``PAG.x0_from="guided"`` is the ablation.
``PAG.interval`` limits guidance to a range of timesteps (Kynkaanniemi et al. 2024 do this for CFG): outside
it no perturbed pass runs and the step is the unguided one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from priors import DiffusionPrior, SharedPrefix, perturbed_self_attention

PAG_MODES = ("shared_prefix", "prefix_only", "no_grad", "naive")


@dataclass(frozen=True)
class PAG:
    """Perturbed-Attention Guidance settings.

    scale: s in eps + s (eps - eps_perturbed) (the official ADM code's g is s + 1).
    layers: self-attention layers to perturb (module paths or LDM aliases, matched exactly).
    adaptive_scale: a in s_t = max(0, s - a (1000 - t)) (diffusers' ``pag_adaptive_scale``).
    x0_from: "unguided" (the paper's choice: the data term sees x0_hat from eps) or "guided" (ablation: the
        data term differentiates eps_guided, so the perturbed pass's Jacobian enters the gradient).
    interval: (t_lo, t_hi): PAG only at timesteps t_lo <= t <= t_hi (the network's t, 0..999); None: always.
    mode: how the perturbed pass runs. "shared_prefix" (default): no autograd graph, and what depends only on
        the computation before the first perturbed layer is reused from the normal pass (that computation, and
        the decoder's convolutions of the skips it made: ``priors.SharedPrefix``); "prefix_only": the same
        without the skip convolutions (they are kept between the passes: one activation per decoder block);
        "no_grad": a full pass without graph; "naive": a full pass with graph, like the PSLD_PAG reference (for
        benchmarks). All give the same numbers up to float rounding: with ``x0_from="guided"`` and autograd on,
        every mode runs a full perturbed pass with graph (the data term differentiates it; the shared prefix's
        replayed activations are detached).
    """

    scale: float
    layers: tuple[str, ...]
    adaptive_scale: float = 0.0
    x0_from: str = "unguided"
    mode: str = "shared_prefix"
    interval: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        layers = (self.layers,) if isinstance(self.layers, str) else tuple(self.layers)
        object.__setattr__(self, "layers", layers)
        if self.scale < 0:
            raise ValueError(f"PAG scale must be >= 0, got {self.scale}")
        if self.scale > 0 and not layers:
            raise ValueError("PAG needs at least one self-attention layer to perturb")
        if self.x0_from not in ("unguided", "guided"):
            raise ValueError(f"x0_from must be 'unguided' or 'guided', got {self.x0_from!r}")
        if self.mode not in PAG_MODES:
            raise ValueError(f"PAG mode must be one of {PAG_MODES}, got {self.mode!r}")
        if self.interval is not None:
            interval = tuple(float(v) for v in self.interval)
            if len(interval) != 2 or not interval[0] <= interval[1]:
                raise ValueError(f"PAG interval must be [t_lo, t_hi] with t_lo <= t_hi, got {list(self.interval)}")
            object.__setattr__(self, "interval", interval)

    def active_at(self, t: int) -> bool:
        """Whether t lies in the guidance interval (always, without one)."""
        return self.interval is None or self.interval[0] <= int(t) <= self.interval[1]

    def scale_at(self, t: int) -> float:
        """s_t = max(0, s - a (1000 - t)) inside the interval, 0 outside."""
        if not self.active_at(t):
            return 0.0
        return max(0.0, self.scale - self.adaptive_scale * (1000 - int(t)))

    @property
    def perturbed_needs_graph(self) -> bool:
        """The perturbed pass must be differentiable when autograd is on: the reference's naive pass, or the
        ablation whose data term differentiates eps_guided."""
        return self.mode == "naive" or self.x0_from == "guided"


@dataclass
class NoisePrediction:
    """The noise predictions of one step; solvers read the field for each use, never compare identities.

    eps: never PAG-guided (CFG-combined when a prompt is used).
    eps_guided: what the sampler step uses (equal to eps when ``guided`` is False).
    eps_data: what the data term's x0_hat comes from: eps, or eps_guided for the ``x0_from="guided"`` ablation.
    eps_cond: the conditional pass alone (eps without CFG); PSLD_PAG's data term uses it (reference mode).
    guided: whether PAG ran at this step (False: no perturbed pass, eps_guided equals eps).
    var_values: learned-range variance channels of the unperturbed conditional pass (ADM), else None.
    eps_perturbed: the perturbed prediction (None when PAG is inactive at this step).
    """

    eps: Tensor
    eps_guided: Tensor
    eps_data: Tensor
    eps_cond: Tensor
    guided: bool = False
    var_values: Tensor | None = None
    eps_perturbed: Tensor | None = field(default=None, repr=False)


class NoisePredictor:
    """Runs the prior for one step and combines the predictions (one object per sampling run).

    cond / uncond / cfg_scale: classifier-free guidance for prompted latent priors. With ``cond=None``
    the prior's own default conditioning is used and no CFG pass runs (an empty prompt needs none).
    """

    def __init__(
        self,
        prior: DiffusionPrior,
        pag: PAG | None = None,
        *,
        cond: object | None = None,
        uncond: object | None = None,
        cfg_scale: float = 1.0,
    ):
        self.prior = prior
        self.pag = pag if pag is not None and pag.scale > 0 else None
        self.cond = cond
        self.uncond = uncond
        self.cfg_scale = float(cfg_scale)
        if self.use_cfg and uncond is None:
            raise ValueError("classifier-free guidance needs both cond and uncond")
        self.layers: list[str] = []
        self._shared: dict[tuple, SharedPrefix] = {}  # one per input shape, built once per sampling run
        if self.pag is not None:
            self.layers = prior.resolve_layers(self.pag.layers)
            network = prior.network
            self._layer_modules = [network.get_submodule(n) for n in self.layers]

    @property
    def use_cfg(self) -> bool:
        return self.cond is not None and self.cfg_scale != 1.0

    def _perturbed(self, x_t: Tensor, t: int, cond: object | None, record: SharedPrefix | None):
        """The perturbed pass: identity attention on the chosen layers."""
        grad = self.pag.perturbed_needs_graph
        with (
            torch.set_grad_enabled(grad and torch.is_grad_enabled()),
            perturbed_self_attention(self.prior, self.layers),
        ):
            if record is None:
                return self.prior(x_t, t, cond)
            with record.replay():
                return self.prior(x_t, t, cond)

    def __call__(self, x_t: Tensor, t: int, guide: bool = True) -> NoisePrediction:
        """The predictions at (x_t, t); ``guide=False``: no perturbed pass (eps_guided is eps), e.g. where a solver's
        data term must see the unguided estimate and nothing else uses the guided one."""
        s = self.pag.scale_at(t) if self.pag is not None and guide else 0.0
        shared = None
        # a differentiable perturbed pass cannot replay the (detached) prefix: it runs in full
        full_graph = s > 0 and self.pag.perturbed_needs_graph and torch.is_grad_enabled()
        if s > 0 and self.pag.mode in ("shared_prefix", "prefix_only") and not full_graph:
            key = tuple(x_t.shape[1:])
            if key not in self._shared:
                branches = self.prior.skip_branches() if self.pag.mode == "shared_prefix" else ()
                self._shared[key] = SharedPrefix(
                    self.prior.network, self._layer_modules, key=key, skip_branches=branches
                )
            shared = self._shared[key]

        def conditional_pass():
            if shared is None:
                return self.prior(x_t, t, self.cond)
            with shared.record():
                return self.prior(x_t, t, self.cond)

        out = conditional_pass()
        eps_c = out.eps
        eps = eps_c
        if self.use_cfg:
            eps_u = self.prior(x_t, t, self.uncond).eps
            eps = eps_u + self.cfg_scale * (eps_c - eps_u)
        if s == 0:
            return NoisePrediction(eps=eps, eps_guided=eps, eps_data=eps, eps_cond=eps_c, var_values=out.var_values)
        eps_perturbed = self._perturbed(x_t, t, self.cond, shared).eps
        eps_guided = eps + s * (eps_c - eps_perturbed)
        return NoisePrediction(
            eps=eps,
            eps_guided=eps_guided,
            eps_data=eps_guided if self.pag.x0_from == "guided" else eps,
            eps_cond=eps_c,
            guided=True,
            var_values=out.var_values,
            eps_perturbed=eps_perturbed,
        )
