"""scripts/benchmark.py as a user runs it: the report of every case, costs-only runs, refused settings."""

import json

import pytest

from runner.measure.bench_problem import cases_for

from .conftest import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("benchmark.py")


def test_report_covers_every_case(bench, tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = "--only test_adm --warmup 1 --repeats 2 --threads 1 --no-memory --malloc retain --json"
    bench.main([*args.split(), str(out)])
    report = json.loads(out.read_text())
    rows = {r["mode"]: r for r in report["results"]}
    assert set(rows) == {c.mode for c in cases_for("test_adm")}
    assert all(len(r["seconds"]) == 2 and r["malloc"] == "retain" for r in rows.values())
    assert rows["none"]["ratios"] == [1.0, 1.0]
    assert report["machine"]["repeats"] == 2
    printed = capsys.readouterr().out
    assert "| test_adm | dps | retain | shared |" in printed

    # --table re-renders the saved file: the same table as the run printed
    bench.main(["--table", str(out)])
    assert printed.split("\n\n", 1)[1].strip() in capsys.readouterr().out


def test_costs_only_run_reports_work_without_timings(bench, tmp_path, capsys):
    out = tmp_path / "costs.json"
    bench.main(["--only", "test_adm", "--repeats", "0", "--json", str(out)])
    rows = {r["mode"]: r for r in json.loads(out.read_text())["results"]}
    assert all(r["seconds"] == [] and r["ratio_to_none"] is None for r in rows.values())
    assert rows["shared"]["gflop"] < rows["none"]["gflop"] * 1.5 and rows["shared"]["ops"] > 0
    assert "| test_adm | dps | system | shared | - | - | - | - |" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # nothing left to measure
        bench.main(["--only", "test_adm", "--repeats", "0", "--no-memory"])


def test_unknown_allocator_setting_is_refused(bench):
    with pytest.raises(SystemExit):
        bench.main(["--only", "test_adm", "--malloc", "jemalloc"])


def test_other_solvers_are_measured_on_the_models_of_their_prior_space(bench, tmp_path, capsys):
    out = tmp_path / "solvers.json"
    bench.main(["--only", "test_adm", "--solvers", "ddnm,psld", "--repeats", "0", "--json", str(out)])
    rows = json.loads(out.read_text())["results"]
    assert {r["solver"] for r in rows} == {"ddnm"}  # PSLD runs on latent priors: not on test_adm
    assert {r["mode"] for r in rows} == {c.mode for c in cases_for("test_adm", solver="ddnm")}
    assert "| test_adm | ddnm | system | bare |" in capsys.readouterr().out
    for refused in (["--solvers", "psld"], ["--solvers", "nope"]):
        with pytest.raises(SystemExit):
            bench.main(["--only", "test_adm", "--repeats", "0", *refused])


def test_results_files_without_a_solver_read_as_the_models_default(bench, tmp_path, capsys):
    old = {"machine": {}, "results": [{"model": "test_sd", "mode": "none", "lever": "", "gflop": 1.0}]}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    bench.main(["--table", str(path)])
    assert "| test_sd | psld | system | none |" in capsys.readouterr().out
