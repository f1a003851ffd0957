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


# -- every bad input of a new user: one error line, exit status 2, nothing written --------------------------------
def _choices(group: str, *in_code: str) -> str:
    """The options a user has in ``group``, read from the conf folder (``_*.yaml`` are shared parts, not choices)
    plus the nodes registered in code (``solver=auto``)."""
    files = [p.stem for p in (runner.CONF_DIR / group).glob("*.yaml") if not p.stem.startswith("_")]
    return ", ".join(sorted([*files, *in_code]))


TASKS = _choices("task")
#: (arguments, what the one error line says); {placeholders} are the files and folders of ``bad_paths``
BAD_INPUTS = [
    (["task=nonexistent"], f"task=nonexistent: no such task; valid: {TASKS}"),
    (["prior=nonexistent"], f"prior=nonexistent: no such prior; valid: {_choices('prior')}"),
    (["solver=nonexistent"], f"solver=nonexistent: no such solver; valid: {_choices('solver', 'auto')}"),
    (["solver=_base"], "solver=_base: no such solver; valid: auto, daps,"),  # shared keys, not a choice
    (["data=nonexistent"], f"data=nonexistent: no such data; valid: {_choices('data')}"),
    (["foo=1"], "foo=1: no such setting (every setting: conf/config.yaml; a new key needs +foo=1)"),
    (["task.factor=3"], "task.factor=3: no such setting (task.params.factor is in task=sr4, sr8;"),
    (["pag.scal=1"], "pag.scal=1: no such setting (did you mean pag.scale?"),
    (["seed=[1"], "seed=[1: cannot be parsed"),
    (["results_root={file}"], "results_root={file}: {file} is a file, not a folder"),
    (["results_root={file}/results"], "results_root={file}/results: {file} is a file, not a folder"),
    (["results_root={readonly}/results"], "results_root={readonly}/results: cannot write into {readonly} (read-only"),
    (["out_dir={file}/run"], "out_dir={file}/run: {file} is a file, not a folder"),
    (["metrics.features=nonsense"], "metrics.features=nonsense: inception, shapes, or package.module:attr"),
    (["metrics.features=no_such_module:net"], "metrics.features=no_such_module:net: inception, shapes, or"),
    (["seed=-1"], "seed=-1: an integer >= 0"),
    (["pag.scale=abc"], "pag.scale=abc: a number >= 0"),
    (["batch_size=0"], "batch_size=0: an integer >= 1"),
    (["dtype=int8"], "dtype=int8: one of float32"),
    (["solver=psld"], "solver=psld needs a latent prior, but prior=tiny_adm is a pixel-space prior"),
    (["data=folder", "data.path={missing}"], "data.path={missing}: image folder not found"),
    (["data=folder", "data.path={empty}"], "data.path={empty}: no usable image (0 files skipped)"),
    (
        ["prior.checkpoint={corrupt}"],
        "prior=tiny_adm: could not read checkpoint {corrupt} (9 bytes; truncated, corrupted",
    ),
    (["prior.checkpoint={missing}/tiny.safetensors"], "tiny shapes ADM"),  # + indented hints: where to get it
    (["-m", "hydra/launcher=slurm", "seed=0,1"], "hydra/launcher=slurm: SLURM is not installed here"),
    (["-m", "task=sr4,nonexistent"], f"task=nonexistent: no such task; valid: {TASKS}"),
    (["-m", "foo=1,2"], "foo=1: no such setting"),
    (["-m", "seed=-1,-2"], "seed=-1: an integer >= 0"),  # every job stops: nothing of the sweep is written
    (["-m", "results_root={file}", "seed=0,1"], "results_root={file}: {file} is a file, not a folder"),
]


@pytest.fixture
def bad_paths(tmp_path):
    """A file, a missing path, an empty folder, a corrupt .pt and a folder this process cannot write into (as
    root, for whom permissions do not stop writes: an immutable folder, ``chattr +i``)."""
    import os
    import shutil
    import subprocess

    (tmp_path / "a_file").write_text("not a folder")
    (tmp_path / "empty").mkdir()
    (tmp_path / "corrupt.pt").write_bytes(b"not a pt\n")
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    immutable = False
    if os.geteuid() == 0:
        immutable = (
            shutil.which("chattr") is not None and subprocess.run(["chattr", "+i", str(readonly)]).returncode == 0
        )
    else:
        readonly.chmod(0o555)
    paths = {
        "file": tmp_path / "a_file",
        "missing": tmp_path / "does_not_exist",
        "empty": tmp_path / "empty",
        "corrupt": tmp_path / "corrupt.pt",
        "readonly": readonly,
    }
    yield paths, os.access(readonly, os.W_OK)
    if immutable:
        subprocess.run(["chattr", "-i", str(readonly)])
    readonly.chmod(0o755)


def _tree(root):
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("args,message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_each_bad_input_is_one_error_line_and_writes_nothing(args, message, bad_paths, tmp_path, script):
    import shutil

    paths, readonly_writable = bad_paths
    if "{readonly}" in message and readonly_writable:
        pytest.skip("no way to make a folder unwritable here (root without chattr +i)")
    if "slurm" in message and shutil.which("srun"):
        pytest.skip("SLURM is installed here")
    args = [a.format(**paths) for a in args]
    if not any(a.startswith(("results_root=", "out_dir=")) for a in args):
        args.append(f"results_root={tmp_path / 'results'}")
    before = _tree(tmp_path)
    result = script("restore.py", *args, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert "Traceback" not in output and "HYDRA_FULL_ERROR" not in output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    expected = f"error: {message.format(**paths)}"
    assert errors and errors[0].startswith(expected), output[-3000:]
    assert "_base" not in output.replace("solver=_base", "")
    if args[0] != "-m":  # a sweep prints one line per job that cannot start, then how many
        assert len(errors) == 1, output
        assert all(line.startswith("  ") for line in output.strip().splitlines()[1:]), output  # hints: indented
    assert _tree(tmp_path) == before  # no results folder, no multirun.yaml, no report/


def test_a_sweep_of_dry_runs_shows_every_job_and_writes_nothing(tmp_path, script):
    results = tmp_path / "results"
    result = script("restore.py", "-m", "seed=0,1", "dry_run=true", f"results_root={results}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("dry run of box_inpaint (nothing loaded or written)") == 2
    assert "_seed0_" in result.stdout and "_seed1_" in result.stdout
    assert list(tmp_path.rglob("*")) == []


def test_report_of_a_folder_without_jobs_writes_nothing(tmp_path, script):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = script("report.py", str(empty), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: no jobs under {empty}") and "Traceback" not in result.stderr
    assert list(tmp_path.rglob("*")) == [empty]


def test_fetch_weights_names_a_bad_option_in_one_line(tmp_path, script):
    result = script("fetch_weights.py", "task=nonexistent", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: task=nonexistent: no such task; valid: {TASKS}"


def test_an_operator_that_refuses_the_size_names_its_settings_not_the_generators():
    """The refusal quotes the operator's settings a user can change, not the per-image generator objects."""
    with pytest.raises(SetupError) as info:
        runner.build_operator(runner.compose("task=nonlinear_deblur").task, 32, None)
    message = str(info.value)
    assert "multiple of 128" in message and "'image_size': 32" in message
    assert "Generator" not in message and "generator" not in message
