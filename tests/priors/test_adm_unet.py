"""ADMUNet: guided-diffusion's module tree and state-dict table, its numerics, precision and checkpointing."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from priors.adm import PRESETS, ADMUNet, AttentionBlock, ResBlock, preset_config, randomize_, timestep_embedding


def meta_unet(preset: str, **overrides) -> ADMUNet:
    with torch.device("meta"):
        return ADMUNet(**preset_config(preset, **overrides))


def random_unet(seed: int = 0, **overrides) -> ADMUNet:
    return randomize_(ADMUNet(**preset_config("test", **overrides)), torch.Generator().manual_seed(seed)).eval()


def shapes(model: ADMUNet) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def inputs(batch: int = 2, size: int = 32, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, size, size, generator=g), torch.tensor([3, 871][:batch] + [500] * (batch - 2))


# --- state-dict tables (SPEC section 3; shapes derived from guided-diffusion's unet.py) -----------------


def test_ffhq_256_state_dict_table():
    model = meta_unet("ffhq_256")
    table = shapes(model)
    assert len(table) == 362
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == 93.6
    expected = {
        "time_embed.0.weight": (512, 128),
        "time_embed.2.weight": (512, 512),
        "input_blocks.0.0.weight": (128, 3, 3, 3),  # stem conv
        "input_blocks.1.0.in_layers.0.weight": (128,),  # GroupNorm
        "input_blocks.1.0.in_layers.2.weight": (128, 128, 3, 3),
        "input_blocks.1.0.emb_layers.1.weight": (256, 512),  # 2 x out for scale-shift
        "input_blocks.1.0.out_layers.0.weight": (128,),
        "input_blocks.1.0.out_layers.3.weight": (128, 128, 3, 3),
        "input_blocks.2.0.in_layers.2.weight": (128, 128, 3, 3),  # downsampling ResBlock (resblock_updown)
        "input_blocks.5.0.skip_connection.weight": (256, 128, 1, 1),  # 128 -> 256 channels: 1x1 skip conv
        "input_blocks.9.1.norm.weight": (512,),
        "input_blocks.9.1.qkv.weight": (1536, 512, 1),
        "input_blocks.9.1.proj_out.weight": (512, 512, 1),
        "middle_block.0.emb_layers.1.weight": (1024, 512),
        "middle_block.1.qkv.weight": (1536, 512, 1),
        "middle_block.1.qkv.bias": (1536,),
        "output_blocks.0.0.in_layers.0.weight": (1024,),  # 512 + 512 skip channels
        "output_blocks.0.0.skip_connection.weight": (512, 1024, 1, 1),
        "output_blocks.3.2.in_layers.2.weight": (512, 512, 3, 3),  # upsampling ResBlock after attention
        "output_blocks.11.0.skip_connection.weight": (128, 256, 1, 1),  # last ResBlock: 128 + 128 -> 128
        "out.0.weight": (128,),
        "out.2.weight": (6, 128, 3, 3),
        "out.2.bias": (6,),
    }
    assert {k: table.get(k) for k in expected} == expected
    # no skip conv where the width is unchanged, no label embedding, input_blocks.11 is the last encoder block
    assert "input_blocks.1.0.skip_connection.weight" not in table
    assert not any(k.startswith("label_emb") for k in table)
    assert max(int(k.split(".")[1]) for k in table if k.startswith("input_blocks.")) == 11
    assert max(int(k.split(".")[1]) for k in table if k.startswith("output_blocks.")) == 11
    attention = {n: m.num_heads for n, m in model.named_modules() if isinstance(m, AttentionBlock)}
    assert attention == {"input_blocks.9.1": 8, "middle_block.1": 8, "output_blocks.2.1": 8, "output_blocks.3.1": 8}


def test_imagenet_256_state_dict_tables():
    model = meta_unet("imagenet_256_uncond")
    table = shapes(model)
    assert len(table) == 566
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == 552.8
    expected = {
        "time_embed.0.weight": (1024, 256),
        "input_blocks.0.0.weight": (256, 3, 3, 3),
        "input_blocks.1.0.emb_layers.1.weight": (512, 1024),
        "input_blocks.10.1.qkv.weight": (1536, 512, 1),  # first attention: 32 px, 512 channels
        "input_blocks.17.1.qkv.weight": (3072, 1024, 1),
        "middle_block.1.qkv.weight": (3072, 1024, 1),
        "output_blocks.0.0.skip_connection.weight": (1024, 2048, 1, 1),
        "out.2.weight": (6, 256, 3, 3),
    }
    assert {k: table.get(k) for k in expected} == expected
    # input_blocks.9 is the 64 -> 32 px downsampling ResBlock: no attention layer there
    assert not any(k.startswith("input_blocks.9.1.") for k in table)
    layers = [n for n, m in model.named_modules() if isinstance(m, AttentionBlock)]
    assert len(layers) == 16 and {"input_blocks.14.1", "input_blocks.16.1", "middle_block.1"} <= set(layers)

    cond = meta_unet("imagenet_256_cond")
    cond_table = shapes(cond)
    assert len(cond_table) == 567 and cond_table["label_emb.weight"] == (1000, 1024)
    assert {k: v for k, v in cond_table.items() if k != "label_emb.weight"} == table


def test_channel_mult_and_attention_resolution_parsing():
    a = meta_unet("ffhq_256", channel_mult="", attention_resolutions=16)  # "" = 256 px default; DPS yaml int
    b = meta_unet("ffhq_256", channel_mult=(1, 1, 2, 2, 4, 4), attention_resolutions=[16])
    assert shapes(a) == shapes(b) == shapes(meta_unet("ffhq_256"))
    assert a.config["channel_mult"] == (1, 1, 2, 2, 4, 4) and a.config["attention_resolutions"] == (16,)
    # guided-diffusion's 512 px default starts at half width
    assert shapes(meta_unet("ffhq_256", image_size=512, channel_mult=""))["input_blocks.0.0.weight"] == (64, 3, 3, 3)
    with pytest.raises(ValueError, match="feature-map sizes"):
        meta_unet("test", attention_resolutions="4")  # the tiny UNet bottoms out at 8 px
    with pytest.raises(ValueError, match="no default channel_mult"):
        meta_unet("test", channel_mult="")
    with pytest.raises(ValueError, match="divisible"):
        meta_unet("test", num_head_channels=24)


def test_config_rebuilds_the_same_model():
    model = random_unet()
    assert shapes(ADMUNet(**model.config)) == shapes(model)


# --- numerics against closed forms and independent computations -----------------------------------------


def test_timestep_embedding_closed_form():
    t = torch.tensor([0, 1, 999, 250])
    dim = 10
    emb = timestep_embedding(t, dim)
    for row, step in zip(emb, t.tolist()):
        for i in range(dim // 2):
            freq = 10000 ** (-i / (dim // 2))
            assert row[i].item() == pytest.approx(math.cos(step * freq), abs=1e-4)
            assert row[dim // 2 + i].item() == pytest.approx(math.sin(step * freq), abs=1e-4)
    assert timestep_embedding(t, 7)[:, -1].eq(0).all()  # odd width: zero padded


def reference_resblock(block: ResBlock, x: torch.Tensor, emb: torch.Tensor, resample: str | None) -> torch.Tensor:
    """guided-diffusion's ResBlock written out with functional ops on the block's weights."""
    in_norm, _, in_conv = block.in_layers
    out_norm, _, _, out_conv = block.out_layers

    def resample_(z):
        if resample == "down":
            return F.avg_pool2d(z, 2)
        if resample == "up":
            return F.interpolate(z, scale_factor=2, mode="nearest")
        return z

    h = F.silu(F.group_norm(x, 32, in_norm.weight, in_norm.bias, 1e-5))
    h = F.conv2d(resample_(h), in_conv.weight, in_conv.bias, padding=1)
    skip = resample_(x)
    e = F.linear(F.silu(emb), block.emb_layers[1].weight, block.emb_layers[1].bias)[:, :, None, None]
    if block.use_scale_shift_norm:
        scale, shift = e[:, : block.out_channels], e[:, block.out_channels :]
        h = F.group_norm(h, 32, out_norm.weight, out_norm.bias, 1e-5) * (1 + scale) + shift
    else:
        h = F.group_norm(h + e, 32, out_norm.weight, out_norm.bias, 1e-5)
    h = F.conv2d(F.silu(h), out_conv.weight, out_conv.bias, padding=1)
    if block.out_channels != block.channels:
        skip = F.conv2d(skip, block.skip_connection.weight, block.skip_connection.bias)
    return skip + h


@pytest.mark.parametrize(
    ("out_channels", "scale_shift", "resample"),
    [(64, True, None), (96, False, None), (64, True, "down"), (64, False, "up")],
)
def test_resblock_matches_reference(out_channels, scale_shift, resample):
    g = torch.Generator().manual_seed(3)
    block = ResBlock(
        64, 40, out_channels, use_scale_shift_norm=scale_shift, up=resample == "up", down=resample == "down"
    )
    randomize_(block, g)
    x, emb = torch.randn(2, 64, 8, 8, generator=g), torch.randn(2, 40, generator=g)
    torch.testing.assert_close(block(x, emb), reference_resblock(block, x, emb, resample), atol=1e-5, rtol=1e-5)


def test_outputs_learned_sigma_channels_and_depend_on_timestep():
    model = random_unet()
    x, t = inputs()
    with torch.no_grad():
        out = model(x, t)
        assert out.shape == (2, 6, 32, 32) and out.dtype == torch.float32
        assert not torch.allclose(out, model(x, t + 100))
        torch.testing.assert_close(model(x[:1], 3), out[:1], atol=1e-5, rtol=1e-4)  # scalar t broadcasts
    assert random_unet(learn_sigma=False)(x, t).shape == (2, 3, 32, 32)


def test_class_labels_required_exactly_when_class_conditional():
    x, t = inputs()
    with pytest.raises(ValueError, match="class labels"):
        random_unet(class_cond=True)(x, t)
    with pytest.raises(ValueError, match="class labels"):
        random_unet()(x, t, torch.tensor([1, 2]))


def test_guided_diffusion_init_zeroes_residual_outputs():
    model = ADMUNet(**PRESETS["test"])  # torch default init + zero_module, as guided-diffusion trains from
    assert model.out[2].weight.abs().sum() == 0 and model.middle_block[1].proj_out.weight.abs().sum() == 0
    x, t = inputs()
    assert model(x, t).abs().max() == 0


# --- speed path, checkpointing, precision ---------------------------------------------------------------


def test_tiny_forward_backward_on_cpu():
    model = random_unet().train()
    x, t = inputs()
    x.requires_grad_(True)
    loss = model(x, t).square().mean()
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.parameters())


def test_gradient_checkpointing_gives_same_outputs_and_gradients():
    plain = random_unet()
    ckpt = random_unet(use_checkpoint=True)
    ckpt.load_state_dict(plain.state_dict())
    x, t = inputs()
    grads = []
    for model in (plain, ckpt):
        xi = x.clone().requires_grad_(True)
        out = model(xi, t)
        out.square().mean().backward()
        grads.append((out.detach(), xi.grad, [p.grad for p in model.parameters()]))
    torch.testing.assert_close(grads[0][0], grads[1][0], atol=0, rtol=0)
    torch.testing.assert_close(grads[0][1], grads[1][1], atol=1e-7, rtol=1e-6)
    for a, b in zip(grads[0][2], grads[1][2]):
        torch.testing.assert_close(a, b, atol=1e-7, rtol=1e-6)


def test_bfloat16_autocast_runs_and_stays_close():
    model = random_unet()
    x, t = inputs(batch=1, size=16)  # reduced-precision convs are slow on CPUs: keep it small
    with torch.no_grad():
        reference = model(x, t)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x, t)
    assert low.dtype == torch.float32  # returned in the input's dtype
    assert (low - reference).abs().max() < 0.05 * reference.abs().max()


def test_use_fp16_matches_float32_model():
    model = random_unet()
    half = ADMUNet(**{**model.config, "use_fp16": True})
    half.load_state_dict(model.state_dict())
    assert half.input_blocks[3][1].qkv.weight.dtype == torch.float16
    assert half.input_blocks[3][1].norm.weight.dtype == torch.float32  # GroupNorm, Linear and head stay fp32
    assert half.time_embed[0].weight.dtype == half.out[2].weight.dtype == torch.float32
    x, t = inputs(batch=1, size=16)
    with torch.no_grad():
        reference, low = model(x, t), half(x, t)
    assert low.dtype == torch.float32
    assert (low - reference).abs().max() < 0.02 * reference.abs().max()
    # a fully cast model (load_adm(dtype=...)) also runs, GroupNorm still in float32
    full = copy.deepcopy(model).to(torch.bfloat16)
    with torch.no_grad():
        out = full(x, t)
    assert out.dtype == torch.float32 and (out - reference).abs().max() < 0.05 * reference.abs().max()
