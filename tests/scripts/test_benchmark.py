"""scripts/benchmark.py: the work each PAG implementation does (FLOPs: deterministic, so testable) and the report."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import priors

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "benchmark.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def test_flops_of_each_case_are_the_passes_it_runs(bench):
    """PAG off = the bare equations; PAG without graph adds exactly one perturbed forward pass (counted on its own);
    keeping the graph (naive) adds no backward work, since the data term differentiates the unguided eps; the
    shared prefix and the shared skips each remove work."""
    gflop = {c.mode: bench.step_costs("tiny_adm", c, "cpu")["gflop"] for c in bench.cases_for("tiny_adm")}
    problem = bench.Problem("tiny_adm", "cpu")
    schedule = problem.solver(bench.Case("none"))[0].schedule
    t = int(schedule.timesteps[len(schedule) // 2])  # the step the benchmark times
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), priors.perturbed_self_attention(problem.prior, problem.layers), counter:
        problem.prior(problem.x_t, t)
    perturbed_pass = counter.get_total_flops() / 1e9

    assert gflop["bare"] == pytest.approx(gflop["none"], rel=1e-12)
    assert gflop["no_grad"] - gflop["none"] == pytest.approx(perturbed_pass, rel=1e-9)
    assert gflop["naive"] == pytest.approx(gflop["no_grad"], rel=1e-12)
    assert gflop["shared"] < gflop["prefix"] < gflop["no_grad"]


def test_report_covers_every_case(bench, tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = "--only tiny_adm --warmup 1 --repeats 2 --threads 1 --no-memory --malloc retain --json"
    bench.main([*args.split(), str(out)])
    report = json.loads(out.read_text())
    rows = {r["mode"]: r for r in report["results"]}
    assert set(rows) == {c.mode for c in bench.cases_for("tiny_adm")}
    assert all(len(r["seconds"]) == 2 and r["malloc"] == "retain" for r in rows.values())
    assert rows["none"]["ratios"] == [1.0, 1.0]
    assert report["machine"]["repeats"] == 2
    assert "| tiny_adm | retain | shared |" in capsys.readouterr().out


def test_unknown_allocator_setting_is_refused(bench):
    with pytest.raises(SystemExit):
        bench.main(["--only", "tiny_adm", "--malloc", "jemalloc"])
