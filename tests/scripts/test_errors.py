"""What a user sees when something is missing: which file, where to put it, which setting."""

from __future__ import annotations

import pytest
from PIL import Image

import runner
from runner import SetupError


def test_missing_ffhq_checkpoint_from_the_command_line(script, tmp_path):
    result = script("restore.py", "prior=adm_ffhq", "solver=dps", f"results_root={tmp_path}", cwd=tmp_path)
    assert result.returncode == 2
    message = result.stderr
    assert "FFHQ 256 ADM (DPS) checkpoint not found" in message
    assert "ffhq_10m.pt" in message and str(tmp_path / "models" / "ffhq_10m.pt") in message
    assert "drive.google.com" in message and "prior.checkpoint=/path/to/ffhq_10m.pt" in message
    assert "ADM_CHECKPOINTS" in message
    assert "hf://deepinv/diffunet/diffusion_ffhq_10m.pt" in message  # offline (HF_HUB_OFFLINE=1): how to prefetch
    assert f"python scripts/fetch_weights.py prior=adm_ffhq solver=dps results_root={tmp_path}" in message
    assert "Traceback" not in message


def test_missing_imagenet_checkpoint(monkeypatch, tmp_path):
    monkeypatch.setenv("ADM_CHECKPOINTS", str(tmp_path / "ckpts"))
    images = tmp_path / "val"  # one usable image: an empty folder is refused first (it is checked before the prior)
    images.mkdir()
    Image.new("RGB", (256, 256), "gray").save(images / "a.png")
    with pytest.raises(SetupError) as info:
        runner.run(
            runner.compose("prior=adm_imagenet", "data=imagenet", f"data.path={images}", f"results_root={tmp_path}")
        )
    assert str(tmp_path / "ckpts" / "256x256_diffusion_uncond.pt") in str(info.value)
    assert "openaipublic.blob.core.windows.net" in str(info.value)


def test_missing_sd15_weights(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = runner.compose("task=motion_deblur", "prior=sd15", "pag.scale=5", f"results_root={tmp_path}")
    with pytest.raises(SetupError) as info:
        runner.run(cfg)
    message = str(info.value)
    assert message.startswith("SD1.5 weights not found: prior.source=./models/stable-diffusion-v1-5")
    assert "hf download stable-diffusion-v1-5/stable-diffusion-v1-5" in message
    assert f"put them at {tmp_path / 'models' / 'stable-diffusion-v1-5'}" in message
    assert "SD15_PATH" in message and "or set prior.source=" in message


def test_missing_tiny_prior(tmp_path):
    missing = tmp_path / "elsewhere" / "adm_shapes32.safetensors"  # e.g. a checkout without the weights
    cfg = runner.compose(f"results_root={tmp_path}", f"prior.checkpoint={missing}")
    with pytest.raises(SetupError) as info:
        runner.run(cfg)
    assert str(missing) in str(info.value)
    assert "scripts/train_prior.py" in str(info.value)


def test_wrong_checkpoint_is_not_loaded_silently(tmp_path, tiny_checkpoint):
    cfg = runner.compose(f"prior.checkpoint={tiny_checkpoint}", "prior.preset=ffhq_256", f"results_root={tmp_path}")
    with pytest.raises(SetupError, match="does not match the ADM UNet"):
        runner.run(cfg)


def test_missing_data_folder(tmp_path, tiny_checkpoint):
    cfg = runner.compose(
        f"prior.checkpoint={tiny_checkpoint}",
        "data=ffhq",
        f"data.path={tmp_path / 'nowhere'}",
        f"results_root={tmp_path}",
    )
    with pytest.raises(SetupError, match=r"image folder not found.*FFHQ_DIR"):
        runner.run(cfg)
    with pytest.raises(SetupError, match=r"data\.path="):
        runner.run(runner.compose(f"prior.checkpoint={tiny_checkpoint}", "data=folder", f"results_root={tmp_path}"))


def test_pag_layer_missing_from_the_prior(tmp_path, tiny_checkpoint):
    cfg = runner.compose(
        f"prior.checkpoint={tiny_checkpoint}",
        "pag.scale=1",
        "pag.layers=[input_blocks.9.1]",
        f"results_root={tmp_path}",
    )
    with pytest.raises(SetupError) as info:
        runner.run(cfg)
    assert "input_blocks.9.1" in str(info.value) and "middle_block.1" in str(info.value)


def test_task_that_does_not_fit_the_resolution(tmp_path, tiny_checkpoint):
    cfg = runner.compose(
        f"prior.checkpoint={tiny_checkpoint}",
        "task=box_inpaint",
        "task.resolutions.32.hole=30",
        "solver.num_steps=1",
        f"results_root={tmp_path}",
    )
    with pytest.raises(SetupError, match="too small for a 30x30 hole"):
        runner.run(cfg)


def test_missing_tiny_latent_prior(tmp_path):
    missing = tmp_path / "elsewhere" / "sd_shapes32"
    cfg = runner.compose("prior=tiny_sd", f"results_root={tmp_path}", f"prior.source={missing}")
    with pytest.raises(SetupError) as info:
        runner.run(cfg)
    assert str(info.value).startswith(f"tiny shapes latent prior weights not found: prior.source={missing}")
    assert "scripts/train_latent_prior.py" in str(info.value)


def test_option_lists_refuse_unknown_names_with_the_valid_ones():
    assert runner.option_list("task", "box_inpaint,,sr4") == ["box_inpaint", "sr4"]
    assert runner.option_list("task", "") == []
    with pytest.raises(SetupError) as info:
        runner.option_list("task", "sr4,motion_blur")
    tasks = sorted(p.stem for p in (runner.CONF_DIR / "task").glob("*.yaml"))
    assert "unknown task 'motion_blur'; valid: " + ", ".join(tasks) in str(info.value)


@pytest.mark.parametrize(
    "argv",
    [
        ("tiny_prior_report.py", "--tasks", "motion_blur"),
        ("tiny_prior_report.py", "--solvers", "dps,dsp"),
        ("compare_solvers.py", "--tasks", "sr4,motion_blur"),
        ("compare_solvers.py", "--solvers", "dsp"),
    ],
)
def test_report_scripts_refuse_a_typo_before_loading_anything(script, tmp_path, argv):
    result = script(*argv, "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown " in result.stderr and "valid: " in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
