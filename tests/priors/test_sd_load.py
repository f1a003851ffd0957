"""Loading and saving Stable Diffusion priors: diffusers folders, LDM single files, Hub ids offline."""

import json
import time

import pytest
import torch
from diffusers.loaders.single_file_utils import infer_diffusers_model_type, load_single_file_checkpoint

from priors.sd import load_sd, random_sd_prior, save_sd
from priors.sd.convert import save_single_file


@pytest.fixture(scope="module")
def prior():
    return random_sd_prior(seed=0)


@pytest.fixture(scope="module")
def folder(prior, tmp_path_factory):
    return save_sd(prior, tmp_path_factory.mktemp("sd") / "tiny")


def _probe(prior):
    """Everything a solver uses: eps (empty prompt and a prompt), encode, decode."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 4, 8, 8, generator=g)
    x = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    with torch.no_grad():
        out = {"eps": prior(z, torch.tensor([900, 30])).eps, "z": prior.encode(x), "x": prior.decode(z)}
        if prior.has_text_encoder:
            out["eps_prompt"] = prior(z, 500, cond="a photo of a face").eps
    return out


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _assert_same_weights(loaded, prior):
    """Bit-identical weights; outputs equal up to rounding (memory-mapped weights may take other kernel
    paths, e.g. unaligned data, which changes the last bits)."""
    for name in ("unet", "vae", "text_encoder"):
        a, b = getattr(loaded, name), getattr(prior, name)
        assert (a is None) == (b is None), name
        if a is not None:
            sa, sb = a.state_dict(), b.state_dict()
            assert sa.keys() == sb.keys(), name
            assert all(torch.equal(sa[k], sb[k]) for k in sa), name
    a, b = _probe(loaded), _probe(prior)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


def test_folder_layout(folder):
    names = {p.name for p in folder.iterdir()}
    assert {"unet", "vae", "text_encoder", "tokenizer", "scheduler", "null_embedding.safetensors"} <= names
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert (folder / "vae" / "diffusion_pytorch_model.safetensors").is_file()
    index = json.loads((folder / "model_index.json").read_text())
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    scheduler = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["beta_schedule"] == "scaled_linear" and scheduler["prediction_type"] == "epsilon"


def test_load_folder_is_identical(prior, folder):
    loaded = load_sd(folder)
    assert loaded.image_size == (32, 32)  # the UNet's sample_size times the VAE factor
    assert loaded.sample_shape == prior.sample_shape
    assert loaded.scaling_factor == prior.scaling_factor
    assert loaded.prediction_type == "epsilon"
    assert torch.equal(loaded.schedule.betas, prior.schedule.betas)
    assert not any(p.requires_grad for p in loaded.parameters())
    _assert_same(_probe(loaded), _probe(prior))
    assert load_sd(str(folder), image_size=64).sample_shape == (4, 16, 16)


def test_load_folder_with_options(folder):
    loaded = load_sd(folder, gradient_checkpointing=True, autocast_dtype="bf16", dtype="float32")
    assert loaded.unet.is_gradient_checkpointing and loaded.autocast_dtype == torch.bfloat16
    with pytest.raises(TypeError):
        load_sd(folder, no_such_option=True)


def test_keep_text_encoder_false_keeps_only_the_null_embedding(prior, folder):
    loaded = load_sd(folder, keep_text_encoder=False)
    assert not loaded.has_text_encoder
    torch.testing.assert_close(loaded.null_embedding, prior.null_embedding, rtol=0, atol=0)
    with pytest.raises(ValueError, match="no text encoder"):
        loaded.prompt_embedding("a photo of a face")


def test_prior_without_text_encoder_round_trips(tmp_path):
    bare = random_sd_prior(seed=2, with_text_encoder=False)
    folder = save_sd(bare, tmp_path / "bare")
    assert not (folder / "text_encoder").exists()
    loaded = load_sd(folder)
    assert not loaded.has_text_encoder
    _assert_same(_probe(loaded), _probe(bare))
    (folder / "null_embedding.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"null_embedding\.safetensors"):
        load_sd(folder)


def test_v_prediction_round_trips(tmp_path):
    v = random_sd_prior(seed=0, prediction_type="v_prediction")
    loaded = load_sd(save_sd(v, tmp_path / "v"))
    assert loaded.prediction_type == "v_prediction"
    _assert_same(_probe(loaded), _probe(v))


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_single_file_round_trip(prior, folder, tmp_path, suffix):
    """An original-layout (LDM) checkpoint read back through diffusers' from_single_file, configs from a folder."""
    path = save_single_file(prior, tmp_path / f"tiny{suffix}")
    checkpoint = load_single_file_checkpoint(str(path))
    assert infer_diffusers_model_type(checkpoint) == "v1"  # diffusers recognises the SD1 key layout
    assert "model.diffusion_model.input_blocks.8.1.transformer_blocks.0.attn1.to_q.weight" in checkpoint
    assert checkpoint["first_stage_model.encoder.mid.attn_1.q.weight"].ndim == 4  # LDM's 1x1 convolutions
    loaded = load_sd(path, config=folder)
    assert loaded.has_text_encoder
    _assert_same_weights(loaded, prior)


def test_single_file_without_text_encoder(tmp_path):
    bare = random_sd_prior(seed=3, with_text_encoder=False)
    folder = save_sd(bare, tmp_path / "bare")
    path = save_single_file(bare, tmp_path / "bare.safetensors")
    loaded = load_sd(path, config=folder)
    assert not loaded.has_text_encoder
    _assert_same_weights(loaded, bare)


def test_single_file_needs_configs_offline(prior, tmp_path):
    path = save_single_file(prior, tmp_path / "tiny.safetensors")
    start = time.monotonic()
    with pytest.raises(FileNotFoundError, match="config=") as err:
        load_sd(path)  # diffusers would fetch stable-diffusion-v1-5's configs from the Hub
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in str(err.value)
    assert time.monotonic() - start < 20
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_sd(path, config=tmp_path / "nowhere")


def test_single_file_that_is_not_ldm(prior, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "unet.safetensors"
    save_file({k: v.contiguous() for k, v in prior.unet.state_dict().items()}, str(path))
    with pytest.raises(ValueError, match=r"model\.diffusion_model"):
        load_sd(path, config=tmp_path)


def test_missing_folder_and_subfolders(folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist") as err:
        load_sd(tmp_path / "no_such_model")
    assert "unet/" in str(err.value) and "vae/" in str(err.value)  # says what is expected
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_sd(tmp_path / "weights.safetensors")
    partial = tmp_path / "partial"
    (partial / "unet").mkdir(parents=True)
    (partial / "unet" / "config.json").write_text((folder / "unet" / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match=r"missing vae/config\.json") as err:
        load_sd(partial)
    assert "text_encoder" in str(err.value)


def _offline_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache of our own, whatever the machine has, and offline mode."""
    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    return cache


def test_hub_id_offline_from_a_warm_cache(prior, folder, tmp_path, monkeypatch):
    """A Hub id resolves offline through the HF cache layout (models--owner--name/snapshots/<commit>)."""
    import shutil

    cache = _offline_cache(tmp_path, monkeypatch)
    repo = cache / "models--someone--tiny-sd"
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    loaded = load_sd("someone/tiny-sd")
    _assert_same(_probe(loaded), _probe(prior))


def test_hub_id_offline_without_cache_fails_fast(tmp_path, monkeypatch):
    _offline_cache(tmp_path, monkeypatch)
    start = time.monotonic()
    with pytest.raises(FileNotFoundError) as err:
        load_sd("runwayml/stable-diffusion-v1-5")
    message = str(err.value)
    assert "HF_HUB_OFFLINE" in message and "hf download runwayml/stable-diffusion-v1-5" in message
    assert "'unet/diffusion_pytorch_model.safetensors'" in message and "load_sd('<folder>')" in message
    assert time.monotonic() - start < 20


def test_diffusers_pipeline_reads_the_saved_folder(prior, folder):
    """save_sd writes a standard diffusers folder: StableDiffusionPipeline loads it offline."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(folder, local_files_only=True)
    assert torch.equal(pipe.unet.conv_in.weight, prior.unet.conv_in.weight)
    assert torch.equal(pipe.vae.decoder.conv_out.weight, prior.vae.decoder.conv_out.weight)
    assert pipe.tokenizer("a photo of a face").input_ids == prior.tokenizer("a photo of a face").input_ids
