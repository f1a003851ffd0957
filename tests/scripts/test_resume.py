"""Crash safety and reproducibility: resume = clean run, shards = one run, bad files and divergence are recorded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import runner
from runner import SetupError, TaskFolder, read_metrics_csv
from solvers import DivergenceError

NAMES = ["shapes_test_00000", "shapes_test_00001", "shapes_test_00002"]


def task_dir(cfg) -> Path:
    return Path(cfg.out_dir) / str(cfg.task.name)


def results(folder: Path) -> dict[str, tuple]:
    """Per-image results that must not depend on how the run went: metrics and the exact recon bytes."""
    rows = {r["name"]: r for r in read_metrics_csv(folder / "metrics.csv")}
    return {
        name: (r["index"], r["status"], r["psnr"], r["ssim"], (folder / "recon" / f"{name}.png").read_bytes())
        for name, r in rows.items()
    }


def test_resume_after_interruption_equals_a_clean_run(run_tiny, monkeypatch):
    clean_cfg, clean = run_tiny("data.limit=3", "tag=_clean")

    # 1) a time-limited job: one image, then stop
    cfg, partial = run_tiny("data.limit=3", "max_images=1")
    assert partial["counts"] == {"images": 3, "done": 1, "failed": 0, "skipped": 0, "remaining": 2}
    assert "2 of 3 images have no result yet" in partial["metrics"]["fid"]["unavailable"]

    # 2) a crash after the next image's files were written but before its record: that image must be redone
    original = TaskFolder.write_record

    def crash_on_second_image(self, record):
        if record["name"] == NAMES[1]:
            raise RuntimeError("simulated crash (node lost)")
        original(self, record)

    monkeypatch.setattr(TaskFolder, "write_record", crash_on_second_image)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_tiny("data.limit=3")
    assert (task_dir(cfg) / "recon" / f"{NAMES[1]}.png").is_file()
    assert not (task_dir(cfg) / "records" / f"{NAMES[1]}.json").exists()
    monkeypatch.setattr(TaskFolder, "write_record", original)

    # 3) the same command again finishes the set
    _, resumed = run_tiny("data.limit=3")
    assert resumed["counts"] == clean["counts"] == {"images": 3, "done": 3, "failed": 0, "skipped": 0, "remaining": 0}
    assert results(task_dir(cfg)) == results(task_dir(clean_cfg))
    assert resumed["metrics"]["psnr"] == clean["metrics"]["psnr"]
    assert resumed["metrics"]["ssim"] == clean["metrics"]["ssim"]
    assert not list(task_dir(cfg).rglob("*.tmp"))  # atomic writes leave no temporary files


def test_a_folder_with_other_settings_is_refused(run_tiny):
    mine = "out_dir=${results_root}/mine"  # an explicit folder: other settings are not given their own
    run_tiny("data.limit=1", mine)
    with pytest.raises(SetupError) as info:
        run_tiny("data.limit=1", "solver.zeta=0.5", mine)
    message = str(info.value)
    assert "settings.step_sizes" not in message and "settings.zeta: folder has 1.0, this run 0.5" in message
    assert "tag=" in message and "out_dir=" in message
    run_tiny("data.limit=1", "solver.zeta=0.5")  # without out_dir= the variant goes to its own folder


def test_a_smaller_limit_reports_only_its_images(run_tiny):
    cfg, _ = run_tiny("data.limit=3", "solver.num_steps=1")
    _, smaller = run_tiny("data.limit=2", "solver.num_steps=1")  # same experiment, fewer images: nothing to do
    assert smaller["counts"] == {"images": 2, "done": 2, "failed": 0, "skipped": 0, "remaining": 0}
    assert [r["name"] for r in read_metrics_csv(task_dir(cfg) / "metrics.csv")] == NAMES[:2]
    _, again = run_tiny("data.limit=3", "solver.num_steps=1")
    assert again["counts"]["done"] == 3


def test_shards_cover_the_set_once_and_match_one_run(run_tiny):
    single_cfg, _ = run_tiny("data.limit=3", "tag=_single")
    cfg, first = run_tiny("data.limit=3", "data.num_shards=2", "data.shard=0")
    shard0 = {r["name"] for r in read_metrics_csv(task_dir(cfg) / "metrics.csv")}
    assert shard0 == {NAMES[0], NAMES[2]}  # batch_size=1: batch k (image k) goes to shard k % 2
    assert first["counts"]["remaining"] == 1 and first["metrics"]["fid"]["value"] is None
    _, second = run_tiny("data.limit=3", "data.num_shards=2", "data.shard=1")
    assert second["counts"] == {"images": 3, "done": 3, "failed": 0, "skipped": 0, "remaining": 0}
    assert results(task_dir(cfg)) == results(task_dir(single_cfg))


def test_batch_size_does_not_change_the_results(run_tiny):
    single_cfg, single = run_tiny("data.limit=3", "tag=_b1")
    batched_cfg, batched = run_tiny("data.limit=3", "batch_size=2", "tag=_b2")
    for name in NAMES:
        a = np.asarray(Image.open(task_dir(single_cfg) / "recon" / f"{name}.png")).astype(int)
        b = np.asarray(Image.open(task_dir(batched_cfg) / "recon" / f"{name}.png")).astype(int)
        assert np.abs(a - b).max() <= 1  # one image vs a batch: other float32 kernels may round differently
    assert batched["metrics"]["psnr"]["mean"] == pytest.approx(single["metrics"]["psnr"]["mean"], abs=0.05)


@pytest.mark.slow
def test_batch_size_does_not_change_the_demo_at_the_default_step_count(tmp_path):
    """README's statement, at the settings a user runs: the demo (shipped tiny prior, 250 steps, threads=1) with
    batch_size=8 and batch_size=2 writes byte-identical recon files (batch_size=1 runs other kernels: see above)."""
    folders = []
    for batch_size in (8, 2):
        cfg = runner.compose(f"results_root={tmp_path / str(batch_size)}", f"batch_size={batch_size}")
        assert runner.run(cfg)["counts"]["done"] == 4 and runner.resolve_settings(cfg).num_steps == 250
        folders.append(runner.task_dir(cfg))
    for path in sorted((folders[0] / "recon").glob("*.png")):
        assert path.read_bytes() == (folders[1] / "recon" / path.name).read_bytes()


def test_divergence_marks_the_image_failed_and_the_run_goes_on(run_tiny, monkeypatch):
    original = runner.Experiment.restore

    def diverge_on_image_0(self, samples, labels, *args):
        if any(s.index == 0 for s in samples):
            raise DivergenceError(step=1, timestep=500, samples=[0])
        return original(self, samples, labels, *args)

    monkeypatch.setattr(runner.Experiment, "restore", diverge_on_image_0)
    cfg, summary = run_tiny("data.limit=3", "batch_size=2")
    assert summary["counts"] == {"images": 3, "done": 2, "failed": 1, "skipped": 0, "remaining": 0}
    rows = {r["name"]: r for r in read_metrics_csv(task_dir(cfg) / "metrics.csv")}
    assert rows[NAMES[0]]["status"] == "failed" and "diverged at step 1" in rows[NAMES[0]]["error"]
    assert rows[NAMES[0]]["psnr"] == ""
    assert rows[NAMES[1]]["status"] == rows[NAMES[2]]["status"] == "done"
    assert summary["failed"][0]["name"] == NAMES[0]
    assert summary["metrics"]["psnr"]["count"] == 2


def test_a_real_divergence_is_recorded(run_tiny):
    _, summary = run_tiny("data.limit=1", "solver.zeta=1e300", "solver.num_steps=2")  # inf step size
    assert summary["counts"]["failed"] == 1 and summary["counts"]["done"] == 0
    assert "DivergenceError" in summary["failed"][0]["error"]
    _, again = run_tiny("data.limit=1", "solver.zeta=1e300", "solver.num_steps=2")
    assert again["counts"]["failed"] == 1  # not retried unless retry_failed=true


def _write_png(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(path)


def test_bad_files_are_skipped_and_counted(run_tiny, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    _write_png(images / "a.png", 0)
    _write_png(images / "c.png", 1)
    (images / "b_broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a PNG")
    (images / "notes.txt").write_text("a note, not an image")
    _write_png(images / "d_truncated.png", 2)
    data = (images / "d_truncated.png").read_bytes()
    (images / "d_truncated.png").write_bytes(data[: len(data) // 2])  # header reads, pixels do not

    overrides = ("data=folder", f"data.path={images}", "data.limit=null", "data.dataset=shapes", "solver.num_steps=1")
    cfg, summary = run_tiny(*overrides)
    assert summary["counts"] == {"images": 3, "done": 2, "failed": 0, "skipped": 3, "remaining": 0}
    skipped = {s["name"]: s["reason"] for s in summary["skipped"]}
    assert set(skipped) == {"b_broken.png", "notes.txt", "d_truncated"}
    assert "not a readable image" in skipped["notes.txt"] and "unreadable image" in skipped["d_truncated"]
    rows = read_metrics_csv(task_dir(cfg) / "metrics.csv")
    assert [(r["name"], r["index"], r["status"]) for r in rows] == [
        ("a", "0", "done"),
        ("c", "1", "done"),
        ("d_truncated", "2", "skipped"),
        ("b_broken.png", "", "skipped"),
        ("notes.txt", "", "skipped"),
    ]
    _, again = run_tiny(*overrides)  # rerun: nothing redone, the same counts
    assert again["counts"] == summary["counts"]


def test_real_samples(run_tiny, real_samples_dir):
    """The shared FFHQ / ImageNet samples (JPEG, PNG and RGBA PNG, 256 px) through the pipeline at 32 px."""
    cfg, summary = run_tiny(
        "data=folder",
        f"data.path={real_samples_dir}",
        "data.limit=null",
        "solver.num_steps=1",
        "progress_every=0",
        "task=sr4",
    )
    files = sorted(p for p in real_samples_dir.iterdir() if p.is_file())
    assert summary["counts"] == {"images": len(files), "done": len(files), "failed": 0, "skipped": 0, "remaining": 0}
    folder = task_dir(cfg)
    # photos (data.dataset ffhq) with the tiny prior: the step sizes of the prior's row, shapes
    assert cfg.data.dataset == "ffhq" and summary["settings"]["dataset"] == "shapes"
    assert summary["settings"]["sources"]["dataset"] == "prior.domain"
    for path in files:
        label = np.asarray(Image.open(folder / "label" / f"{path.stem}.png"))
        # independent check: PIL's antialiased bicubic 256 -> 32 of the RGB image (the RGBA files are opaque)
        expected = np.asarray(Image.open(path).convert("RGB").resize((32, 32), Image.Resampling.BICUBIC))
        assert np.array_equal(label, expected)
        assert np.asarray(Image.open(folder / "input" / f"{path.stem}.png")).shape == (8, 8, 3)
    summary_file = json.loads((folder / "summary.json").read_text())
    assert summary_file["counts"]["done"] == len(files)
