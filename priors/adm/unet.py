"""The ADM UNet of guided-diffusion (Dhariwal & Nichol 2021), written anew with the same module tree.

``ADMUNet(**create_model_kwargs)`` takes the keyword names of guided-diffusion's ``create_model`` and has
exactly its ``state_dict`` keys and shapes, so its released checkpoints (``ffhq_10m.pt`` of DPS,
``256x256_diffusion_uncond.pt``, ...) load strictly. The numerics follow guided-diffusion: GroupNorm in
float32, timestep embedding ``cat([cos, sin])`` with max period 10000, attention scaled by ``1/sqrt(ch)``
with a float32-accurate softmax (here through ``scaled_dot_product_attention``).

Differences from guided-diffusion, all without effect on the outputs:

- Attention goes through ``torch.nn.functional.scaled_dot_product_attention`` (fused kernels) instead of
  two einsums; the tests check it against the einsum / float32-softmax formula.
- ``use_checkpoint`` uses ``torch.utils.checkpoint`` (non-reentrant) for ResBlocks *and* attention blocks.
  guided-diffusion always checkpoints its attention blocks whatever the flag says (**quirk**, a
  memory/compute trade-off only): here the flag decides for both.
- ``AttentionBlock.perturbed`` (PAG's perturbed self-attention) replaces the attention map by the identity.
- Only 2-D images (guided-diffusion's ``dims`` argument is gone); ``use_fp16`` keeps the torso's convolutions
  in float16 as guided-diffusion's ``convert_to_fp16`` does (GroupNorm, Linear and the head stay float32).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..attention import register_attention_kind
from ..prefix import SkipBranch

NUM_CLASSES = 1000  # ImageNet labels of the class-conditional checkpoints

# guided-diffusion's channel multipliers when ``channel_mult=""``
DEFAULT_CHANNEL_MULT: dict[int, tuple[float, ...]] = {
    512: (0.5, 1, 1, 2, 2, 4, 4),
    256: (1, 1, 2, 2, 4, 4),
    128: (1, 1, 2, 3, 4),
    64: (1, 2, 3, 4),
}


def timestep_embedding(timesteps: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding ``cat([cos(t f), sin(t f)])``, f_i = max_period^(-i / (dim // 2)); float32, (N, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    args = timesteps.float()[:, None] * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = F.pad(embedding, (0, 1))
    return embedding


def zero_module(module: nn.Module) -> nn.Module:
    """Zero a module's parameters (guided-diffusion's initialisation of residual output layers)."""
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()
    return module


class GroupNorm32(nn.GroupNorm):
    """GroupNorm with 32 groups computed in float32 whatever the input and parameter dtypes."""

    def __init__(self, channels: int):
        super().__init__(32, channels)

    def forward(self, x: Tensor) -> Tensor:
        out = F.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(), self.eps)
        return out.to(x.dtype)


class Upsample(nn.Module):
    """Nearest-neighbour x2 upsampling, optionally followed by a 3x3 conv (``conv``)."""

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None):
        super().__init__()
        self.channels = channels
        self.conv = nn.Conv2d(channels, out_channels or channels, 3, padding=1) if use_conv else None

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return x if self.conv is None else self.conv(x)


class Downsample(nn.Module):
    """x2 downsampling: a stride-2 3x3 conv or 2x2 average pooling (``op``)."""

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None):
        super().__init__()
        out_channels = out_channels or channels
        if not use_conv and out_channels != channels:
            raise ValueError("average-pool downsampling cannot change the channel count")
        self.channels = channels
        self.op = nn.Conv2d(channels, out_channels, 3, stride=2, padding=1) if use_conv else nn.AvgPool2d(2, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class ResBlock(nn.Module):
    """Residual block conditioned on the timestep embedding, optionally resampling (``up``/``down``).

    h = in_layers(x) (the resampling sits between its SiLU and its conv); then either
    ``out_norm(h) (1 + scale) + shift`` (``use_scale_shift_norm``) or ``h + emb``; then out_layers;
    output ``skip_connection(x) + h``.
    """

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        out_channels: int | None = None,
        *,
        dropout: float = 0.0,
        use_scale_shift_norm: bool = False,
        use_checkpoint: bool = False,
        up: bool = False,
        down: bool = False,
    ):
        super().__init__()
        out_channels = out_channels or channels
        self.channels, self.out_channels = channels, out_channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.use_checkpoint = use_checkpoint
        self.in_layers = nn.Sequential(
            GroupNorm32(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False), Upsample(channels, False)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False), Downsample(channels, False)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels)
        )
        self.out_layers = nn.Sequential(
            GroupNorm32(out_channels),
            nn.SiLU(),
            nn.Dropout(dropout),
            zero_module(nn.Conv2d(out_channels, out_channels, 3, padding=1)),
        )
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        if self.use_checkpoint and torch.is_grad_enabled():
            return checkpoint(self._forward, x, emb, use_reentrant=False)
        return self._forward(x, emb)

    def _forward(self, x: Tensor, emb: Tensor) -> Tensor:
        norm, act, conv = self.in_layers
        h = conv(self.h_upd(act(norm(x))))  # h_upd is the identity unless resampling
        x = self.x_upd(x)
        emb_out = self.emb_layers(emb).to(h.dtype)[..., None, None]
        out_norm, *out_rest = self.out_layers
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            h = out_norm(h) * (1 + scale) + shift
        else:
            h = out_norm(h + emb_out)
        for layer in out_rest:
            h = layer(h)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the spatial positions, with a residual connection.

    ``qkv`` (Conv1d C -> 3C) holds, per channel, q/k/v of all heads. Legacy order (the released checkpoints):
    heads first, i.e. channel ``head * 3ch + j * ch + c`` is component j (q, k, v) of ``head``; new order
    (``use_new_attention_order``): component first, channel ``j * C + head * ch + c``.

    ``perturbed`` (PAG): when True the attention map is the identity, so each position keeps its own value
    vector: the output is ``x + proj_out(v)`` with v taken per head from ``qkv``; q and k are not computed.
    """

    def __init__(
        self,
        channels: int,
        num_heads: int = 1,
        num_head_channels: int = -1,
        use_checkpoint: bool = False,
        use_new_attention_order: bool = False,
    ):
        super().__init__()
        if num_head_channels == -1:
            self.num_heads = num_heads
        elif channels % num_head_channels:
            raise ValueError(
                f"attention channels {channels} are not divisible by num_head_channels {num_head_channels}"
            )
        else:
            self.num_heads = channels // num_head_channels
        if channels % self.num_heads:
            raise ValueError(f"attention channels {channels} are not divisible by {self.num_heads} heads")
        self.channels = channels
        self.use_checkpoint = use_checkpoint
        self.legacy_order = not use_new_attention_order
        self.perturbed = False
        self.norm = GroupNorm32(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = zero_module(nn.Conv1d(channels, channels, 1))

    def extra_repr(self) -> str:
        order = "legacy" if self.legacy_order else "new"
        return f"channels={self.channels}, num_heads={self.num_heads}, order={order}, perturbed={self.perturbed}"

    def _qkv_layout(self) -> tuple[int, ...]:
        """How the 3C output channels of ``qkv`` factor into (head, component, ch) axes."""
        ch = self.channels // self.num_heads
        return (self.num_heads, 3, ch) if self.legacy_order else (3, self.num_heads, ch)

    def forward(self, x: Tensor) -> Tensor:
        # the flag is an argument so that a checkpointed block recomputes the same branch in backward
        if self.use_checkpoint and torch.is_grad_enabled():
            return checkpoint(self._forward, x, self.perturbed, use_reentrant=False)
        return self._forward(x, self.perturbed)

    def _forward(self, x: Tensor, perturbed: bool) -> Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        h = self.norm(x)
        a = self._identity_attention(h) if perturbed else self._attention(h)
        return (x + self.proj_out(a)).reshape(b, c, *spatial)

    def _attention(self, h: Tensor) -> Tensor:
        """softmax(q^T k / sqrt(ch)) v per head, (B, C, T) -> (B, C, T)."""
        b, c, t = h.shape
        # tokens first, so that each head's channels are contiguous (what the fused SDPA kernels want)
        qkv = self.qkv(h).transpose(1, 2).reshape(b, t, *self._qkv_layout())
        q, k, v = (z.transpose(1, 2) for z in qkv.unbind(3 if self.legacy_order else 2))  # (B, heads, T, ch)
        a = F.scaled_dot_product_attention(q, k, v)  # default scale 1/sqrt(ch), as q ch^-1/4 . k ch^-1/4
        return a.permute(0, 1, 3, 2).reshape(b, c, t)

    def _identity_attention(self, h: Tensor) -> Tensor:
        """The value vectors only, (B, C, T), head h at channels [h ch, (h+1) ch) as the attention output."""
        c = self.channels
        layout = self._qkv_layout()
        v_of = (lambda w: w[:, 2]) if self.legacy_order else (lambda w: w[2])
        weight = v_of(self.qkv.weight.unflatten(0, layout)).reshape(c, c, 1)
        bias = v_of(self.qkv.bias.unflatten(0, layout)).reshape(c)
        return F.conv1d(h, weight, bias)


class TimestepSequential(nn.Sequential):
    """A sequence of layers; ResBlocks also get the timestep embedding (guided-diffusion's
    ``TimestepEmbedSequential``)."""

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


def parse_channel_mult(channel_mult: str | Sequence[float], image_size: int) -> tuple[float, ...]:
    """``"1,1,2,2,4,4"`` / a sequence / ``""`` (guided-diffusion's default for the image size)."""
    if isinstance(channel_mult, str):
        if not channel_mult.strip():
            if image_size not in DEFAULT_CHANNEL_MULT:
                raise ValueError(
                    f"no default channel_mult for image_size {image_size} "
                    f"(defaults exist for {sorted(DEFAULT_CHANNEL_MULT)}); pass channel_mult explicitly"
                )
            return DEFAULT_CHANNEL_MULT[image_size]
        channel_mult = [float(m) for m in channel_mult.split(",")]
    mult = tuple(int(m) if float(m).is_integer() else float(m) for m in channel_mult)
    if not mult or any(m <= 0 for m in mult):
        raise ValueError(f"channel_mult must be positive numbers, got {channel_mult!r}")
    return mult


def parse_attention_resolutions(resolutions: str | int | Sequence[int]) -> tuple[int, ...]:
    """``"32,16,8"`` / ``16`` / ``(32, 16, 8)`` -> (32, 16, 8): feature-map sizes (in pixels) with attention."""
    if isinstance(resolutions, str):
        items = [r for r in resolutions.split(",") if r.strip()]
    elif isinstance(resolutions, int):
        items = [resolutions]
    else:
        items = list(resolutions)
    return tuple(int(r) for r in items)


class ADMSelfAttention:
    """How PAG finds and perturbs an ADM UNet's self-attention: its ``AttentionBlock`` layers, switched to the
    identity map through their ``perturbed`` flag (``priors.attention.AttentionKind``)."""

    def is_self_attention(self, module: nn.Module) -> bool:
        return isinstance(module, AttentionBlock)

    def perturb(self, module: nn.Module) -> Callable[[], None]:
        previous = module.perturbed
        module.perturbed = True
        return lambda: setattr(module, "perturbed", previous)

    def aliases(self, network: nn.Module) -> dict[str, str]:
        return {}


ADM_ATTENTION = ADMSelfAttention()
register_attention_kind(ADM_ATTENTION)  # also for modules that merely contain an ADM UNet


class ADMUNet(nn.Module):
    """guided-diffusion's ``UNetModel`` as built by ``create_model`` (same keyword names and defaults).

    Args:
        image_size: input height = width.
        num_channels: base width (``model_channels``); the time embedding has 4x that.
        num_res_blocks: ResBlocks per level on the way down (one more per level on the way up).
        channel_mult: per-level width multipliers, ``"1,1,2,2,4,4"``, a tuple, or ``""`` for the default
            of ``image_size``.
        learn_sigma: output 2 * in_channels channels (eps and the learned-range variance values).
        class_cond: ImageNet class-conditional (``label_emb``, forward needs ``y``).
        use_checkpoint: gradient checkpointing of every ResBlock and AttentionBlock.
        attention_resolutions: feature-map sizes with attention, e.g. ``"32,16,8"`` (converted to
            downsampling rates ``image_size // r`` as guided-diffusion does). Every size must occur.
        num_heads / num_head_channels / num_heads_upsample: heads per attention block
            (``num_head_channels != -1`` fixes the head width instead; ``num_heads_upsample`` for the decoder).
        use_scale_shift_norm: FiLM-like conditioning of the ResBlocks' second norm.
        dropout: dropout in the ResBlocks.
        resblock_updown: resample with ResBlocks instead of Downsample / Upsample.
        use_fp16: run the torso (input/middle/output blocks) in float16, as guided-diffusion does.
        use_new_attention_order: the q/k/v-then-heads channel order (not the released checkpoints').
        in_channels: image channels.
    """

    attention_kind = ADM_ATTENTION  # how PAG finds and perturbs its self-attention

    def __init__(
        self,
        image_size: int,
        num_channels: int,
        num_res_blocks: int,
        channel_mult: str | Sequence[float] = "",
        learn_sigma: bool = False,
        class_cond: bool = False,
        use_checkpoint: bool = False,
        attention_resolutions: str | int | Sequence[int] = "16",
        num_heads: int = 1,
        num_head_channels: int = -1,
        num_heads_upsample: int = -1,
        use_scale_shift_norm: bool = False,
        dropout: float = 0.0,
        resblock_updown: bool = False,
        use_fp16: bool = False,
        use_new_attention_order: bool = False,
        in_channels: int = 3,
    ):
        super().__init__()
        mult = parse_channel_mult(channel_mult, image_size)
        resolutions = parse_attention_resolutions(attention_resolutions)
        sizes = [image_size // 2**level for level in range(len(mult))]
        if not set(resolutions) <= set(sizes):
            raise ValueError(
                f"attention_resolutions {resolutions} must be feature-map sizes of this UNet: {sizes} "
                f"(image_size {image_size}, {len(mult)} levels)"
            )
        if image_size % 2 ** (len(mult) - 1):
            raise ValueError(f"image_size {image_size} is not divisible by 2^{len(mult) - 1} ({len(mult)} levels)")
        attention_ds = {image_size // r for r in resolutions}
        if num_heads_upsample == -1:
            num_heads_upsample = num_heads

        self.config = dict(
            image_size=image_size,
            num_channels=num_channels,
            num_res_blocks=num_res_blocks,
            channel_mult=mult,
            learn_sigma=learn_sigma,
            class_cond=class_cond,
            use_checkpoint=use_checkpoint,
            attention_resolutions=resolutions,
            num_heads=num_heads,
            num_head_channels=num_head_channels,
            num_heads_upsample=num_heads_upsample,
            use_scale_shift_norm=use_scale_shift_norm,
            dropout=dropout,
            resblock_updown=resblock_updown,
            use_fp16=use_fp16,
            use_new_attention_order=use_new_attention_order,
            in_channels=in_channels,
        )
        self.image_size = image_size
        self.in_channels = in_channels
        self.out_channels = 2 * in_channels if learn_sigma else in_channels
        self.model_channels = num_channels
        self.learn_sigma = learn_sigma
        self.num_classes = NUM_CLASSES if class_cond else None
        self.use_fp16 = use_fp16

        emb_dim = 4 * num_channels
        self.time_embed = nn.Sequential(nn.Linear(num_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        if class_cond:
            self.label_emb = nn.Embedding(NUM_CLASSES, emb_dim)

        def res(ch_in: int, ch_out: int | None = None, **updown: bool) -> ResBlock:
            return ResBlock(
                ch_in,
                emb_dim,
                ch_out,
                dropout=dropout,
                use_scale_shift_norm=use_scale_shift_norm,
                use_checkpoint=use_checkpoint,
                **updown,
            )

        def attn(ch: int, heads: int) -> AttentionBlock:
            return AttentionBlock(ch, heads, num_head_channels, use_checkpoint, use_new_attention_order)

        ch = input_ch = int(mult[0] * num_channels)
        self.input_blocks = nn.ModuleList([TimestepSequential(nn.Conv2d(in_channels, ch, 3, padding=1))])
        skip_channels = [ch]
        ds = 1
        for level, m in enumerate(mult):
            for _ in range(num_res_blocks):
                layers: list[nn.Module] = [res(ch, int(m * num_channels))]
                ch = int(m * num_channels)
                if ds in attention_ds:
                    layers.append(attn(ch, num_heads))
                self.input_blocks.append(TimestepSequential(*layers))
                skip_channels.append(ch)
            if level != len(mult) - 1:
                down = res(ch, ch, down=True) if resblock_updown else Downsample(ch, True)
                self.input_blocks.append(TimestepSequential(down))
                skip_channels.append(ch)
                ds *= 2

        self.skip_channels = tuple(skip_channels)  # channels of each input block's output (the decoder's skips)
        self.middle_block = TimestepSequential(res(ch), attn(ch, num_heads), res(ch))

        self.output_blocks = nn.ModuleList()
        for level, m in reversed(list(enumerate(mult))):
            for i in range(num_res_blocks + 1):
                layers = [res(ch + skip_channels.pop(), int(m * num_channels))]
                ch = int(m * num_channels)
                if ds in attention_ds:
                    layers.append(attn(ch, num_heads_upsample))
                if level and i == num_res_blocks:
                    layers.append(res(ch, ch, up=True) if resblock_updown else Upsample(ch, True))
                    ds //= 2
                self.output_blocks.append(TimestepSequential(*layers))

        self.out = nn.Sequential(
            GroupNorm32(ch), nn.SiLU(), zero_module(nn.Conv2d(input_ch, self.out_channels, 3, padding=1))
        )
        if use_fp16:
            self.convert_to_fp16()

    def skip_branches(self) -> list[SkipBranch]:
        """The decoder ResBlocks fed ``cat([h, skip])``: output block i's first ResBlock gets input block
        ``n - 1 - i``'s output (for PAG's shared prefix). Checkpointed blocks are left out (their backward reruns
        the forward)."""
        n = len(self.input_blocks)
        branches = []
        for i, block in enumerate(self.output_blocks):
            res = block[0]
            if res.use_checkpoint:
                continue
            shortcut = f"output_blocks.{i}.0.skip_connection" if isinstance(res.skip_connection, nn.Conv2d) else None
            branches.append(
                SkipBranch(
                    source=f"input_blocks.{n - 1 - i}",
                    norm=f"output_blocks.{i}.0.in_layers.0",
                    conv=f"output_blocks.{i}.0.in_layers.2",
                    shortcut=shortcut,
                    live=res.channels - self.skip_channels[n - 1 - i],
                    upcast_norm=True,
                )
            )
        return branches

    # -- precision ---------------------------------------------------------------------------------
    def _torso_convs(self) -> list[nn.Module]:
        blocks = [self.input_blocks, self.middle_block, self.output_blocks]
        return [m for block in blocks for m in block.modules() if isinstance(m, nn.Conv1d | nn.Conv2d)]

    def convert_to_fp16(self) -> ADMUNet:
        """Torso convolutions to float16 (guided-diffusion's ``convert_to_fp16``); norms, Linear, head stay."""
        for conv in self._torso_convs():
            conv.half()
        return self

    def convert_to_fp32(self) -> ADMUNet:
        for conv in self._torso_convs():
            conv.float()
        return self

    # -- forward -----------------------------------------------------------------------------------
    def forward(self, x: Tensor, timesteps: Tensor | int, y: Tensor | None = None) -> Tensor:
        """x: (B, in_channels, H, W); timesteps: (B,) or a scalar; y: (B,) class labels iff class-conditional.

        Returns (B, out_channels, H, W) in x's dtype.
        """
        if (y is None) != (self.num_classes is None):
            raise ValueError(
                "class labels y are required by a class-conditional model and refused by an unconditional one "
                f"(class_cond={self.num_classes is not None}, got y={'None' if y is None else tuple(y.shape)})"
            )
        timesteps = torch.as_tensor(timesteps, device=x.device)
        if timesteps.ndim == 0:
            timesteps = timesteps.expand(x.shape[0])
        t_emb = timestep_embedding(timesteps, self.model_channels)
        emb = self.time_embed(t_emb.to(self.time_embed[0].weight.dtype))
        if y is not None:
            if y.shape != (x.shape[0],):
                raise ValueError(f"class labels must have shape ({x.shape[0]},), got {tuple(y.shape)}")
            emb = emb + self.label_emb(y)

        h = x.to(self.input_blocks[0][0].weight.dtype)
        skips = []
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h.to(self.out[2].weight.dtype)).to(x.dtype)


@torch.no_grad()
def randomize_(module: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """Redraw every parameter of ``module`` from ``generator`` (on the CPU), with no layer left at zero.

    guided-diffusion zero-initialises the residual output convs (``out_layers.3``, ``proj_out``, ``out.2``), so
    a freshly built UNet predicts eps = 0 and its attention blocks are the identity: useless for tests. Here
    Conv / Linear weights and biases are uniform in +-1/sqrt(fan_in), GroupNorm scales 1 + 0.1 N(0, 1) and shifts
    0.1 N(0, 1), embeddings N(0, 1). Deterministic for a seeded generator whatever the parameters' device.
    """

    def fill(param: Tensor | None, values: Tensor) -> None:
        if param is not None:
            param.copy_(values)

    for m in module.modules():
        if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Linear):
            bound = 1 / math.sqrt(m.weight[0].numel())
            fill(m.weight, (2 * torch.rand(m.weight.shape, generator=generator, device="cpu") - 1) * bound)
            if m.bias is not None:
                fill(m.bias, (2 * torch.rand(m.bias.shape, generator=generator, device="cpu") - 1) * bound)
        elif isinstance(m, nn.GroupNorm) and m.affine:
            fill(m.weight, 1 + 0.1 * torch.randn(m.weight.shape, generator=generator, device="cpu"))
            fill(m.bias, 0.1 * torch.randn(m.bias.shape, generator=generator, device="cpu"))
        elif isinstance(m, nn.Embedding):
            fill(m.weight, torch.randn(m.weight.shape, generator=generator, device="cpu"))
    return module
