"""What a new user does first: own photos with the shipped prior, sweeps, bad values, Ctrl-C, --help, dry runs."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import runner
from runner import SetupError
from solvers import SOLVERS

REPO = Path(__file__).resolve().parents[2]


def files_under(root: Path) -> list[Path]:
    return sorted(root.rglob("*")) if root.exists() else []


def test_own_photos_with_the_default_prior_use_its_row_and_warn(run_tiny, tmp_path, steps_table, caplog):
    """data=folder with the tiny prior and PAG: the shapes row (layer output_blocks.4.1, not FFHQ's input_blocks.9.1),
    and one warning naming the 256 px photos and the 32 px prior."""
    photos = tmp_path / "photos"
    photos.mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(photos / "me.png")
    shapes = steps_table["dps"]["shapes"]
    with caplog.at_level(logging.WARNING, logger="runner"):
        _, summary = run_tiny("data=folder", f"data.path={photos}", "pag.enabled=true", "solver.num_steps=2")
    settings = summary["settings"]
    assert settings["dataset"] == "shapes" and settings["sources"]["dataset"] == "prior.domain"
    assert settings["pag"]["layers"] == shapes["pag_layers"] == ["output_blocks.4.1"]
    assert settings["pag"]["scale"] == shapes["tasks"]["box_inpaint"]["pag_scale"]
    assert settings["zeta"] == shapes["tasks"]["box_inpaint"]["zeta_pag"]
    assert summary["counts"]["done"] == 1
    warnings = [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "trained on" in r.getMessage()
    ]
    assert len(warnings) == 1  # once (the other warnings are about metric weights)
    # a folder can hold anything: the warning says where the images are, not what they show
    assert "ffhq" not in warnings[0] and f"the images of data.path={photos} are resized" in warnings[0]
    assert "256x256 px" in warnings[0] and "to 32 px" in warnings[0]
    assert "trained on shapes" in warnings[0]


def test_the_summary_records_the_task_settings_that_ran(run_tiny):
    cfg, summary = run_tiny("data.limit=1", "solver.num_steps=1")
    folder = runner.task_dir(cfg)
    # conf/task/box_inpaint.yaml: hole 128 / margin 16 at 256 px, hole 16 / margin 2 at the tiny prior's 32 px
    assert summary["config"]["task"]["params"] == {"hole": 16, "margin": 2}
    assert json.loads((folder / "experiment.json").read_text())["task"]["params"] == {"hole": 16, "margin": 2}


# -- sweeps and folders ---------------------------------------------------------------------------------------
def record_times(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (folder / "records").glob("*.json")}


def test_other_settings_get_their_own_folder_and_the_same_command_resumes(run_tiny):
    cfg, first = run_tiny("data.limit=1")
    folder = runner.task_dir(cfg)
    before = record_times(folder)
    other_cfg, other = run_tiny("data.limit=1", "solver.num_steps=2")  # no tag needed
    assert other["counts"]["done"] == 1 and runner.task_dir(other_cfg) != folder
    _, again = run_tiny("data.limit=1")  # identical command: nothing restored again
    assert again["counts"] == first["counts"] and record_times(folder) == before


def test_a_folder_without_finished_images_is_reused(run_tiny, tiny_overrides):
    cfg = runner.compose(*tiny_overrides, "data.limit=1", "out_dir=${results_root}/mine")
    folder = runner.task_dir(cfg)
    folder.mkdir(parents=True)
    (folder / "experiment.json").write_text(json.dumps({"seed": 99}))  # an aborted start with other settings
    assert runner.run(cfg)["counts"]["done"] == 1
    with pytest.raises(SetupError, match="holds results of different settings"):  # now it has a result: kept
        run_tiny("data.limit=1", "out_dir=${results_root}/mine", "solver.num_steps=2")


def test_a_two_by_two_sweep_runs_every_job_into_its_own_folder(tiny_checkpoint, tmp_path, script):
    results = tmp_path / "results"
    args = [
        "-m",
        "solver.num_steps=2,3",
        "pag.scale=0,1",
        f"prior.checkpoint={tiny_checkpoint}",
        f"results_root={results}",
        "data.limit=1",
        "show_progress=false",
        "progress_every=0",
    ]
    result = script("restore.py", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = sorted(results.glob("*/box_inpaint/summary.json"))
    names = sorted(p.parent.parent.name for p in summaries)
    assert len(set(names)) == 4
    for steps, scale in ((2, 0), (2, 1), (3, 0), (3, 1)):
        assert len([n for n in names if f"_{steps}steps_pag{scale}_" in n]) == 1
    for path in summaries:
        assert json.loads(path.read_text())["counts"]["done"] == 1
    times = {p: record_times(p.parent) for p in summaries}
    again = script("restore.py", *args, cwd=tmp_path)  # the same sweep again: resumes, restores nothing
    assert again.returncode == 0, again.stderr[-3000:]
    assert {p: record_times(p.parent) for p in summaries} == times


def test_a_sweep_job_that_cannot_start_does_not_stop_the_others(tiny_checkpoint, tmp_path, script):
    results = tmp_path / "results"
    args = [
        "-m",
        "solver.num_steps=1,2,3",
        "out_dir=${results_root}/fixed",  # one folder for all: the jobs after the first conflict with it
        f"prior.checkpoint={tiny_checkpoint}",
        f"results_root={results}",
        "data.limit=1",
        "show_progress=false",
        "progress_every=0",
    ]
    result = script("restore.py", *args, cwd=tmp_path)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 3 and errors[-1].startswith("error: 2 job(s) of the sweep could not start")
    assert all("holds results of different settings" in e for e in errors[:2])
    summary = json.loads((results / "fixed" / "box_inpaint" / "summary.json").read_text())
    assert summary["counts"]["done"] == 1 and summary["settings"]["num_steps"] == 1
    assert "Traceback" not in result.stderr


# -- bad values -----------------------------------------------------------------------------------------------
@pytest.fixture
def image_folders(tmp_path) -> dict[str, Path]:
    empty, unreadable = tmp_path / "empty", tmp_path / "unreadable"
    empty.mkdir()
    unreadable.mkdir()
    (unreadable / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nnot a PNG")
    (unreadable / "b.jpg").write_text("not a JPEG")
    return {"empty": empty, "unreadable": unreadable, "missing": tmp_path / "does_not_exist"}


BAD_VALUES = [
    (["pag.scale=abc"], "pag.scale=abc: a number >= 0"),
    (["seed=-1"], "seed=-1: an integer >= 0"),
    (["solver.num_steps=0"], "solver.num_steps=0: an integer >= 1"),
    (["solver.num_steps=-5"], "solver.num_steps=-5: an integer >= 1"),
    (["data=folder", "data.path={missing}"], "data.path={missing}: image folder not found"),
    (["data=folder", "data.path={empty}"], "data.path={empty}: no usable image (0 files skipped)"),
    (["data=folder", "data.path={unreadable}"], "data.path={unreadable}: no usable image (2 files skipped"),
]


@pytest.mark.parametrize("overrides,message", BAD_VALUES, ids=[" ".join(o) for o, _ in BAD_VALUES])
def test_a_bad_value_stops_before_anything_is_written(
    overrides, message, image_folders, tiny_checkpoint, tmp_path, script
):
    results = tmp_path / "results"
    overrides = [o.format(**image_folders) for o in overrides]
    result = script("restore.py", *overrides, f"prior.checkpoint={tiny_checkpoint}", f"results_root={results}")
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {message.format(**image_folders)}")
    assert "Traceback" not in result.stderr
    assert files_under(results) == []


@pytest.mark.parametrize(
    "override,allowed",
    [
        ("seed=1.5", "an integer >= 0"),
        ("batch_size=0", "an integer >= 1"),
        ("threads=0", "an integer >= 1 or null"),
        ("pag.scale=-1", "a number >= 0"),
        ("pag.enabled=maybe", "true or false"),
        ("pag.mode=fast", "one of shared_prefix, prefix_only, no_grad, naive"),
        ("solver.zeta=-0.1", "a number >= 0"),
        ("solver.eta=2", "a number >= 0 and <= 1"),
        ("dtype=int8", "one of float32"),
        ("device=gpu0", "auto, cpu, cuda"),
        ("data.limit=0", "an integer >= 1 or null"),
        ("metrics.lpips.net=resnet", "one of alex, vgg"),
        ("metrics.recon=both", "one of null, raw, pasted"),
        ("pag.interval=[500,0]", "null or [t_lo, t_hi] with 0 <= t_lo <= t_hi"),
        ("solver.reference=yes", "true or false"),
        ("solver=diffpir solver.lam=-1", "a number >= 0 or null"),
    ],
)
def test_each_setting_is_checked(override, allowed):
    *group, override = override.split()
    with pytest.raises(SetupError) as info:
        runner.validate(runner.compose(*group, override))
    key, value = override.split("=")
    shown = value.replace(",", ", ") if value.startswith("[") else value  # lists print as Python lists
    assert str(info.value).startswith(f"{key}={shown}: {allowed}")


def test_a_solver_without_a_reference_mode_refuses_the_switch():
    with pytest.raises(
        SetupError, match=r"solver.reference=true: solver=ddnm has no reference mode.*: dps, diffpir, psld, daps,"
    ):
        runner.validate(runner.compose("solver=ddnm", "solver.reference=true"))
    runner.validate(runner.compose("solver=dps", "solver.reference=true"))


def test_a_valid_config_passes():
    runner.validate(runner.compose())
    runner.validate(runner.compose("prior=sd15", "pag.scale=5", "pag.layers=[input_blocks.8.1]", "threads=null"))


# -- interrupts, help, dry run --------------------------------------------------------------------------------
def test_ctrl_c_prints_one_line_with_the_resume_command(tiny_checkpoint, tmp_path):
    results = tmp_path / "results"
    args = [
        f"prior.checkpoint={tiny_checkpoint}",
        f"results_root={results}",
        "data.limit=3",
        "batch_size=1",
        "solver.num_steps=40",
        "progress_every=0",
        "show_progress=false",
    ]
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    command = [sys.executable, str(REPO / "scripts" / "restore.py"), *args]
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # a shell's background job ignores SIGINT and its children inherit that: give the child the default back
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 240
    while not list(results.glob("*/box_inpaint/records/*.json")) and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1].decode()[-3000:]
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _stdout, stderr = (s.decode() for s in process.communicate(timeout=120))
    assert process.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("interrupted")]
    assert len(lines) == 1
    finished = len(list(results.glob("*/box_inpaint/records/*.json")))
    assert re.match(rf"interrupted: {finished} of 3 images have results in {re.escape(str(results))}/", lines[0])
    assert lines[0].endswith("resume with: python " + " ".join([str(REPO / "scripts" / "restore.py"), *args]))


def test_help_is_short_and_lists_the_choices(tmp_path, script):
    result = script("restore.py", "--help", cwd=tmp_path)
    assert result.returncode == 0
    text = result.stdout
    assert len(text.splitlines()) < 50
    for line in (
        "task: box_inpaint, custom, gaussian_deblur, hdr, motion_deblur, nonlinear_deblur, phase_retrieval, "
        "random_inpaint, sr4, sr8",
        "prior: adm_ffhq, adm_imagenet, sd15, tiny_adm, tiny_sd",
    ):
        assert line in text
    # every registered solver is a choice (solver=auto too)
    choices = re.search(r"^solver: (.*)$", text, flags=re.M).group(1).split(", ")
    assert set(choices) >= {"auto", *SOLVERS}
    assert "python scripts/restore.py -m solver.num_steps=50,100 pag.scale=0,1,2" in text
    assert "zeta_pag" not in text  # not the step table
    assert "_base" not in text  # the solvers' shared keys are not a choice
    assert files_under(tmp_path) == []


def test_the_readme_names_the_demo_folder_the_demo_writes():
    """The README spells the demo's folder as the code makes it, with ``<hash>`` for the settings hash (which
    changes whenever a result-determining setting does: generated, never typed)."""
    readme = (REPO / "README.md").read_text()
    shown = re.findall(r"`results/(demo_[^/`]+)/box_inpaint/`", readme)
    folder = runner.task_dir(runner.compose())
    prefix, settings_hash = folder.parent.name.rsplit("_", 1)
    assert folder.parent.parent == Path("results") and folder.name == "box_inpaint"
    assert re.fullmatch(r"[0-9a-f]{8}", settings_hash)
    assert shown == [f"{prefix}_<hash>"]


def test_dry_run_shows_each_value_and_its_source_and_creates_nothing(tiny_checkpoint, tmp_path, script):
    results = tmp_path / "results"
    args = [f"prior.checkpoint={tiny_checkpoint}", f"results_root={results}", "pag.enabled=true", "task=sr4"]
    result = script("restore.py", *args, "dry_run=true", "solver.zeta=0.5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    text = result.stdout
    assert re.search(r"solver\.zeta +0\.5 +<- solver\.zeta", text)
    assert re.search(r"solver\.num_steps +250 +<- steps\.dps\.shapes\.num_steps", text)
    assert re.search(r"pag\.layers +output_blocks\.4\.1 +<- steps\.dps\.shapes\.pag_layers", text)
    assert re.search(r"step-size row +shapes +<- prior\.domain", text)
    assert files_under(results) == [] and files_under(tmp_path) == []


def test_loading_the_tiny_latent_prior_warns_about_accelerate_at_most_once(capfd, caplog):
    pytest.importorskip("priors.sd", reason="priors.sd (the latent SD prior) is not in this checkout")
    from priors.sd import load_sd

    with caplog.at_level(logging.INFO):
        load_sd(str(REPO / "priors" / "tiny" / "sd_shapes32"), image_size=32)
    captured = capfd.readouterr()
    lines = (captured.out + captured.err).splitlines() + [r.getMessage() for r in caplog.records]
    assert len([line for line in lines if "accelerate" in line]) <= 1  # diffusers warned once per component
