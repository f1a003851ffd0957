"""Strict checkpoint loading: round trips through .pt and .safetensors, and loud, specific failures."""

import re

import pytest
import torch

from priors.adm import (
    ADMUNet,
    CheckpointError,
    load_adm,
    load_state_dict_file,
    preset_config,
    randomize_,
    read_config,
    save_adm,
)


@pytest.fixture(scope="module")
def tiny() -> ADMUNet:
    return randomize_(ADMUNet(**preset_config("test")), torch.Generator().manual_seed(0)).eval()


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)), torch.tensor([5, 640])


def state_dict(model: ADMUNet) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".safetensors"])
def test_round_trip_loads_strictly_with_identical_outputs(tmp_path, tiny, batch, suffix):
    path = tmp_path / f"tiny{suffix}"
    if suffix == ".safetensors":
        save_adm(tiny, path)
    else:
        torch.save(tiny.state_dict(), path)  # a plain state dict, as guided-diffusion / DPS distribute them
    loaded = load_adm(path, "test")
    assert not loaded.training and next(loaded.parameters()).device.type == "cpu"
    for (k, a), (k2, b) in zip(tiny.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    with torch.no_grad():
        assert torch.equal(loaded(*batch), tiny(*batch))


def test_safetensors_file_records_its_config(tmp_path, tiny, batch):
    path = save_adm(tiny, tmp_path / "tiny.safetensors")
    assert read_config(path) == {k: list(v) if isinstance(v, tuple) else v for k, v in tiny.config.items()}
    loaded = load_adm(path)  # no preset needed
    with torch.no_grad():
        assert torch.equal(loaded(*batch), tiny(*batch))
    torch.save(tiny.state_dict(), tmp_path / "tiny.pt")
    with pytest.raises(CheckpointError, match="name a preset"):
        load_adm(tmp_path / "tiny.pt")


def test_kwargs_instead_of_preset_and_dtype_options(tmp_path, tiny, batch):
    path = tmp_path / "tiny.pt"
    torch.save({k: v.half() for k, v in tiny.state_dict().items()}, path)  # some checkpoints are stored in fp16
    loaded = load_adm(path, dict(preset_config("test")))
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    with torch.no_grad():
        reference = tiny(*batch)
        assert (loaded(*batch) - reference).abs().max() < 0.02 * reference.abs().max()
    fp16 = load_adm(path, "test", use_fp16=True)
    assert fp16.middle_block[1].qkv.weight.dtype == torch.float16 and fp16.out[2].weight.dtype == torch.float32
    bf16 = load_adm(path, "test", dtype=torch.bfloat16)
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}


def test_missing_file_fails(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_adm(tmp_path / "ffhq_10m.pt", "ffhq_256")


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_truncated_and_corrupted_files_fail(tmp_path, tiny, suffix):
    good = tmp_path / f"good{suffix}"
    save_adm(tiny, good)
    data = good.read_bytes()
    truncated = tmp_path / f"truncated{suffix}"
    truncated.write_bytes(data[: len(data) // 2])
    corrupted = tmp_path / f"corrupted{suffix}"
    corrupted.write_bytes(bytes(reversed(data[:4096])) + data[4096:])
    for path in (truncated, corrupted):
        with pytest.raises(CheckpointError, match=re.escape(str(path))):
            load_adm(path, "test")


def test_not_a_flat_state_dict_fails(tmp_path, tiny):
    path = tmp_path / "wrapped.pt"
    torch.save({"state_dict": tiny.state_dict(), "step": 10}, path)
    with pytest.raises(CheckpointError, match="flat state dict"):
        load_state_dict_file(path)
    with pytest.raises(CheckpointError, match="unsupported checkpoint format"):
        (tmp_path / "weights.npz").write_bytes(b"x")
        load_state_dict_file(tmp_path / "weights.npz")


def write(tmp_path, sd, name="bad.pt"):
    path = tmp_path / name
    torch.save(sd, path)
    return path


def test_missing_key_is_named(tmp_path, tiny):
    sd = state_dict(tiny)
    del sd["input_blocks.3.1.qkv.weight"]
    path = write(tmp_path, sd)
    with pytest.raises(CheckpointError) as info:
        load_adm(path, "test")
    message = str(info.value)
    assert str(path) in message and "'test'" in message
    assert "missing keys (1): input_blocks.3.1.qkv.weight" in message
    assert "unexpected" not in message and "shape" not in message


def test_unexpected_key_and_wrong_shape_are_named(tmp_path, tiny):
    sd = state_dict(tiny)
    sd["input_blocks.3.2.weight"] = torch.zeros(3)
    sd["out.2.weight"] = torch.zeros(3, 32, 3, 3)
    sd["out.2.bias"] = torch.zeros(3)
    with pytest.raises(CheckpointError) as info:
        load_adm(write(tmp_path, sd), "test")
    message = str(info.value)
    assert "unexpected keys (1): input_blocks.3.2.weight" in message
    assert "shape mismatches (2): out.2.weight: checkpoint (3, 32, 3, 3) vs model (6, 32, 3, 3)" in message
    assert "out.2.bias: checkpoint (3,) vs model (6,)" in message
    assert "learn_sigma" in message


def test_many_problems_are_counted_and_truncated(tmp_path, tiny):
    sd = {k: v for k, v in state_dict(tiny).items() if not k.startswith("output_blocks.")}
    n_missing = sum(k.startswith("output_blocks.") for k in tiny.state_dict())
    with pytest.raises(
        CheckpointError, match=rf"missing keys \({n_missing}\): output_blocks\..*and {n_missing - 8} more"
    ):
        load_adm(write(tmp_path, sd), "test")


def test_class_conditional_mix_up_gets_a_hint(tmp_path, tiny):
    cond = ADMUNet(**preset_config("test", class_cond=True))
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\): label_emb.weight[\s\S]*class_cond=True"):
        load_adm(write(tmp_path, cond.state_dict(), "cond.pt"), "test")
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): label_emb.weight[\s\S]*class_cond=False"):
        load_adm(write(tmp_path, tiny.state_dict(), "uncond.pt"), "test", class_cond=True)


def test_unknown_preset_lists_presets(tmp_path, tiny):
    with pytest.raises(KeyError, match="ffhq_256, imagenet_256_uncond, imagenet_256_cond, test"):
        load_adm(write(tmp_path, tiny.state_dict()), "ffhq")
