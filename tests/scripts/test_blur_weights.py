"""The learned blur's weights (bkse's GOPRO_wVAE.pth) like every other weights file: listed by fetch_weights.py with
its link and its place in torch's checkpoint cache; never downloaded (its only source is a Google Drive page that
asks for a confirmation); a missing file is one ``error:`` line naming the link and that path (restore.py: exit 2,
no traceback); a file put there is found with no setting."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import runner
from operators import NonlinearBlur, default_weights_path
from operators.kernel_wizard import KernelWizard
from runner.run import plan

REPO = Path(__file__).resolve().parents[2]
DRIVE = "https://drive.google.com/file/d/1vRoDpIsrTRYZKsOMPNbPcMtFDpCT6Foy"  # bkse's README, "GOPRO wVAE"
#: the learned blur needs 128 px multiples; the tiny prior's own size does not matter before it is loaded
TASK = ["task=nonlinear_deblur", "prior=tiny_adm", "prior.image_size=128", "metrics.enabled=false"]


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> tuple[Path, dict]:
    """Random weights in the published state-dict format (bkse's default KernelWizard options): (file, state)."""
    torch.manual_seed(0)
    state = KernelWizard().state_dict()
    path = tmp_path_factory.mktemp("bkse") / "GOPRO_wVAE.pth"
    torch.save(state, path)
    return path, state


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    """An empty TORCH_HOME, and no network: any request is a failure of the test."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")

    def no_network(*args, **kwargs):
        raise AssertionError("the blur weights must not be downloaded")

    monkeypatch.setattr(runner.download, "_open", no_network)
    return home


def cache_path(home: Path) -> Path:
    return home / "hub" / "checkpoints" / "GOPRO_wVAE.pth"


def place(published: tuple[Path, dict], home: Path) -> Path:
    """The file put in the cache by hand (a hard link: the same bytes, no copy of 461 MB)."""
    target = cache_path(home)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.link(published[0], target)
    return target


def test_listed_with_its_link_cache_path_and_no_checksum(torch_home, fetch_weights):
    result = fetch_weights("--list", *TASK)
    assert result.returncode == 0, result.stderr
    block = result.stdout.split("GOPRO_wVAE.pth (the learned blur")[1].split("\n\n")[0]
    assert f"from:   {DRIVE}" in block and f"to:     {cache_path(torch_home)}" in block
    assert "sha256: none published" in block and "state:  missing" in block


def test_missing_file_is_one_error_line_with_the_link_and_the_path(torch_home, fetch_weights):
    result = fetch_weights(*TASK)
    assert result.returncode == 1  # fetch_weights.py: a file is not there afterwards
    (line,) = [x for x in result.stderr.splitlines() if x.strip()]
    assert line.startswith("error: bkse's GOPRO_wVAE.pth") and "not downloaded automatically" in line
    assert DRIVE in line and str(cache_path(torch_home)) in line


def test_restore_without_the_file_stops_at_start_up(torch_home, tiny_checkpoint, tmp_path, script):
    results = tmp_path / "results"
    args = [*TASK, f"prior.checkpoint={tiny_checkpoint}", f"results_root={results}"]
    result = script("restore.py", *args, cwd=tmp_path, env={"TORCH_HOME": str(torch_home)})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and DRIVE in line and str(cache_path(torch_home)) in line
    assert not results.exists()


def test_a_file_put_in_the_cache_is_used_with_no_setting(published, torch_home, fetch_weights, tmp_path):
    path = place(published, torch_home)
    assert default_weights_path() == path
    listed = fetch_weights(*TASK)
    assert listed.returncode == 0 and f"already there (cached): {path}" in listed.stdout
    cfg = runner.compose(*TASK, f"results_root={tmp_path / 'results'}")
    assert cfg.task.params.weights is None
    plan(cfg, fetch=False)  # the start-up check builds the operator: it finds the file
    operator = runner.build_operator(cfg.task, 128, [torch.Generator().manual_seed(0)])
    assert isinstance(operator, NonlinearBlur)
    loaded, state = operator.network.state_dict(), published[1]
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)
