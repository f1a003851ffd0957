"""Small Stable-Diffusion-shaped components with random weights, built from configs (no download), for tests and
cost measurements. Not the shipped trained latent prior (``priors.tiny.load_tiny_sd``, architecture
``priors.tiny.TINY_SD_UNET_CONFIG``).

The UNet keeps SD1.5's block types and ``layers_per_block=2`` (so every LDM layer name of the papers,
``input_blocks.8.1`` included, exists) with 16-32 channels; the VAE downsamples by 4 (three levels); the text
encoder is a 2-layer CLIP over a byte-level BPE vocabulary written here (no vocabulary file is downloaded).
Everything is deterministic given the seed and leaves the global RNG untouched.

Default shapes: 32x32 RGB images <-> 4x8x8 latents, text embeddings (1, 16, 32).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

from .prior import StableDiffusionPrior

SD15_UNET_CONFIG = {  # runwayml/stable-diffusion-v1-5 unet/config.json
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "attention_head_dim": 8,
    "cross_attention_dim": 768,
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-5,
    "norm_num_groups": 32,
    "act_fn": "silu",
    "center_input_sample": False,
}

SD_SCHEDULER_CONFIG = {  # Stable Diffusion's training schedule, as a DDIM scheduler config
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}

TEST_UNET_CONFIG = {
    **SD15_UNET_CONFIG,
    "sample_size": 8,
    "block_out_channels": [16, 32, 32, 32],
    "attention_head_dim": 2,  # diffusers' name for the number of heads
    "cross_attention_dim": 32,
    "norm_num_groups": 8,
}

TEST_VAE_CONFIG = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 3,
    "up_block_types": ["UpDecoderBlock2D"] * 3,
    "block_out_channels": [16, 32, 32],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 8,
    "sample_size": 32,
    "scaling_factor": 0.18215,
}

TEST_TEXT_CONFIG = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "max_position_embeddings": 16,
    "hidden_act": "quick_gelu",
    "projection_dim": 32,
}

TEST_WORDS = ("a", "photo", "of", "face", "person", "high", "quality", "blurry", "dog", "cat")


def random_unet(seed: int = 0, **overrides) -> UNet2DConditionModel:
    """SD1.5-shaped UNet (same block types, ``layers_per_block=2``) with 16/32 channels."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet2DConditionModel(**{**TEST_UNET_CONFIG, **overrides}).eval()


def random_vae(seed: int = 0, down_factor: int = 4, **overrides) -> AutoencoderKL:
    """A small ``AutoencoderKL`` downsampling by ``down_factor`` (4 or 8)."""
    levels = {4: 3, 8: 4}.get(down_factor)
    if levels is None:
        raise ValueError(f"down_factor must be 4 or 8, got {down_factor}")
    config = {
        **TEST_VAE_CONFIG,
        "down_block_types": ["DownEncoderBlock2D"] * levels,
        "up_block_types": ["UpDecoderBlock2D"] * levels,
        "block_out_channels": [16, 32, 32, 32][:levels],
        **overrides,
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoencoderKL(**config).eval()


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP byte-level alphabet: every byte gets a printable unicode character."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def byte_tokenizer(words: Sequence[str] = TEST_WORDS, model_max_length: int = 16):
    """A CLIP tokenizer over the byte alphabet plus whole-word merges for ``words`` (built offline).

    Any text tokenizes (unknown words fall back to single bytes); ``words`` become one token each.
    """
    from transformers import CLIPTokenizer

    alphabet = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for token in [*alphabet, *(c + "</w>" for c in alphabet)]:
        vocab.setdefault(token, len(vocab))
    merges: list[tuple[str, str]] = []
    for word in words:
        pieces = [*word[:-1], word[-1] + "</w>"]
        while len(pieces) > 1:
            pair = (pieces[0], pieces[1])
            merged = pair[0] + pair[1]
            if merged not in vocab:
                vocab[merged] = len(vocab)
                merges.append(pair)
            pieces = [merged, *pieces[2:]]
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


def random_text_encoder(tokenizer, seed: int = 0, **overrides):
    """A 2-layer CLIP text encoder whose vocabulary and special tokens match ``tokenizer``."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        **{
            **TEST_TEXT_CONFIG,
            "vocab_size": len(tokenizer),
            "max_position_embeddings": tokenizer.model_max_length,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
            **overrides,
        }
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CLIPTextModel(config).eval()


def sd_scheduler(**overrides) -> DDIMScheduler:
    """Stable Diffusion's schedule (scaled_linear, 1000 steps, epsilon prediction) as a DDIM scheduler."""
    return DDIMScheduler(**{**SD_SCHEDULER_CONFIG, **overrides})


def random_sd_prior(
    seed: int = 0,
    image_size: int = 32,
    with_text_encoder: bool = True,
    down_factor: int = 4,
    prediction_type: str = "epsilon",
    **options,
) -> StableDiffusionPrior:
    """A small random-weight latent prior: SD1.5-shaped UNet, a VAE downsampling by ``down_factor``, a CLIP text
    encoder.

    ``with_text_encoder=False`` stores the empty-prompt embedding of the same text encoder instead (a small
    trained model ships like this), so prompts other than "" raise. ``options`` go to ``StableDiffusionPrior``.
    """
    unet = random_unet(seed)
    vae = random_vae(seed + 1, down_factor=down_factor)
    tokenizer = byte_tokenizer(model_max_length=TEST_TEXT_CONFIG["max_position_embeddings"])
    text_encoder = random_text_encoder(tokenizer, seed + 2)
    scheduler = sd_scheduler(prediction_type=prediction_type)
    if with_text_encoder:
        return StableDiffusionPrior(
            unet, vae, scheduler, text_encoder=text_encoder, tokenizer=tokenizer, image_size=image_size, **options
        )
    donor = StableDiffusionPrior(unet, vae, scheduler, text_encoder=text_encoder, tokenizer=tokenizer)
    return StableDiffusionPrior(
        unet, vae, scheduler, image_size=image_size, null_embedding=donor.null_embedding.clone(), **options
    )
