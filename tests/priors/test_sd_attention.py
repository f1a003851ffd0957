"""Perturbed self-attention on a diffusers UNet: the identity processor, diffusers' PAG processor, shared prefix."""

import pytest
import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import PAGIdentitySelfAttnProcessor2_0

import priors
from priors.sd import IdentitySelfAttnProcessor, random_sd_prior

PSLD_PAG_LAYER = "input_blocks.8.1.transformer_blocks.0.attn1"  # PSLD_PAG: down_blocks.2.attentions.1...attn1
PSLD_PAG_PATH = "down_blocks.2.attentions.1.transformer_blocks.0.attn1"


@pytest.fixture(scope="module")
def prior():
    return random_sd_prior(seed=0)


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(2, 4, 8, 8, generator=g)
    return z, torch.tensor([700, 80])


def _capture(module):
    """Hook recording (input, output) of every call of ``module``."""
    calls = []
    handle = module.register_forward_hook(lambda m, args, out: calls.append((args[0].detach(), out.detach())))
    return calls, handle


def _eps(prior, z, t):
    with torch.no_grad():
        return prior(z, t).eps


def test_identity_processor_output_is_value_projection(prior, inputs):
    """Inside the context the layer computes to_out(to_v(h)) (+ residual in the transformer block), from
    the weights directly; the residual connection adds the block's input."""
    z, t = inputs
    unet = prior.unet
    attn = unet.get_submodule(PSLD_PAG_PATH)
    block = unet.get_submodule(PSLD_PAG_PATH.removesuffix(".attn1"))
    calls, handle = _capture(attn)
    block_in = []
    h2 = block.norm2.register_forward_hook(lambda m, args, out: block_in.append(args[0].detach()))  # x + attn1(.)
    h1 = block.norm1.register_forward_hook(lambda m, args, out: block_in.append(args[0].detach()))  # x
    try:
        with priors.perturbed_self_attention(prior, [PSLD_PAG_LAYER]) as names:
            assert names == [PSLD_PAG_PATH]
            _eps(prior, z, t)
    finally:
        handle.remove(), h1.remove(), h2.remove()
    assert len(calls) == 1
    h, out = calls[0]  # h = norm1(x): what attn1 receives (B, tokens, C)
    value = F.linear(h, attn.to_v.weight, attn.to_v.bias)  # identity map: each token keeps its own value
    expected = F.linear(value, attn.to_out[0].weight, attn.to_out[0].bias)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    x, x_after_attn = block_in
    torch.testing.assert_close(x_after_attn, x + expected, rtol=1e-5, atol=1e-6)


def test_only_the_named_layer_changes_and_model_is_restored(prior, inputs):
    z, t = inputs
    unet = prior.unet
    processors = dict(unet.attn_processors)
    before = _eps(prior, z, t)
    layers = priors.self_attention_layers(unet)
    assert PSLD_PAG_PATH in layers
    order = list(layers)
    first = order.index(PSLD_PAG_PATH)
    normal_out, perturbed_out = {}, {}
    for store, perturb in ((normal_out, False), (perturbed_out, True)):
        handles = [
            m.register_forward_hook(lambda mod, args, out, name=name, store=store: store.setdefault(name, out.detach()))
            for name, m in layers.items()
        ]
        if perturb:
            with priors.perturbed_self_attention(unet, PSLD_PAG_LAYER):
                current = unet.attn_processors
                assert isinstance(current[f"{PSLD_PAG_PATH}.processor"], IdentitySelfAttnProcessor)
                changed = [k for k, p in current.items() if p is not processors[k]]
                assert changed == [f"{PSLD_PAG_PATH}.processor"]  # attn2 and every other layer untouched
                perturbed = _eps(prior, z, t)
        else:
            _eps(prior, z, t)
        for h in handles:
            h.remove()
    # layers that run before the perturbed one see the same input and give the same output
    for name in order[:first]:
        assert torch.equal(normal_out[name], perturbed_out[name]), name
    assert not torch.equal(normal_out[PSLD_PAG_PATH], perturbed_out[PSLD_PAG_PATH])
    assert (perturbed - before).abs().max() > 1e-4
    # after the context: same processor objects, bit-identical outputs
    assert all(unet.attn_processors[k] is p for k, p in processors.items())
    assert torch.equal(_eps(prior, z, t), before)


def test_exception_inside_context_restores(prior, inputs):
    z, t = inputs
    before = _eps(prior, z, t)
    with pytest.raises(RuntimeError, match="boom"), priors.perturbed_self_attention(prior, "mid"):
        raise RuntimeError("boom")
    assert torch.equal(_eps(prior, z, t), before)


def test_container_alias_perturbs_self_attention_only(prior):
    with priors.perturbed_self_attention(prior, ["middle_block.1", "output_blocks.4.1"]) as names:
        assert names == [
            "mid_block.attentions.0.transformer_blocks.0.attn1",
            "up_blocks.1.attentions.1.transformer_blocks.0.attn1",
        ]
        kinds = {k: type(p).__name__ for k, p in prior.unet.attn_processors.items()}
    assert sum(v == "IdentitySelfAttnProcessor" for v in kinds.values()) == 2
    assert kinds["mid_block.attentions.0.transformer_blocks.0.attn2.processor"] != "IdentitySelfAttnProcessor"


@pytest.mark.parametrize("layer", [PSLD_PAG_LAYER, "mid", "output_blocks.11.1"])
def test_same_as_diffusers_pag_processor(prior, inputs, layer):
    """diffusers' PAGIdentitySelfAttnProcessor2_0 perturbs the second half of a doubled batch [x, x]: its
    perturbed half equals our whole-batch perturbed pass, its first half the normal pass."""
    z, t = inputs
    unet = prior.unet
    names = priors.resolve_layers(unet, layer)
    normal = _eps(prior, z, t)
    with priors.perturbed_self_attention(unet, names):
        ours = _eps(prior, z, t)
    saved = {n: unet.get_submodule(n).processor for n in names}
    try:
        for n in names:
            unet.get_submodule(n).set_processor(PAGIdentitySelfAttnProcessor2_0())
        emb = prior.null_embedding.expand(4, -1, -1)
        with torch.no_grad():
            theirs = unet(torch.cat([z, z]), torch.cat([t, t]), encoder_hidden_states=emb).sample
    finally:
        for n, p in saved.items():
            unet.get_submodule(n).set_processor(p)
    torch.testing.assert_close(theirs[2:], ours, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(theirs[:2], normal, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layer", [PSLD_PAG_LAYER, "mid", "output_blocks.3.1"])
def test_shared_prefix_replay_equals_full_perturbed_pass(prior, inputs, layer):
    z, t = inputs
    unet = prior.unet
    names = priors.resolve_layers(prior, layer)
    modules = [unet.get_submodule(n) for n in names]
    with torch.no_grad(), priors.perturbed_self_attention(prior, names):
        full = prior(z, t).eps
    inner = unet.down_blocks[0].resnets[0].conv1  # inside the prefix: must not run when replayed
    calls = []
    handle = inner.register_forward_hook(lambda m, a, o: calls.append(1))
    try:
        for _ in range(2):  # the first call finds the plan, the second reuses it
            calls.clear()
            shared = priors.SharedPrefix(unet, modules, key=(tuple(z.shape[1:]),))
            z_grad = z.clone().requires_grad_(True)
            with shared.record():
                normal = prior(z_grad, t).eps
            recorded = len(calls)
            with torch.no_grad(), priors.perturbed_self_attention(prior, names), shared.replay():
                replayed = prior(z, t).eps
            assert len(calls) == recorded == 1  # replayed, not recomputed
            torch.testing.assert_close(replayed, full, rtol=0, atol=1e-6)
            # the normal pass kept its graph to z
            (grad,) = torch.autograd.grad(normal.square().sum(), z_grad)
            assert grad.abs().sum() > 0
    finally:
        handle.remove()


def test_shared_prefix_with_gradient_checkpointing(prior, inputs):
    """The solvers' memory-saving combination: checkpointed normal pass recorded, perturbed pass replayed, backward
    after both contexts. Same perturbed eps and same gradient as without checkpointing."""
    z, t = inputs
    ckpt = random_sd_prior(seed=0, gradient_checkpointing=True)
    results = []
    for model in (prior, ckpt):
        names = priors.resolve_layers(model, PSLD_PAG_LAYER)
        shared = priors.SharedPrefix(model.unet, [model.unet.get_submodule(n) for n in names], key=("ckpt",))
        z_grad = z.clone().requires_grad_(True)
        with shared.record():
            eps = model(z_grad, t).eps
        with torch.no_grad(), priors.perturbed_self_attention(model, names), shared.replay():
            eps_perturbed = model(z, t).eps
        (grad,) = torch.autograd.grad((eps + 2.0 * (eps - eps_perturbed)).square().sum(), z_grad)
        results.append((eps_perturbed, grad))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=0, atol=1e-6)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-5, atol=1e-6)


FRESH_INTERPRETER = """
import sys

import torch
import priors

assert "diffusers" not in sys.modules, "import priors alone must not import diffusers (seconds of start-up)"
from diffusers import UNet2DConditionModel

# an SD-shaped UNet built from diffusers alone (priors.sd is never imported here)
unet = UNet2DConditionModel(
    sample_size=8, block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8, attention_head_dim=4,
    cross_attention_dim=16, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
).eval()
assert "priors.sd" not in sys.modules
path = "down_blocks.0.attentions.0.transformer_blocks.0.attn1"
z, t = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([500])
text = torch.zeros(1, 3, 16)
with torch.no_grad():
    before = unet(z, t, text).sample
    with priors.perturbed_self_attention(unet, [path]) as names:
        perturbed = unet(z, t, text).sample
    after = unet(z, t, text).sample
assert names == [path], names
assert (perturbed - before).abs().max() > 1e-6  # the layer's attention map changed
assert torch.equal(after, before)  # restored
print("ok")
"""


def test_diffusers_unet_after_import_priors_alone(tmp_path):
    """A library user's first lines: ``import priors``, a diffusers UNet, PAG on one of its layers: works without
    importing ``priors.sd`` first (the kind registers on first need), in a fresh interpreter."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", FRESH_INTERPRETER], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_a_network_no_kind_knows_says_how_to_register_one():
    network = torch.nn.Sequential(torch.nn.MultiheadAttention(8, 2))
    with pytest.raises(
        ValueError, match=r"no registered attention kind knows Sequential's layers.*register_attention_kind"
    ):
        priors.resolve_layers(network, ["0"])
