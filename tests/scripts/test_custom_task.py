"""The nonlinear tasks and a user's own operator (``task=custom``) end to end on the tiny prior (few steps), and the
refusal of every solver / task pair whose solver needs what the task's operator does not offer."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import runner
from operators.kernel_wizard import KernelWizard
from runner import SetupError, read_metrics_csv
from runner.build import SolverMismatch
from runner.run import plan
from solvers import SOLVERS

#: a user's module: an Operator subclass with the image's shape, and a function wrapped by from_function
MY_OPS = textwrap.dedent(
    """
    import torch
    import torch.nn.functional as F
    from operators import Operator, from_function

    class Squash(Operator):
        \"\"\"y = tanh(gain * x): same shape as the image.\"\"\"

        def __init__(self, gain=1.0, noise=None):
            super().__init__(noise)
            self.gain = gain

        def forward(self, x):
            return torch.tanh(self.gain * x)

    def pooled_square(factor=2):
        \"\"\"y = avgpool_factor(x)^2: a smaller measurement than the image.\"\"\"
        return from_function(lambda x: F.avg_pool2d(x, factor) ** 2, noise_sigma=0.05, name="pooled_square")
    """
)


def write_module(folder: Path, name: str, source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(source)
    return folder


def finite_rows(csv: Path) -> list[dict]:
    rows = read_metrics_csv(csv)
    assert rows and all(math.isfinite(float(r["psnr"])) and math.isfinite(float(r["ssim"])) for r in rows)
    return rows


# -- task=custom through the command line ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("operator", "kwarg", "measured_px"),
    [("my_ops:Squash", "+task.kwargs.gain=2", 32), ("my_ops:pooled_square", "+task.kwargs.factor=4", 32 // 4)],
)
def test_custom_operator_from_a_module_through_the_cli(tiny_checkpoint, tmp_path, script, operator, kwarg, measured_px):
    ops = write_module(tmp_path / "user_code", "my_ops", MY_OPS)
    results = tmp_path / "results"
    args = [
        "task=custom",
        f"task.operator={operator}",
        kwarg,
        "solver=dps",
        "solver.zeta=1",  # the step-size tables have no row for an operator they do not know
        f"prior.checkpoint={tiny_checkpoint}",
        f"results_root={results}",
        "solver.num_steps=3",
        "data.limit=2",
        "progress_every=0",
    ]
    result = script("restore.py", *args, cwd=ops, env={"PYTHONPATH": str(ops)})
    assert result.returncode == 0, result.stderr[-3000:]
    (csv,) = results.rglob("metrics.csv")
    assert len(finite_rows(csv)) == 2
    recons = sorted((csv.parent / "recon").glob("*.png"))
    inputs = sorted((csv.parent / "input").glob("*.png"))
    assert len(recons) == 2 and len(inputs) == 2
    assert np.asarray(Image.open(recons[0])).shape[:2] == (32, 32)
    assert np.asarray(Image.open(inputs[0])).shape[:2] == (measured_px, measured_px)  # the measurement, saved


def test_custom_operator_noise_is_the_tasks(tmp_path, monkeypatch):
    """The task's noise config replaces the operator's own (here: none), unless task.kwargs gives ``noise``."""
    monkeypatch.chdir(write_module(tmp_path, "my_ops_noise", MY_OPS))
    x = torch.zeros(1, 3, 8, 8)
    for noise, sigma in ((["task.noise.sigma=0.2"], 0.2), (["task.noise={name: none}"], 0.0)):
        cfg = runner.compose("task=custom", "task.operator=my_ops_noise:pooled_square", *noise)
        op = runner.build_operator(cfg.task, 8, None)
        assert op.noise_sigma == sigma
        y = op.measure(x, [torch.Generator().manual_seed(0)])
        assert float((y - op(x)).std()) == pytest.approx(sigma, abs=0.1 * sigma + 1e-12)


# -- the nonlinear tasks end to end (in-process) ---------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides",
    [
        ["task=phase_retrieval", "solver=dps"],
        ["task=phase_retrieval", "solver=dps", "pag.enabled=true"],
        ["task=hdr", "solver=daps", "solver.ode_steps=2", "solver.mcmc_steps=3"],
    ],
    ids=["phase_retrieval-dps", "phase_retrieval-dps-pag", "hdr-daps"],
)
def test_nonlinear_task_end_to_end(run_tiny, overrides):
    cfg, summary = run_tiny(*overrides)
    assert summary["counts"]["done"] == 2 and summary["counts"]["failed"] == 0
    folder = runner.task_dir(cfg)
    assert len(finite_rows(folder / "metrics.csv")) == 2
    assert len(list((folder / "recon").glob("*.png"))) == 2
    if "pag.enabled=true" in overrides:
        assert "_pag0_" not in str(folder)


# -- incompatible solver / task pairs --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def blur_weights(tmp_path_factory) -> Path:
    """Random weights in the published GOPRO_wVAE.pth format (the learned blur's network, default options)."""
    path = tmp_path_factory.mktemp("bkse") / "GOPRO_wVAE.pth"
    torch.manual_seed(0)
    torch.save(KernelWizard().state_dict(), path)
    return path


def task_overrides(task: str, blur_weights: Path) -> list[str]:
    if task == "nonlinear_deblur":  # the learned blur's U-Net needs multiples of 128 px
        return [f"task.params.weights={blur_weights}", "prior.image_size=128"]
    return []


NONLINEAR_TASKS = ("phase_retrieval", "hdr", "nonlinear_deblur")


@pytest.mark.parametrize("task", NONLINEAR_TASKS)
@pytest.mark.parametrize("solver", sorted(SOLVERS))
def test_incompatible_pairs_are_refused_at_start_up(task, solver, blur_weights, tmp_path):
    prior = "tiny_sd" if SOLVERS[solver].space == "latent" else "tiny_adm"
    results = tmp_path / "results"
    cfg = runner.compose(
        f"task={task}", f"solver={solver}", f"prior={prior}", f"results_root={results}",
        *task_overrides(task, blur_weights),
    )  # fmt: skip
    operator = runner.build_operator(cfg.task, int(cfg.prior.image_size), None)
    missing = sorted(SOLVERS[solver].needs - operator.capabilities)
    capable = [name for name, spec in SOLVERS.items() if spec.needs <= operator.capabilities]
    if not missing:
        try:
            plan(cfg, fetch=False)
        except SolverMismatch as exc:  # pragma: no cover - the failure message
            pytest.fail(f"solver={solver} can run task={task} but was refused: {exc}")
        except SetupError:
            pass  # e.g. no step-size row for this pair: not a refusal of the pair
        return
    with pytest.raises(SolverMismatch) as info:
        runner.run(cfg)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"solver={solver} needs ")
    assert f"task={task}" in message
    assert all(name in message for name in missing)
    listed = message.split("solvers that can: ")[1]
    assert capable and all(name in listed for name in capable)
    assert all(name not in listed for name in SOLVERS if name not in capable)
    assert not results.exists()  # nothing written


def test_incompatible_pair_from_the_command_line(tiny_checkpoint, tmp_path, script):
    results = tmp_path / "results"
    args = ["task=phase_retrieval", "solver=diffpir", f"prior.checkpoint={tiny_checkpoint}", f"results_root={results}"]
    result = script("restore.py", *args, cwd=tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: solver=diffpir needs ") and "prox_l2" in line
    assert "solvers that can: dps, daps, reddiff (pixel priors); latent_daps, resample (latent priors)" in line
    assert not results.exists()


# -- task=custom's errors -------------------------------------------------------------------------------------
BROKEN = {
    "imports_missing": "import a_package_that_is_not_installed_xyz\n",
    "raises": "raise RuntimeError('broken at import')\n",
    "not_an_operator": "NUMBER = 3\n\nclass Plain:\n    pass\n",
}


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ([], "task=custom needs task.operator=<module>:<name>"),
        (["task.operator=no_such_module_xyz:make"], "no module 'no_such_module_xyz' in the working directory"),
        (["task.operator=imports_missing:x"], "importing it failed: ModuleNotFoundError"),
        (["task.operator=raises:x"], "importing it failed: RuntimeError: broken at import"),
        (["task.operator=not_an_operator:missing"], "not_an_operator has no 'missing'"),
        (["task.operator=not_an_operator:NUMBER"], "must be an Operator subclass, an Operator, or a function"),
        (["task.operator=not_an_operator:Plain"], "the class Plain is not an operators.Operator subclass"),
        (["task.operator=custom_ok:Squash", "+task.kwargs.nope=1"], "unexpected keyword argument 'nope'"),
    ],
)
def test_custom_task_errors(tmp_path, monkeypatch, tiny_checkpoint, overrides, expected):
    for name, source in {**BROKEN, "custom_ok": MY_OPS}.items():
        write_module(tmp_path / "code", name, source)
    monkeypatch.chdir(tmp_path / "code")
    results = tmp_path / "results"
    cfg = runner.compose("task=custom", "solver.zeta=1", f"prior.checkpoint={tiny_checkpoint}",
                         f"results_root={results}", *overrides)  # fmt: skip
    with pytest.raises(SetupError) as info:
        runner.run(cfg)
    assert expected in str(info.value) and "\n" not in str(info.value)
    assert not results.exists()


def test_custom_task_error_from_the_command_line(tmp_path, script):
    result = script("restore.py", "task=custom", "task.operator=nowhere_xyz:Op", f"results_root={tmp_path / 'r'}",
                    cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: task.operator: operator 'nowhere_xyz:Op': no module 'nowhere_xyz'")
    assert not (tmp_path / "r").exists()
