"""ADM attention: SDPA path vs guided-diffusion's einsum formula, PAG's identity attention, layer names,
and the shared-prefix replay of the perturbed pass."""

import math

import pytest
import torch
import torch.nn.functional as F

from priors import SharedPrefix, perturbed_self_attention, resolve_layers, self_attention_layers
from priors.adm import PAG_LAYERS, PAPER_IMAGENET_DPS_LAYERS, ADMUNet, AttentionBlock, preset_config, randomize_


def random_unet(seed: int = 0, **overrides) -> ADMUNet:
    return randomize_(ADMUNet(**preset_config("test", **overrides)), torch.Generator().manual_seed(seed)).eval()


def inputs(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed)), torch.tensor([3, 871])


def head_rows(block: AttentionBlock, head: int, component: int) -> slice:
    """Rows of ``qkv`` holding component 0/1/2 (q/k/v) of ``head``, per guided-diffusion's two orders."""
    c, ch = block.channels, block.channels // block.num_heads
    start = head * 3 * ch + component * ch if block.legacy_order else component * c + head * ch
    return slice(start, start + ch)


def conv1x1(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("oc,bct->bot", weight[:, :, 0], x) + bias[None, :, None]


def reference_block(block: AttentionBlock, x: torch.Tensor, identity: bool = False) -> torch.Tensor:
    """guided-diffusion's AttentionBlock (QKVAttentionLegacy / QKVAttention): head by head, q and k each scaled
    by ch^-1/4, float32 softmax; ``identity``: the attention map replaced by I, i.e. the values."""
    b, c, *spatial = x.shape
    x = x.reshape(b, c, -1)
    normed = F.group_norm(x.float(), 32, block.norm.weight.float(), block.norm.bias.float(), 1e-5).to(x.dtype)
    w, bias = block.qkv.weight, block.qkv.bias
    heads = []
    for head in range(block.num_heads):
        q, k, v = (conv1x1(w[head_rows(block, head, j)], bias[head_rows(block, head, j)], normed) for j in range(3))
        if identity:
            heads.append(v)
            continue
        scale = 1 / math.sqrt(math.sqrt(q.shape[1]))
        logits = torch.einsum("bct,bcs->bts", q * scale, k * scale)
        weights = torch.softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1).to(logits.dtype)
        heads.append(torch.einsum("bts,bcs->bct", weights, v))
    out = x + conv1x1(block.proj_out.weight, block.proj_out.bias, torch.cat(heads, dim=1))
    return out.reshape(b, c, *spatial)


def random_block(legacy: bool, seed: int = 0) -> tuple[AttentionBlock, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    block = AttentionBlock(64, num_head_channels=16, use_new_attention_order=not legacy)
    randomize_(block, g)
    return block, 2 * torch.randn(2, 64, 8, 8, generator=g)


@pytest.mark.parametrize("legacy", [True, False])
def test_sdpa_attention_matches_einsum_float32_softmax_reference(legacy):
    block, x = random_block(legacy)
    assert block.num_heads == 4
    with torch.no_grad():
        torch.testing.assert_close(block(x), reference_block(block, x), atol=1e-5, rtol=1e-5)
        block64 = block.double()
        x64 = x.double()
        torch.testing.assert_close(block64(x64), reference_block(block64, x64), atol=1e-12, rtol=1e-12)


def test_half_precision_attention_close_to_float32_reference():
    block, x = random_block(legacy=True)
    with torch.no_grad():
        reference = reference_block(block, x)
        low = block.half()(x.half()).float()
    assert (low - reference).abs().max() < 1e-2 * reference.abs().max()


@pytest.mark.parametrize("legacy", [True, False])
def test_perturbed_block_is_residual_plus_projected_values(legacy):
    block, x = random_block(legacy)
    block.perturbed = True
    with torch.no_grad():
        torch.testing.assert_close(block(x), reference_block(block, x, identity=True), atol=1e-5, rtol=1e-5)
        # the values are not "the last third of the channels" in the legacy order
        block.perturbed = False
        assert not torch.allclose(block(x), reference_block(block, x, identity=True), atol=1e-3)


def capture(module: torch.nn.Module) -> tuple[list, torch.utils.hooks.RemovableHandle]:
    seen = []
    handle = module.register_forward_hook(lambda m, args, out: seen.append((args[0], out)))
    return seen, handle


@pytest.mark.parametrize(("legacy", "layer"), [(True, "input_blocks.3.1"), (False, "middle_block.1")])
def test_perturbed_layer_inside_model_and_model_unchanged_afterwards(legacy, layer):
    model = random_unet(use_new_attention_order=not legacy)
    x, t = inputs()
    block = model.get_submodule(layer)
    with torch.no_grad():
        before = model(x, t)
        with perturbed_self_attention(model, [layer]) as names:
            assert names == [layer] and block.perturbed
            seen, handle = capture(block)
            perturbed = model(x, t)
            handle.remove()
        after = model(x, t)
    assert not block.perturbed
    ((block_in, block_out),) = seen
    torch.testing.assert_close(block_out, reference_block(block, block_in, identity=True), atol=1e-5, rtol=1e-5)
    assert torch.equal(before, after)  # bit-identical once the context has exited
    assert (perturbed - before).abs().max() > 1e-3  # and the perturbation did something


def test_only_named_layers_are_perturbed():
    model = random_unet()
    x, t = inputs()
    states = []
    hooks = [
        m.register_forward_hook(lambda m, a, o: states.append(m.perturbed))
        for m in self_attention_layers(model).values()
    ]
    with torch.no_grad(), perturbed_self_attention(model, ["input_blocks.5.1", "output_blocks.2.1"]):
        model(x, t)
    for h in hooks:
        h.remove()
    names = list(self_attention_layers(model))
    assert dict(zip(names, states)) == {n: n in ("input_blocks.5.1", "output_blocks.2.1") for n in names}


def test_unknown_layer_names_raise_listing_valid_layers():
    model = random_unet()
    for bad in ["input_blocks.4.1", "input_blocks.1", "middle_block.0", "mid_block.attentions.0"]:
        valid = r"Valid layers: input_blocks\.3\.1, input_blocks\.5\.1, middle_block\.1"
        with pytest.raises(ValueError, match=valid), perturbed_self_attention(model, [bad]):
            pass
    assert not any(m.perturbed for m in self_attention_layers(model).values())
    assert resolve_layers(model, "input_blocks.3") == ["input_blocks.3.1"]  # a container names its attention


def test_pag_layers_resolve_on_their_presets():
    for preset, uses in PAG_LAYERS.items():
        with torch.device("meta"):
            model = ADMUNet(**preset_config(preset))
        for layers in uses.values():
            assert resolve_layers(model, layers) == list(layers)
    with torch.device("meta"):
        imagenet = ADMUNet(**preset_config("imagenet_256_uncond"))
    # exact matching: "input_blocks.1" is not a prefix of input_blocks.10.1 / 11.1 / ...
    with pytest.raises(ValueError, match=r"unknown self-attention layer 'input_blocks\.1'"):
        resolve_layers(imagenet, ["input_blocks.1"])
    # the paper's literal ImageNet DPS list names a layer that the ImageNet UNet does not have
    with pytest.raises(ValueError, match=r"'input_blocks\.9\.1'.*input_blocks\.10\.1"):
        resolve_layers(imagenet, PAPER_IMAGENET_DPS_LAYERS)


def test_checkpointed_perturbed_pass_recomputes_the_same_branch():
    """The backward of a checkpointed block recomputes with the flag it had in forward, not the current one."""
    plain = random_unet()
    ckpt = random_unet(use_checkpoint=True)
    layers = ["input_blocks.3.1", "middle_block.1"]
    x, t = inputs()
    grads = []
    for model in (plain, ckpt):
        xi = x.clone().requires_grad_(True)
        with perturbed_self_attention(model, layers):
            out = model(xi, t)
        (grad,) = torch.autograd.grad(out.square().sum(), xi)  # backward after the context has exited
        grads.append(grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(
    ("layers", "class_cond"), [(["input_blocks.5.1"], False), (["input_blocks.3.1", "middle_block.1"], True)]
)
def test_shared_prefix_replay_equals_full_perturbed_pass(layers, class_cond):
    model = random_unet(class_cond=class_cond)
    x, t = inputs()
    y = torch.tensor([7, 123]) if class_cond else None
    names = resolve_layers(model, layers)
    shared = SharedPrefix(model, [model.get_submodule(n) for n in names], key=("adm-test", class_cond))
    with torch.no_grad(), perturbed_self_attention(model, layers):
        full = model(x, t, y)

    stem_calls = []
    watched = [model.input_blocks[0][0], model.time_embed[0], model.input_blocks[1][0].in_layers[2]]
    hooks = [m.register_forward_pre_hook(lambda m, a: stem_calls.append(m)) for m in watched]
    for _ in range(2):  # the first round finds the plan, the second uses it
        xi = x.clone().requires_grad_(True)
        with shared.record():
            normal = model(xi, t, y)
        assert normal.requires_grad
        stem_calls.clear()
        with torch.no_grad(), perturbed_self_attention(model, layers), shared.replay():
            replayed = model(x, t, y)
        assert stem_calls == []  # stem conv, time embedding, first ResBlock: replayed, not run
        torch.testing.assert_close(replayed, full, atol=1e-6, rtol=1e-6)
    for h in hooks:
        h.remove()
    assert "input_blocks.0" in shared.plan and "time_embed" in shared.plan
