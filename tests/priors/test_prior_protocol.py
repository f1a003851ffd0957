"""The prior protocol the solvers use, and the attention extension point: each prior says how its self-attention
layers are found and perturbed; the generic code imports no concrete prior."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from priors import (
    DiffusionPrior,
    GaussianPrior,
    LatentPrior,
    ModelOutput,
    NoiseSchedule,
    Prior,
    perturbed_self_attention,
    resolve_layers,
    self_attention_layers,
)
from priors.adm import ADMPrior

REPO = Path(__file__).resolve().parents[2]


def test_shipped_priors_satisfy_the_protocol():
    from priors.sd import random_sd_prior

    adm = ADMPrior.from_preset("test")
    sd = random_sd_prior(seed=0)
    gauss = GaussianPrior(torch.zeros(12), torch.eye(12), (3, 2, 2))
    for prior in (adm, sd, gauss):
        assert isinstance(prior, Prior)
        assert prior.is_latent == isinstance(prior, LatentPrior)
        assert isinstance(prior.network, nn.Module) and len(prior.sample_shape) == 3
    assert isinstance(sd, LatentPrior) and not isinstance(adm, LatentPrior)
    assert gauss.self_attention_layers() == {}  # no network: nothing for PAG
    # the prior's own layer methods agree with the generic functions on the prior and on its bare network
    for prior in (adm, sd):
        assert list(prior.self_attention_layers()) == list(self_attention_layers(prior.network))
        first = next(iter(prior.self_attention_layers()))
        assert prior.resolve_layers([first]) == resolve_layers(prior.network, first) == [first]


def test_generic_attention_code_imports_no_concrete_prior():
    code = (
        "import sys, priors.attention, priors.base; "
        "bad = [m for m in ('priors.adm', 'priors.sd', 'diffusers') if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    # nor lazily, inside a function: only standard library and torch imports
    tree = ast.parse((REPO / "priors" / "attention.py").read_text())
    imported = [n.module if isinstance(n, ast.ImportFrom) else a.name for n in ast.walk(tree)
                if isinstance(n, ast.Import | ast.ImportFrom) for a in n.names]  # fmt: skip
    relative = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level]
    assert not relative and not any(m.startswith(("priors", "diffusers")) for m in imported), imported


class _GatedAttention(nn.Module):
    """A toy self-attention whose map can be gated off: out = x + g * (attention part), identity part = x."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(2.0))
        self.identity = False

    def forward(self, x: Tensor) -> Tensor:
        return x if self.identity else x * self.scale


class _ToyKind:
    def is_self_attention(self, module: nn.Module) -> bool:
        return isinstance(module, _GatedAttention)

    def perturb(self, module: nn.Module) -> Callable[[], None]:
        module.identity = True
        return lambda: setattr(module, "identity", False)

    def aliases(self, network: nn.Module) -> dict[str, str]:
        return {"the_attention": "blocks.1"}


class _ToyPrior(DiffusionPrior):
    attention_kind = _ToyKind()

    def __init__(self):
        super().__init__()
        self.network = nn.Sequential()
        self.network.add_module("blocks", nn.Sequential(nn.Identity(), _GatedAttention()))
        self.schedule = NoiseSchedule.linear()
        self.sample_shape = (1, 2, 2)

    def forward(self, x_t: Tensor, t: Tensor | int, cond: object | None = None) -> ModelOutput:
        return ModelOutput(eps=self.network(x_t))


def test_a_prior_declares_how_its_attention_is_found_and_perturbed():
    prior = _ToyPrior()
    assert isinstance(prior, Prior)
    assert list(prior.self_attention_layers()) == ["blocks.1"]
    assert prior.resolve_layers(["the_attention"]) == ["blocks.1"]  # the kind's alias
    x = torch.ones(1, 1, 2, 2)
    assert torch.equal(prior(x, 0).eps, 2 * x)
    with perturbed_self_attention(prior, ["the_attention"]) as names:
        assert names == ["blocks.1"]
        assert torch.equal(prior(x, 0).eps, x)  # identity map
    assert torch.equal(prior(x, 0).eps, 2 * x)  # undone on exit
