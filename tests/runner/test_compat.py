"""Which solver can run which task: a task whose operator lacks what a solver needs (``SolverSpec.needs`` against
``Operator.capabilities``) is refused at start-up, before anything is loaded or written, naming the solvers that can;
one that has it runs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import operators
import runner
from runner import SetupError
from solvers import SOLVERS

REPO = Path(__file__).resolve().parents[2]

#: a nonlinear operator a user might write (y = min(x^2, 1)), as a module: imported here and by the CLI subprocess
OPERATOR_MODULE = '''
import operators


class SquareClamp(operators.Operator):
    """y = min(x^2, 1): nonlinear, no adjoint."""

    name = "square_clamp"

    def forward(self, x):
        return (x * x).clamp(max=1.0)
'''

#: a task of that operator composed by overrides over a shipped one (its step sizes come from the command line)
TASK = ["task.name=squared", "task.operator=square_clamp", "~task.params", "~task.resolutions"]
PRIOR = {"pixel": "prior=tiny_adm", "latent": "prior=tiny_sd"}
#: typed from docs/solvers.md's table: what can run a task whose operator offers only its forward
CAN = {"dps", "daps", "latent_daps"}
CANNOT = {"diffpir": "prox_l2", "psld": "is_linear"}


@pytest.fixture
def square_clamp(tmp_path, monkeypatch) -> Path:
    """The module above in a temporary folder, its operator registered in ``operators.OPERATORS`` for this test."""
    folder = tmp_path / "user_ops"
    folder.mkdir()
    (folder / "square_op.py").write_text(OPERATOR_MODULE)
    monkeypatch.syspath_prepend(str(folder))
    import square_op

    monkeypatch.setitem(operators.OPERATORS, "square_clamp", square_op.SquareClamp)
    return folder


def solver_args(solver: str) -> list[str]:
    """``solver=<name>``, a prior of its space and every step size set to 1 (the task has no step-table row)."""
    spec = SOLVERS[solver]
    return [PRIOR[spec.space], f"solver={solver}", *(f"solver.{p}=1" for p in spec.params)]


def compose(solver: str, out: Path, *extra: str):
    return runner.compose(*solver_args(solver), *TASK, f"results_root={out}", *extra)


def fitting_solvers() -> list[str]:
    """The registered solvers whose declared needs a forward-only operator meets, read from the registry's
    ``needs`` fields (not from the matching code under test)."""
    return [name for name, spec in SOLVERS.items() if spec.needs <= {"differentiable"}]


def test_the_test_task_is_nonlinear(square_clamp):
    op = operators.OPERATORS["square_clamp"]()
    assert not op.is_linear and op.capabilities == {"differentiable"}


@pytest.mark.parametrize("solver", sorted(CANNOT))
def test_refused_at_start_up_naming_the_solvers_that_can(solver, square_clamp, tmp_path):
    out = tmp_path / "results"
    with pytest.raises(SetupError) as info:
        runner.plan(compose(solver, out))
    message = str(info.value)
    assert message.startswith(f"solver={solver} needs ")
    assert CANNOT[solver] in message
    assert "task=squared's operator square_clamp does not offer (it offers: differentiable)" in message
    fitting = fitting_solvers()
    assert set(fitting) >= CAN and not set(CANNOT) & set(fitting)
    pixel = ", ".join(n for n in fitting if SOLVERS[n].space == "pixel")
    latent = ", ".join(n for n in fitting if SOLVERS[n].space == "latent")
    assert message.endswith(f"solvers that can: {pixel} (pixel priors); {latent} (latent priors)")
    assert "\n" not in message
    assert not out.exists()  # nothing written


def test_every_registered_solver_is_refused_or_planned(square_clamp, tmp_path):
    """Table-driven over the registry: a forward-only operator is refused exactly by the solvers that need more."""
    for name in SOLVERS:
        cfg = compose(name, tmp_path / name)
        if name in fitting_solvers():
            assert runner.plan(cfg).settings.solver == name
        else:
            with pytest.raises(SetupError, match=f"^solver={name} needs "):
                runner.plan(cfg)


def test_accepted_by_dps_and_restored(square_clamp, fast_overrides):
    cfg = runner.compose(*fast_overrides, *solver_args("dps"), *TASK, "data.limit=1")
    summary = runner.run(cfg)
    assert summary["counts"]["done"] == 1 and summary["counts"]["failed"] == 0
    assert summary["task"] == "squared"


LAUNCHER = """
import runpy, sys
import operators, square_op
operators.OPERATORS["square_clamp"] = square_op.SquareClamp
sys.argv = ["restore.py", *sys.argv[1:]]
runpy.run_path({script!r}, run_name="__main__")
"""


@pytest.mark.parametrize("solver", sorted(CANNOT))
def test_command_line_exits_2_with_one_error_line(solver, square_clamp, tmp_path):
    """``scripts/restore.py`` with the operator registered (a launcher stands in for a plugin mechanism)."""
    launcher = square_clamp / "launch.py"
    launcher.write_text(textwrap.dedent(LAUNCHER.format(script=str(REPO / "scripts" / "restore.py"))))
    out = tmp_path / "results"
    args = [*solver_args(solver), *TASK, f"results_root={out}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(square_clamp), str(REPO)]), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(launcher), *args], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: solver={solver} needs ")
    assert "solvers that can: " in errors[0] and "Traceback" not in result.stderr
    assert not any(out.rglob("*.png"))
