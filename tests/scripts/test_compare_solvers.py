"""compare_solvers.py end to end on the shipped tiny ADM at a few steps: rows, network passes, the KID column."""

import json
import math

from .conftest import load_script


def test_compare_solvers_rows_passes_and_kid(tmp_path):
    out = tmp_path / "cmp"
    load_script("compare_solvers.py").main(
        ["--prior", "tiny_adm", "--solvers", "dps", "--tasks", "box_inpaint", "--n", "4", "--reference", "8",
         "--out", str(out), "solver.num_steps=3"]
    )  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    rows = {(r["solver"], r["pag"]): r for r in report["rows"]}
    assert set(rows) == {("dps", False), ("dps", True)}
    # DPS: one network call per step; with PAG one more (the perturbed pass) per step
    assert rows["dps", False]["passes_per_image"] == 3
    assert rows["dps", True]["passes_per_image"] == 6
    for r in rows.values():
        assert len(r["psnr"]) == 4 and all(math.isfinite(v) for v in r["psnr"])
        d = r["distribution"]
        # 4 restored images: subsets of 2, the smallest KID allows (and the fewest images: evaluation.kid)
        assert math.isfinite(d["kid"]) and d["kid_std"] >= 0 and d["kid_subset_size"] == 2
    assert report["features"].startswith("shapes") and report["reference"]["n"] == 8
    table = (out / "table.md").read_text()
    assert "KID ± std" in table.splitlines()[0] and len(table.splitlines()) == 4


def test_default_solvers_are_the_priors_space_and_a_mismatch_is_skipped(tmp_path, monkeypatch, capsys):
    """No ``--solvers``: every registered solver of the prior's space; one that cannot run a task is skipped with a
    note (``SolverMismatch``, raised here for diffpir as a nonlinear task's operator would)."""
    from runner.build import SolverMismatch
    from runner.measure import compare
    from solvers import SOLVERS

    run_one = compare.run_one

    def run_one_or_mismatch(args, prior, solver, *rest):
        if solver == "diffpir":
            raise SolverMismatch("solver=diffpir needs the proximal data step prox_l2(y, x0, rho)")
        return run_one(args, prior, solver, *rest)

    monkeypatch.setattr(compare, "run_one", run_one_or_mismatch)
    out = tmp_path / "cmp"
    load_script("compare_solvers.py").main(
        ["--prior", "tiny_adm", "--tasks", "box_inpaint", "--pag", "off", "--n", "1", "--features", "none",
         "--out", str(out), "solver.num_steps=2"]
    )  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    pixel = {name for name, spec in SOLVERS.items() if spec.space == "pixel"}
    assert {"dps", "diffpir", "daps"} <= pixel
    assert {r["solver"] for r in report["rows"]} == pixel - {"diffpir"}
    assert "skipped: solver=diffpir needs" in capsys.readouterr().out
