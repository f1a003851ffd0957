"""LDM layer names of Stable Diffusion UNets (``priors.sd.layers``), checked on an SD1.5-shaped UNet built on the
meta device (no weights, no download) and on the tiny UNet."""

import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

import priors
from priors.sd import ldm_aliases, random_unet
from priors.sd.convert import ldm_unet_state_dict
from priors.sd.testing import SD15_UNET_CONFIG

# SD1.5 in the LDM paper code: input_blocks 0 conv_in; 1, 2 res+attn (320 ch); 3 down; 4, 5 res+attn (640);
# 6 down; 7, 8 res+attn (1280); 9 down; 10, 11 res only. Output blocks: 3 per level, the first level has no
# attention. Written out by hand, not derived.
SD15_ATTENTION = {
    "input_blocks.1.1": ("down_blocks.0.attentions.0", 320),
    "input_blocks.2.1": ("down_blocks.0.attentions.1", 320),
    "input_blocks.4.1": ("down_blocks.1.attentions.0", 640),
    "input_blocks.5.1": ("down_blocks.1.attentions.1", 640),
    "input_blocks.7.1": ("down_blocks.2.attentions.0", 1280),
    "input_blocks.8.1": ("down_blocks.2.attentions.1", 1280),
    "middle_block.1": ("mid_block.attentions.0", 1280),
    "output_blocks.3.1": ("up_blocks.1.attentions.0", 1280),
    "output_blocks.4.1": ("up_blocks.1.attentions.1", 1280),
    "output_blocks.5.1": ("up_blocks.1.attentions.2", 1280),
    "output_blocks.6.1": ("up_blocks.2.attentions.0", 640),
    "output_blocks.7.1": ("up_blocks.2.attentions.1", 640),
    "output_blocks.8.1": ("up_blocks.2.attentions.2", 640),
    "output_blocks.9.1": ("up_blocks.3.attentions.0", 320),
    "output_blocks.10.1": ("up_blocks.3.attentions.1", 320),
    "output_blocks.11.1": ("up_blocks.3.attentions.2", 320),
}


@pytest.fixture(scope="module")
def sd15_unet():
    with torch.device("meta"):
        return UNet2DConditionModel(**SD15_UNET_CONFIG)


def test_sd15_alias_table(sd15_unet):
    aliases = ldm_aliases(sd15_unet)
    block_aliases = {k: v for k, v in aliases.items() if ".transformer_blocks." not in k and "_blocks" in k}
    block_aliases.update({k: v for k, v in aliases.items() if k.startswith("middle_block") and "transformer" not in k})
    assert block_aliases == {k: path for k, (path, _) in SD15_ATTENTION.items()}
    for ldm, (path, channels) in SD15_ATTENTION.items():
        attn1 = sd15_unet.get_submodule(f"{path}.transformer_blocks.0.attn1")
        assert aliases[f"{ldm}.transformer_blocks.0.attn1"] == f"{path}.transformer_blocks.0.attn1"
        assert attn1.to_v.in_features == channels
        assert not attn1.is_cross_attention
    assert aliases["mid"] == "mid_block.attentions.0"


def test_psld_pag_layer_is_1280_channels_16x16_tokens(sd15_unet):
    """PSLD+PAG's layer ``input_blocks.8.1.transformer_blocks.0.attn1`` sees 16x16 tokens of 1280 channels for a
    512 px image (64x64 latent): shapes from a meta-device forward pass."""
    (name,) = priors.resolve_layers(sd15_unet, ["input_blocks.8.1.transformer_blocks.0.attn1"])
    assert name == "down_blocks.2.attentions.1.transformer_blocks.0.attn1"
    seen = {}
    handle = sd15_unet.get_submodule(name).register_forward_hook(
        lambda module, args, out: seen.update(tokens=tuple(args[0].shape))
    )
    with torch.no_grad():
        sd15_unet(
            torch.empty(1, 4, 64, 64, device="meta"),
            torch.tensor([500], device="meta"),
            encoder_hidden_states=torch.empty(1, 77, 768, device="meta"),
        )
    handle.remove()
    assert seen["tokens"] == (1, 16 * 16, 1280)


def test_exact_matching_and_unknown_names(sd15_unet):
    one = priors.resolve_layers(sd15_unet, "input_blocks.1.1")
    assert one == ["down_blocks.0.attentions.0.transformer_blocks.0.attn1"]  # not input_blocks.10/11
    with pytest.raises(ValueError, match=r"unknown self-attention layer 'input_blocks\.10\.1'") as err:
        priors.resolve_layers(sd15_unet, "input_blocks.10.1")  # resnet only in SD1.5
    assert "down_blocks.2.attentions.1.transformer_blocks.0.attn1" in str(err.value)  # lists the valid layers
    with pytest.raises(ValueError, match="unknown"):
        priors.resolve_layers(sd15_unet, "input_blocks.3.1")  # a downsampler
    with pytest.raises(ValueError, match="unknown"):
        priors.resolve_layers(sd15_unet, "output_blocks.2.1")  # up_blocks.0: upsampler, no attention
    # a container stands for its self-attention layers only (attn1, never the cross-attention attn2)
    assert priors.resolve_layers(sd15_unet, "middle_block.1") == ["mid_block.attentions.0.transformer_blocks.0.attn1"]
    assert priors.resolve_layers(sd15_unet, "mid") == priors.resolve_layers(sd15_unet, "middle_block.1")
    assert len(priors.resolve_layers(sd15_unet, "down")) == 6
    assert len(priors.resolve_layers(sd15_unet, "up")) == 9


@pytest.mark.parametrize("layers_per_block", [2, 1])
def test_ldm_names_agree_with_diffusers_checkpoint_conversion(sd15_unet, layers_per_block):
    """Our LDM names, fed to diffusers' own LDM->diffusers converter, come back as the same parameters
    (SD1.5 shapes on the meta device: names and shapes; the tiny UNet: values)."""
    if layers_per_block == 2:
        unet = sd15_unet
    else:
        with torch.device("meta"):
            unet = UNet2DConditionModel(**{**SD15_UNET_CONFIG, "layers_per_block": 1})
    for model, compare_values in ((unet, False), (random_unet(layers_per_block=layers_per_block), True)):
        ldm = {f"model.diffusion_model.{k}": v for k, v in ldm_unet_state_dict(model).items()}
        back = convert_ldm_unet_checkpoint(ldm, dict(model.config))
        state = model.state_dict()
        assert set(back) == set(state)
        for key, value in state.items():
            assert back[key].shape == value.shape, key
            if compare_values:
                assert torch.equal(back[key], value), key


def test_layers_per_block_1_numbering():
    """With one layer per block the LDM numbering shifts: input_blocks 1 (attn), 2 (down), 3 (attn), 4, 5, 6, 7
    (res only); output_blocks 2 per level."""
    unet = random_unet(layers_per_block=1)
    aliases = ldm_aliases(unet)
    assert aliases["input_blocks.1.1"] == "down_blocks.0.attentions.0"
    assert aliases["input_blocks.3.1"] == "down_blocks.1.attentions.0"
    assert aliases["input_blocks.5.1"] == "down_blocks.2.attentions.0"
    assert "input_blocks.7.1" not in aliases
    assert aliases["output_blocks.2.1"] == "up_blocks.1.attentions.0"
    assert aliases["output_blocks.7.1"] == "up_blocks.3.attentions.1"
    assert not any(k.startswith(("output_blocks.0.", "output_blocks.1.")) for k in aliases)


def test_import_priors_does_not_import_diffusers():
    """Only ``priors.sd`` pulls in diffusers (and transformers); ADM-only use stays light."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    code = "import sys, priors; print(int('diffusers' in sys.modules), int('transformers' in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo, env=env)
    assert out.stdout.split() == ["0", "0"]
