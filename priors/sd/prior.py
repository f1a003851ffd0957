"""Latent Stable Diffusion prior: a diffusers UNet + AutoencoderKL (+ CLIP text encoder) behind ``DiffusionPrior``.

``prior(z_t, t, cond=None)`` predicts the noise of the latent z_t (epsilon; v- and x0-predicting UNets are
converted), conditioned by default on the empty prompt's embedding, computed once. ``encode`` / ``decode`` map
images in [-1, 1] to scaled latents and back; ``decode`` is differentiable (PSLD back-propagates through it).

Classifier-free guidance is the solvers' business: this class never runs an unconditional + conditional pair;
it provides ``prompt_embedding`` / ``null_embedding`` and accepts a (B, L, D) ``cond`` for batched CFG.

Memory levers (all constructor switches, all preserve gradients with respect to the inputs):

- ``freeze`` (default): parameters do not require grad, so back-propagating to z_t allocates no weight
  gradients (for SD1.5 that alone is 3.4 GB in float32);
- ``gradient_checkpointing`` / ``vae_gradient_checkpointing``: diffusers' activation checkpointing (non-reentrant
  ``torch.utils.checkpoint``) in the UNet / VAE blocks: same values and gradients, activations recomputed in
  the backward pass. **Do the backward pass outside ``perturbed_self_attention``**: the recomputation looks up
  the attention processors at backward time;
- ``autocast_dtype`` (UNet and text encoder) / ``vae_autocast_dtype`` (VAE; defaults to ``autocast_dtype``):
  ``torch.autocast`` inside ``forward`` / ``encode`` / ``decode``, results returned in the input's dtype
  (float32 for float32 inputs). bfloat16 is the safe choice; SD1.5's VAE can overflow in float16;
- ``vae_slicing``: diffusers' VAE slicing, one image at a time through the encoder/decoder; the same results (up
  to batch-size dependent rounding), gradients flow through the concatenation;
- ``vae_tiling`` (``vae_tile_size`` pixels, default the VAE's ``sample_size``): diffusers' tiled encode/decode with
  blended overlaps. Gradients flow (the blending is differentiable), but the result is an approximation of the
  untiled VAE, so it changes PSLD's objective slightly; only for images larger than one tile.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from contextlib import nullcontext

import torch
from torch import Tensor, nn

from ..base import DiffusionPrior, ModelOutput
from ..prefix import SkipBranch
from ..schedule import NoiseSchedule
from .attention import SD_ATTENTION
from .layers import skip_branches

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")

_DTYPES = {
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp32": torch.float32,
    "float32": torch.float32,
    "float": torch.float32,
}

_SAME = object()


def as_dtype(value: torch.dtype | str | None) -> torch.dtype | None:
    """``torch.float16`` / ``"fp16"`` / ``"bfloat16"`` / ``"torch.float32"`` / None -> a torch dtype or None."""
    if value is None or isinstance(value, torch.dtype):
        return value
    key = str(value).removeprefix("torch.").lower()
    if key not in _DTYPES:
        raise ValueError(f"unknown dtype {value!r}; valid: {', '.join(sorted(_DTYPES))}")
    return _DTYPES[key]


class StableDiffusionPrior(DiffusionPrior):
    """Stable Diffusion in latent space.

    Args:
        unet: a diffusers ``UNet2DConditionModel`` (becomes ``self.network``: PAG layer names live there).
        vae: a diffusers ``AutoencoderKL``.
        scheduler: a diffusers scheduler (its ``betas`` and ``prediction_type`` are used) or a ``NoiseSchedule``;
            default SD's scaled_linear schedule.
        text_encoder, tokenizer: CLIP text encoder and tokenizer (optional; without them only the empty prompt
            is available, from ``null_embedding``).
        image_size: pixel size (int or (H, W)); default ``unet.config.sample_size`` times the VAE factor
            (512 for SD1.5).
        prediction_type: ``epsilon`` / ``v_prediction`` / ``sample``; default the scheduler's, else epsilon.
        null_embedding: the empty prompt's embedding (1, L, D), required when there is no text encoder.
        freeze, gradient_checkpointing, vae_gradient_checkpointing, autocast_dtype, vae_autocast_dtype,
        vae_slicing, vae_tiling, vae_tile_size: memory levers, see the module docstring. Dtypes are torch dtypes
            or names (``"bf16"``, ``"fp16"``); None or float32 means no autocast; ``vae_autocast_dtype`` left
            out follows ``autocast_dtype``.
    """

    is_latent = True
    variance = "fixed_small"
    attention_kind = SD_ATTENTION

    def __init__(
        self,
        unet: nn.Module,
        vae: nn.Module,
        scheduler: object | NoiseSchedule | None = None,
        text_encoder: nn.Module | None = None,
        tokenizer: object | None = None,
        *,
        image_size: int | Sequence[int] | None = None,
        prediction_type: str | None = None,
        null_embedding: Tensor | None = None,
        freeze: bool = True,
        gradient_checkpointing: bool = False,
        vae_gradient_checkpointing: bool = False,
        autocast_dtype: torch.dtype | str | None = None,
        vae_autocast_dtype: torch.dtype | str | None = _SAME,  # type: ignore[assignment]
        vae_slicing: bool = False,
        vae_tiling: bool = False,
        vae_tile_size: int | None = None,
    ):
        super().__init__()
        if (text_encoder is None) != (tokenizer is None):
            raise ValueError("text_encoder and tokenizer go together: pass both or neither")
        if text_encoder is None and null_embedding is None:
            raise ValueError(
                "without a text encoder the prior needs the empty prompt's embedding: pass null_embedding "
                "(a (1, L, D) tensor; load_sd reads it from null_embedding.safetensors)"
            )
        self.network = unet
        self.vae = vae
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer

        # -- schedule and parameterisation --------------------------------------------------------
        self.scheduler_config: dict | None = None
        if scheduler is None:
            self.schedule = NoiseSchedule.scaled_linear()
        elif isinstance(scheduler, NoiseSchedule):
            self.schedule = scheduler
        else:
            self.schedule = NoiseSchedule.from_diffusers(scheduler)
            self.scheduler_config = dict(scheduler.config)
        if prediction_type is None:
            prediction_type = (self.scheduler_config or {}).get("prediction_type", "epsilon")
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"unknown prediction_type {prediction_type!r}; valid: {', '.join(PREDICTION_TYPES)}")
        self.prediction_type = prediction_type

        # -- shapes ----------------------------------------------------------------------------------
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        if image_size is None:
            sample = unet.config.sample_size
            image_size = (
                [s * self.vae_scale_factor for s in sample]
                if isinstance(sample, list | tuple)
                else sample * self.vae_scale_factor
            )
        height, width = (int(image_size),) * 2 if isinstance(image_size, numbers.Integral) else map(int, image_size)
        if height % self.vae_scale_factor or width % self.vae_scale_factor:
            raise ValueError(f"image size {height}x{width} is not divisible by the VAE factor {self.vae_scale_factor}")
        self.image_size = (height, width)
        self.sample_shape = (
            vae.config.latent_channels,
            height // self.vae_scale_factor,
            width // self.vae_scale_factor,
        )
        self.scaling_factor = float(vae.config.scaling_factor)
        shift = getattr(vae.config, "shift_factor", None)
        self.shift_factor = float(shift) if shift is not None else 0.0

        # -- prompts ---------------------------------------------------------------------------------
        self.register_buffer("_null_embedding", None, persistent=False)
        if null_embedding is not None:
            null_embedding = torch.as_tensor(null_embedding).detach().float()
            if null_embedding.ndim == 2:
                null_embedding = null_embedding[None]
            if null_embedding.ndim != 3 or null_embedding.shape[0] != 1:
                raise ValueError(f"null_embedding must have shape (1, L, D), got {tuple(null_embedding.shape)}")
            self._null_embedding = null_embedding.to(self.device)
        self._prompt_cache: dict[str, Tensor] = {}

        # -- memory levers -----------------------------------------------------------------------------
        self.autocast_dtype = as_dtype(autocast_dtype)
        self.vae_autocast_dtype = self.autocast_dtype if vae_autocast_dtype is _SAME else as_dtype(vae_autocast_dtype)
        if freeze:
            for module in (unet, vae, text_encoder):
                if module is not None:
                    module.requires_grad_(False).eval()
        if gradient_checkpointing:
            unet.enable_gradient_checkpointing()
        if vae_gradient_checkpointing:
            vae.enable_gradient_checkpointing()
        if vae_slicing:
            vae.enable_slicing()
        if vae_tiling:
            vae.enable_tiling()
            if vae_tile_size is not None:
                if vae_tile_size % self.vae_scale_factor:
                    raise ValueError(f"vae_tile_size must be a multiple of {self.vae_scale_factor}")
                vae.tile_sample_min_size = vae_tile_size
                vae.tile_latent_min_size = vae_tile_size // self.vae_scale_factor

    # -- properties ------------------------------------------------------------------------------------
    @property
    def unet(self) -> nn.Module:
        return self.network

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    @property
    def has_text_encoder(self) -> bool:
        return self.text_encoder is not None

    def _autocast(self, dtype: torch.dtype | None, device: torch.device):
        if dtype is None or dtype == torch.float32:
            return nullcontext()
        return torch.autocast(device_type=device.type, dtype=dtype)

    # -- prompts ---------------------------------------------------------------------------------------
    @property
    def null_embedding(self) -> Tensor:
        """The empty prompt's text embedding (1, L, D), float32, computed once."""
        if self._null_embedding is None:
            self._null_embedding = self._encode_prompt("")
        return self._null_embedding

    def prompt_embedding(self, prompt: str = "") -> Tensor:
        """The text embedding (1, L, D) of ``prompt`` (float32, no graph), computed once per prompt."""
        if prompt == "":
            return self.null_embedding
        cached = self._prompt_cache.get(prompt)
        if cached is None or cached.device != self.device:
            cached = self._prompt_cache[prompt] = (
                cached.to(self.device) if cached is not None else self._encode_prompt(prompt)
            )
        return cached

    @torch.no_grad()
    def _encode_prompt(self, prompt: str) -> Tensor:
        if not self.has_text_encoder:
            raise ValueError(
                f"this Stable Diffusion prior has no text encoder, so only the empty prompt (its stored null "
                f"embedding) is available, not {prompt!r}. Load a folder with text_encoder/ and tokenizer/ "
                f"to use prompts."
            )
        ids = self.tokenizer(
            prompt,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(self.device)
        with self._autocast(self.autocast_dtype, ids.device):
            hidden = self.text_encoder(ids)[0]
        return hidden.float()

    def condition(self, cond: object | None, batch: int) -> Tensor:
        """The (B, L, D) text embedding for ``cond``: None (empty prompt), a prompt, a list of B prompts, or a
        (L, D) / (1, L, D) / (B, L, D) tensor."""
        if cond is None:
            emb = self.null_embedding
        elif isinstance(cond, str):
            emb = self.prompt_embedding(cond)
        elif isinstance(cond, list | tuple) and all(isinstance(c, str) for c in cond):
            emb = torch.cat([self.prompt_embedding(c) for c in cond])
        elif isinstance(cond, Tensor):
            emb = cond[None] if cond.ndim == 2 else cond
        else:
            raise TypeError(f"cond must be None, a prompt, a list of prompts or an embedding tensor, got {type(cond)}")
        if emb.ndim != 3:
            raise ValueError(f"text embedding must be (B, L, D), got shape {tuple(emb.shape)}")
        if emb.shape[0] == 1 and batch != 1:
            emb = emb.expand(batch, -1, -1)
        elif emb.shape[0] != batch:
            raise ValueError(f"text embedding batch {emb.shape[0]} does not match the latent batch {batch}")
        return emb

    # -- noise prediction ------------------------------------------------------------------------------
    def skip_branches(self) -> list[SkipBranch]:
        return skip_branches(self.network)

    def forward(self, x_t: Tensor, t: Tensor | int, cond: object | None = None) -> ModelOutput:
        """eps(z_t, t) for latents z_t (B, C, h, w); ``cond`` as in ``condition`` (default: the empty prompt)."""
        t = self.timestep_tensor(t, x_t)
        emb = self.condition(cond, x_t.shape[0])
        dtype = self.network.dtype
        with self._autocast(self.autocast_dtype, x_t.device):
            out = self.network(x_t.to(dtype), t, encoder_hidden_states=emb.to(x_t.device, dtype)).sample
        out = out.to(x_t.dtype)
        return ModelOutput(eps=self._to_eps(out, x_t, t))

    def _to_eps(self, out: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        if self.prediction_type == "epsilon":
            return out
        abar = self.schedule.alphas_cumprod[t.cpu()].to(device=x_t.device, dtype=x_t.dtype).view(-1, 1, 1, 1)
        if self.prediction_type == "v_prediction":  # v = sqrt(abar) eps - sqrt(1 - abar) x0
            return abar.sqrt() * out + (1 - abar).sqrt() * x_t
        return (x_t - abar.sqrt() * out) / (1 - abar).sqrt()  # x0-prediction

    # -- autoencoder -----------------------------------------------------------------------------------
    def encode(
        self,
        x: Tensor,
        sample: bool = False,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
    ) -> Tensor:
        """Scaled latent of images ``x`` in [-1, 1]: the posterior mean (default) or, with ``sample=True``, a draw
        mean + std * noise (PSLD's choice). The noise comes from ``generator``: one generator for the batch, or
        a list with one per image (then a batch equals the single-image calls)."""
        vae = self.vae
        with self._autocast(self.vae_autocast_dtype, x.device):
            posterior = vae.encode(x.to(vae.dtype)).latent_dist
        z = posterior.mean.to(x.dtype)
        if sample:
            if generator is None:
                raise ValueError("encode(sample=True) needs a generator (one, or one per image)")
            z = z + posterior.std.to(x.dtype) * self._noise(z, generator)
        return (z - self.shift_factor) * self.scaling_factor

    @staticmethod
    def _noise(like: Tensor, generator: torch.Generator | Sequence[torch.Generator]) -> Tensor:
        if isinstance(generator, torch.Generator):
            noise = torch.randn(like.shape, generator=generator, device=generator.device, dtype=like.dtype)
            return noise.to(like.device)
        generators = list(generator)
        if len(generators) != like.shape[0]:
            raise ValueError(f"got {len(generators)} generators for a batch of {like.shape[0]}")
        return torch.cat(
            [
                torch.randn((1, *like.shape[1:]), generator=g, device=g.device, dtype=like.dtype).to(like.device)
                for g in generators
            ]
        )

    def decode(self, z: Tensor, clamp: bool = False) -> Tensor:
        """Images (B, 3, H, W) of scaled latents ``z``; differentiable; in [-1, 1] up to the VAE's overshoot
        (``clamp=True`` clips, which zeroes gradients outside the range)."""
        vae = self.vae
        latents = z / self.scaling_factor + self.shift_factor
        with self._autocast(self.vae_autocast_dtype, z.device):
            x = vae.decode(latents.to(vae.dtype)).sample
        x = x.to(z.dtype)
        return x.clamp(-1, 1) if clamp else x
