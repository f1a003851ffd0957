"""A batch is a fixed unit of work: resumed, interrupted and sharded runs write the same bytes as one uninterrupted run,
for every registered solver.

A float32 batch of other composition rounds differently (DPS at 100 steps: batch_size=1 vs 2 differed by up to 37
8-bit levels, issue 28), so a run must never regroup images: batch k holds the images of index 2k and 2k + 1 here
(batch_size=2), whatever ran before. Each test checks both the batches the runner formed (the images handed to one
sampler call) and the files' bytes against an uninterrupted run in another folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import runner
from runner import TaskFolder, read_metrics_csv
from solvers import SOLVERS

REPO = Path(__file__).resolve().parents[2]
#: images per batch and in the set: two batches, [0, 1] and [2, 3]
BATCH_SIZE, LIMIT = 2, 4
#: the saved images that depend on the measurement and the sampler (label/ is the source image)
COMPARED = ("input", "recon", "pasted")


def overrides(solver: str, root: Path, *extra: str) -> list[str]:
    """Few steps on the shipped tiny prior of the solver's space; nothing but the images (fast)."""
    prior = "tiny_sd" if SOLVERS[solver].space == "latent" else "tiny_adm"
    inner = ["solver.ode_steps=2", "solver.mcmc_steps=2"] if solver in ("daps", "latent_daps") else []
    return [
        f"results_root={root}",
        f"prior={prior}",
        f"solver={solver}",
        "solver.num_steps=3",
        *inner,
        f"data.limit={LIMIT}",
        f"batch_size={BATCH_SIZE}",
        "threads=1",
        "show_progress=false",
        "metrics.enabled=false",
        "progress_every=0",
        "save.grid=false",
        *extra,
    ]


def run(solver: str, root: Path, *extra: str) -> tuple[Path, dict]:
    """Run in this process: (task folder, summary)."""
    cfg = runner.compose(*overrides(solver, root, *extra))
    return runner.task_dir(cfg), runner.run(cfg)


@pytest.fixture
def batches(monkeypatch) -> list[list[int]]:
    """The image indices of every sampler call (``Experiment.restore``), in order."""
    calls: list[list[int]] = []
    original = runner.Experiment.restore

    def logged(self, samples, labels, *args, **kwargs):
        calls.append([s.index for s in samples])
        return original(self, samples, labels, *args, **kwargs)

    monkeypatch.setattr(runner.Experiment, "restore", logged)
    return calls


def recorded(folder: Path) -> set[int]:
    """Indices of the images with a done record."""
    return {int(r["index"]) for r in TaskFolder(folder).read_records().values() if r["status"] == "done"}


def files(folder: Path) -> dict[str, bytes]:
    """Every compared PNG of the folder by ``<kind>/<name>``, as bytes."""
    return {
        f"{kind}/{path.name}": path.read_bytes()
        for kind in COMPARED
        if (folder / kind).is_dir()
        for path in sorted((folder / kind).glob("*.png"))
    }


def assert_same_files(folder: Path, reference: Path) -> None:
    expected = files(reference)
    assert len(expected) >= 2 * LIMIT  # input/ and recon/ at least, every image
    got = files(folder)
    assert sorted(got) == sorted(expected)
    differ = [key for key in expected if got[key] != expected[key]]
    assert not differ, f"not byte-identical to the uninterrupted run: {differ}"


class SimulatedCrash(RuntimeError):
    """Raised right after the first image of the second batch has its record (a node lost mid-batch)."""


@pytest.mark.parametrize("solver", list(SOLVERS))
def test_resumed_interrupted_and_sharded_runs_equal_one_run(solver, tmp_path, batches, monkeypatch):
    reference, _ = run(solver, tmp_path / "uninterrupted")
    assert batches == [[0, 1], [2, 3]]

    # (a) a time-limited job: max_images=1 runs one whole batch; the same command without it does the rest
    batches.clear()
    folder, partial = run(solver, tmp_path / "limited", "max_images=1")
    assert batches == [[0, 1]] and recorded(folder) == {0, 1}
    assert partial["counts"] == {"images": 4, "done": 2, "failed": 0, "skipped": 0, "remaining": 2}
    batches.clear()
    _, summary = run(solver, tmp_path / "limited")
    assert batches == [[2, 3]] and summary["counts"]["done"] == 4
    assert_same_files(folder, reference)

    # (b) a crash after the first image of batch [2, 3] is saved and recorded: the rerun redoes that batch whole
    original = TaskFolder.write_record

    def crash_after_image_2(self, record):
        original(self, record)
        if record["index"] == 2:
            raise SimulatedCrash("node lost")

    monkeypatch.setattr(TaskFolder, "write_record", crash_after_image_2)
    batches.clear()
    with pytest.raises(SimulatedCrash):
        run(solver, tmp_path / "crashed")
    monkeypatch.setattr(TaskFolder, "write_record", original)
    folder = runner.task_dir(runner.compose(*overrides(solver, tmp_path / "crashed")))
    assert batches == [[0, 1], [2, 3]] and recorded(folder) == {0, 1, 2}
    assert not (folder / "recon" / "shapes_test_00003.png").exists()
    batches.clear()
    run(solver, tmp_path / "crashed")
    assert batches == [[2, 3]]  # not image 3 alone
    assert_same_files(folder, reference)

    # (c) two shards of whole batches in one folder: shard 0 gets batch [0, 1], shard 1 batch [2, 3]
    batches.clear()
    folder, first = run(solver, tmp_path / "sharded", "data.num_shards=2", "data.shard=0")
    assert batches == [[0, 1]] and first["counts"]["remaining"] == 2
    batches.clear()
    _, second = run(solver, tmp_path / "sharded", "data.num_shards=2", "data.shard=1")
    assert batches == [[2, 3]]
    assert second["counts"] == {"images": 4, "done": 4, "failed": 0, "skipped": 0, "remaining": 0}
    assert [r["name"] for r in read_metrics_csv(folder / "metrics.csv")] == [f"shapes_test_{i:05d}" for i in range(4)]
    assert_same_files(folder, reference)


#: the child: the runner with a SIGKILL of its own process right after the record of image 2 (first of batch [2, 3])
KILLED_CHILD = """
import os, signal, sys
import runner
from runner import TaskFolder

original = TaskFolder.write_record

def write_then_die(self, record):
    original(self, record)
    if record["index"] == 2:
        os.kill(os.getpid(), signal.SIGKILL)

TaskFolder.write_record = write_then_die
runner.run(runner.compose(*sys.argv[1:]))
"""


@pytest.mark.parametrize("solver", [s if s == "dps" else pytest.param(s, marks=pytest.mark.slow) for s in SOLVERS])
def test_sigkill_mid_batch_then_rerun_equals_one_run(solver, tmp_path, batches):
    """A real SIGKILL of a run (a process of its own) after the first image of a batch is complete."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    args = overrides(solver, tmp_path / "killed")
    child = subprocess.run(
        [sys.executable, "-c", KILLED_CHILD, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    folder = runner.task_dir(runner.compose(*args))
    assert recorded(folder) == {0, 1, 2}

    run(solver, tmp_path / "killed")
    assert batches == [[2, 3]]
    reference, _ = run(solver, tmp_path / "uninterrupted")
    assert_same_files(folder, reference)


def test_shards_are_whole_batches_and_max_images_counts_batches(tmp_path, batches):
    # 5 images in batches of 2: [0, 1] [2, 3] [4]; batch k goes to shard k % 2
    cfg = runner.compose("data.limit=5", "batch_size=2", "data.num_shards=2", "data.shard=0")
    data = runner.build_dataset(cfg.data, 32, batch_size=2)
    assert [[s.index for s in batch] for batch in data.batches()] == [[0, 1], [4]]
    data = runner.build_dataset(
        runner.compose("data.limit=5", "data.num_shards=2", "data.shard=1").data, 32, None, "bicubic", 2
    )
    assert [[s.index for s in batch] for batch in data.batches()] == [[2, 3]]

    # max_images=3 with batches of 2: the first ceil(3 / 2) = 2 pending batches, 4 images
    folder, summary = run("dps", tmp_path, "data.limit=5", "max_images=3")
    assert batches == [[0, 1], [2, 3]] and summary["counts"]["done"] == 4
    batches.clear()
    run("dps", tmp_path, "data.limit=5", "max_images=0")  # rebuilds the tables only
    assert batches == [] and recorded(folder) == {0, 1, 2, 3}


def _png(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(path)


def test_an_unreadable_image_does_not_make_every_rerun_redo_its_batch(tmp_path, batches):
    images = tmp_path / "images"
    images.mkdir()
    for k, name in enumerate("abcd"):
        _png(images / f"{name}.png", k)
    good_b = (images / "b.png").read_bytes()
    (images / "b.png").write_bytes(good_b[: len(good_b) // 2])  # the header reads, the pixels do not
    folder_data = ("data=folder", f"data.path={images}", "data.limit=null", "data.dataset=shapes")

    folder, summary = run("dps", tmp_path / "out", *folder_data)
    assert batches == [[0], [2, 3]]  # batch [a, b] without b
    assert summary["counts"] == {"images": 4, "done": 3, "failed": 0, "skipped": 1, "remaining": 0}
    batches.clear()
    run("dps", tmp_path / "out", *folder_data)
    assert batches == []  # b still unreadable: its batch is complete
    (images / "b.png").write_bytes(good_b)  # fixed: its batch is restored again, whole
    _, summary = run("dps", tmp_path / "out", *folder_data)
    assert batches == [[0, 1]] and summary["counts"]["done"] == 4 and recorded(folder) == {0, 1, 2, 3}


def test_a_rerun_with_another_batch_size_says_so(tmp_path, batches, caplog):
    run("dps", tmp_path, "max_images=1")
    batches.clear()
    with caplog.at_level("WARNING", logger="runner"):
        run("dps", tmp_path, "batch_size=1")
    assert batches == [[2], [3]]
    assert "restored with batch_size=2; this run restores with batch_size=1" in caplog.text


def test_a_larger_limit_redoes_the_last_short_batch_whole(tmp_path, batches):
    run("dps", tmp_path, "data.limit=3")  # batches [0, 1] and [2]
    assert batches == [[0, 1], [2]]
    batches.clear()
    folder, summary = run("dps", tmp_path)  # data.limit=4: batch [2, 3], as an uninterrupted run of 4 has it
    assert batches == [[2, 3]] and summary["counts"]["done"] == 4
    reference, _ = run("dps", tmp_path / "uninterrupted")
    assert_same_files(folder, reference)
