"""PAG's perturbed pass reuses the decoder's skip parts (``priors.SkipBranch``): same numbers, less work.

Truth: the full perturbed pass (PAG mode ``no_grad``) in float64, and the multiply-adds the skipped convolution
channels account for, counted from the layer shapes.
"""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import priors
from priors.adm import ADMPrior
from priors.prefix import SkipBranch, _SkipSplit
from priors.sd import random_sd_prior, skip_branches
from solvers import PAG, NoisePredictor

ADM_LAYER = "input_blocks.3.1"  # tiny preset: the 16 px attention after input blocks 0-2
SD_LAYER = "input_blocks.8.1.transformer_blocks.0.attn1"  # PSLD_PAG's layer


@pytest.fixture(scope="module")
def adm():
    return ADMPrior.from_preset("test", init="random", generator=torch.Generator().manual_seed(0)).double()


@pytest.fixture(scope="module")
def sd():
    return random_sd_prior(seed=0).double()


def run_calls(prior, layer, x, t, mode, calls=3):
    """(eps, eps_perturbed, d|eps|^2/dx) of ``calls`` consecutive steps of one NoisePredictor, and the predictor."""
    predict = NoisePredictor(prior, PAG(1.0, (layer,), mode=mode))
    out = []
    for _ in range(calls):
        x_grad = x.clone().requires_grad_(True)
        pred = predict(x_grad, t)
        (grad,) = torch.autograd.grad(pred.eps.square().sum(), x_grad)
        out.append((pred.eps.detach(), pred.eps_perturbed, grad))
    return out, predict


def shared_prefix_of(predict):
    (shared,) = predict._shared.values()
    return shared


def assert_same(got, want):
    for a, b in zip(got, want, strict=True):
        for u, v in zip(a, b, strict=True):
            torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-10)


def test_adm_shared_skips_give_the_full_perturbed_pass(adm):
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    shared, predict = run_calls(adm, ADM_LAYER, x, 400, "shared_prefix")
    full, _ = run_calls(adm, ADM_LAYER, x, 400, "no_grad")
    assert_same(shared, full)  # every call: the first finds the prefix, the later ones split the convs
    # the skips of input blocks 0-2 (made before the perturbed layer) feed the last three output blocks
    n = len(adm.network.output_blocks)
    branches = shared_prefix_of(predict).shared_skips
    assert [b.source for b in branches] == ["input_blocks.2", "input_blocks.1", "input_blocks.0"]
    assert [b.conv for b in branches] == [f"output_blocks.{i}.0.in_layers.2" for i in (n - 3, n - 2, n - 1)]
    # a GroupNorm group straddles h and the skip in some of them: the reused conv part starts at a group boundary
    splits = shared_prefix_of(predict)._splits
    assert any(split.boundary > split.branch.live for split in splits)
    assert all(split.boundary % (split.norm.num_channels // split.norm.num_groups) == 0 for split in splits)


@pytest.mark.parametrize("layer", [SD_LAYER, "output_blocks.3.1"])
def test_sd_shared_skips_give_the_full_perturbed_pass(sd, layer):
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    shared, predict = run_calls(sd, layer, z, 600, "shared_prefix")
    full, _ = run_calls(sd, layer, z, 600, "no_grad")
    assert_same(shared, full)
    used = shared_prefix_of(predict).shared_skips
    assert used  # something is reused, and never inside a block the prefix replays whole
    plan = shared_prefix_of(predict).plan
    assert not any(b.conv.startswith(p + ".") for b in used for p in plan)


def perturbed_pass_flops(prior, layer, x, t, mode):
    """FLOPs of the perturbed pass alone, after two recorded steps (so that skip splitting is on), and the
    SharedPrefix with each split conv's output pixels (batch x height x width) in the normal pass."""
    predict = NoisePredictor(prior, PAG(1.0, (layer,), mode=mode))
    for _ in range(2):
        predict(x.clone().requires_grad_(True), t)
    shared = shared_prefix_of(predict)
    pixels, handles = {}, []
    for split in shared._splits or []:

        def hook(module, args, out, name=split.branch.conv):
            pixels[name] = out[:, 0].numel()

        handles.append(split.conv.register_forward_hook(hook))
    with shared.record():
        prior(x.clone().requires_grad_(True), t)
    for handle in handles:
        handle.remove()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), priors.perturbed_self_attention(prior, predict.layers), shared.replay(), counter:
        prior(x, t)
    return counter.get_total_flops(), shared, pixels


def test_adm_perturbed_pass_skips_exactly_the_shared_multiply_adds(adm):
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    prefix_only, _, _ = perturbed_pass_flops(adm, ADM_LAYER, x, 500, "prefix_only")
    with_skips, shared, pixels = perturbed_pass_flops(adm, ADM_LAYER, x, 500, "shared_prefix")
    # 2 FLOPs per multiply-add: the conv over its (C_in - boundary) reused input channels, the 1x1 shortcut over
    # the skip channels, at every output pixel
    expected = 0
    for split in shared._splits:
        conv, shortcut, n = split.conv, split.shortcut, pixels[split.branch.conv]
        expected += 2 * n * conv.out_channels * (conv.in_channels - split.boundary) * conv.weight[0, 0].numel()
        expected += 2 * n * shortcut.out_channels * (shortcut.in_channels - split.branch.live)
    assert len(shared._splits) == 3 and expected > 0
    assert prefix_only - with_skips == expected


def test_replayed_conv_sees_only_the_live_channels(adm):
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    predict = NoisePredictor(adm, PAG(1.0, (ADM_LAYER,)))
    for _ in range(2):
        predict(x.clone().requires_grad_(True), 500)
    shared = shared_prefix_of(predict)
    split = shared._splits[0]
    seen = []
    handle = split.conv.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[1]))
    try:
        with shared.record():
            adm(x.clone().requires_grad_(True), 500)
        with torch.no_grad(), priors.perturbed_self_attention(adm, predict.layers), shared.replay():
            adm(x, 500)
    finally:
        handle.remove()
    assert seen == [split.conv.in_channels, split.boundary]


def test_checkpointed_blocks_are_not_split(sd):
    adm = ADMPrior.from_preset("test", init="random", use_checkpoint=True)
    assert adm.skip_branches() == []
    ckpt = random_sd_prior(seed=0, gradient_checkpointing=True)
    assert skip_branches(ckpt.unet) == []
    assert len(skip_branches(sd.unet)) == sum(len(b.resnets) for b in sd.unet.up_blocks)


def test_checkpointed_sd_prior_with_pag_matches_the_plain_one():
    """Gradient checkpointing reruns blocks in backward; the shared prefix must still give the same numbers."""
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    plain, _ = run_calls(random_sd_prior(seed=0), SD_LAYER, z, 300, "shared_prefix", calls=2)
    ckpt, _ = run_calls(random_sd_prior(seed=0, gradient_checkpointing=True), SD_LAYER, z, 300, "shared_prefix", 2)
    for a, b in zip(plain, ckpt, strict=True):
        for u, v in zip(a, b, strict=True):
            torch.testing.assert_close(u, v, rtol=1e-5, atol=1e-6)


def test_bad_skip_branches_are_refused(adm):
    net = adm.network
    good = net.skip_branches()[-1]
    with pytest.raises(ValueError, match="live channels"):
        _SkipSplit(net, SkipBranch(good.source, good.norm, good.conv, good.shortcut, live=0))
    with pytest.raises(ValueError, match="GroupNorm"):
        _SkipSplit(net, SkipBranch(good.source, good.conv, good.conv, good.shortcut, live=good.live))
