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
