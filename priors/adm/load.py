"""Strict loading (and saving) of ADM checkpoints.

DPS wraps its checkpoint loading in ``try/except`` and carries on with random weights when it fails
(**quirk**: DPS2022/diffusion-posterior-sampling ``guided_diffusion/unet.py``, ``create_model``). Here every
failure raises ``CheckpointError`` saying which file, which preset,
and which keys are missing, unexpected or of the wrong shape.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .presets import preset_config
from .unet import ADMUNet

PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
SAFETENSORS_SUFFIX = ".safetensors"
CONFIG_METADATA_KEY = "adm_config"  # where ``save_adm`` puts the ADMUNet kwargs in a safetensors header
_SHOWN = 8  # keys listed per category in error messages


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, or does not match the model it is loaded into."""


def load_state_dict_file(path: str | os.PathLike) -> dict[str, Tensor]:
    """The tensors of a ``.pt``/``.pth`` (``torch.load(weights_only=True)``) or ``.safetensors`` file, on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == SAFETENSORS_SUFFIX:
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        elif suffix in PICKLE_SUFFIXES:
            state = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise CheckpointError(
                f"unsupported checkpoint format {path.suffix!r} ({path}); "
                f"expected {SAFETENSORS_SUFFIX} or one of {', '.join(PICKLE_SUFFIXES)}"
            )
    except CheckpointError:
        raise
    except Exception as exc:  # truncated / corrupted / not a checkpoint: every reader raises its own type
        raise CheckpointError(
            f"could not read checkpoint {path} ({path.stat().st_size} bytes; truncated, corrupted or not a "
            f"checkpoint?): {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        found = f"keys {list(state)[:_SHOWN]}" if isinstance(state, Mapping) else type(state).__name__
        raise CheckpointError(
            f"{path} does not hold a flat state dict (name -> tensor) but {found}; "
            "extract the model's state dict (e.g. checkpoint['state_dict']) and save that"
        )
    return dict(state)


def read_config(path: str | os.PathLike) -> dict[str, Any] | None:
    """The ADMUNet kwargs ``save_adm`` stored in a safetensors file's metadata, or None."""
    path = Path(path)
    if path.suffix.lower() != SAFETENSORS_SUFFIX or not path.is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as exc:
        raise CheckpointError(f"could not read the header of {path}: {type(exc).__name__}: {exc}") from exc
    text = metadata.get(CONFIG_METADATA_KEY)
    return None if text is None else json.loads(text)


def _listing(title: str, items: list[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    more = f", ... and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return f"  {title} ({len(items)}): {shown}{more}"


def state_dict_mismatch(model: torch.nn.Module, state_dict: Mapping[str, Tensor]) -> list[str]:
    """Lines describing how ``state_dict`` differs from ``model.state_dict()`` (empty when it loads strictly)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state_dict.items()
        if k in expected and v.shape != expected[k].shape
    ]
    lines = []
    if missing:
        lines.append(_listing("missing keys", missing))
    if unexpected:
        lines.append(_listing("unexpected keys", unexpected))
    if shapes:
        lines.append(_listing("shape mismatches", shapes))
    # the two common mix-ups between guided-diffusion checkpoints
    if "label_emb.weight" in unexpected:
        lines.append("  hint: the checkpoint is class-conditional (label_emb): set class_cond=True")
    if "label_emb.weight" in missing and len(missing) == 1:
        lines.append("  hint: the checkpoint is unconditional: set class_cond=False")
    out_conv = state_dict.get("out.2.weight")
    if out_conv is not None and "out.2.weight" in expected and out_conv.shape[0] != expected["out.2.weight"].shape[0]:
        lines.append(f"  hint: the checkpoint outputs {out_conv.shape[0]} channels: check learn_sigma")
    return lines


def _describe(preset: str | Mapping[str, Any]) -> str:
    return f"preset {preset!r}" if isinstance(preset, str) else f"config {dict(preset)!r}"


def load_adm(
    path: str | os.PathLike,
    preset_or_kwargs: str | Mapping[str, Any] | None = None,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    **overrides: Any,
) -> ADMUNet:
    """Build the ``ADMUNet`` of a preset (name or kwargs) and load ``path`` into it strictly; eval mode.

    ``preset_or_kwargs`` may be None for files written by ``save_adm`` (their header holds the config).
    ``overrides`` change runtime-only options (``use_checkpoint``, ``use_fp16``, ...). ``dtype`` casts the whole
    model (GroupNorm still computes in float32). Raises ``CheckpointError`` on any mismatch, never falls back.
    """
    state_dict = load_state_dict_file(path)  # first: a file that is no readable checkpoint says so, preset or not
    if preset_or_kwargs is None:
        preset_or_kwargs = read_config(path)
        if preset_or_kwargs is None:
            raise CheckpointError(f"{path}: no preset given and the file records no ADM config; name a preset")
    config = preset_config(preset_or_kwargs, **overrides)
    with torch.device("meta"):  # no time or memory spent on weights about to be replaced
        model = ADMUNet(**config)
    problems = state_dict_mismatch(model, state_dict)
    if problems:
        raise CheckpointError(
            f"checkpoint {path} does not match the ADM UNet of {_describe(preset_or_kwargs)}:\n" + "\n".join(problems)
        )
    model.load_state_dict(state_dict, strict=True, assign=True)
    model.float()  # one dtype whatever the file stored, then the requested precision
    if model.use_fp16:
        model.convert_to_fp16()
    if dtype is not None:
        model.to(dtype=dtype)
    return model.to(device).eval()


def save_adm(model: ADMUNet, path: str | os.PathLike) -> Path:
    """Write ``model``'s state dict to ``.safetensors`` (with its config in the header) or ``.pt``."""
    path = Path(path)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == SAFETENSORS_SUFFIX:
        from safetensors.torch import save_file

        save_file(state, str(path), metadata={"format": "pt", CONFIG_METADATA_KEY: json.dumps(model.config)})
    elif path.suffix.lower() in PICKLE_SUFFIXES:
        torch.save(state, path)
    else:
        raise ValueError(f"unsupported checkpoint suffix {path.suffix!r}; use {SAFETENSORS_SUFFIX} or .pt")
    return path
