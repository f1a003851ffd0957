"""scripts/tiny_prior_report.py end to end on the shipped tiny ADM at two steps: rows, passes, tables, pictures."""

import json
import math

from .conftest import load_script


def test_tiny_prior_report_rows_passes_and_tables(tmp_path):
    out = tmp_path / "report"
    argv = ["--prior", "tiny_adm", "--tasks", "box_inpaint", "--n", "2", "--scales", "1", "--samples", "0",
            "--features", "none", "--out", str(out), "solver.num_steps=2"]  # fmt: skip
    load_script("tiny_prior_report.py").main(argv)
    report = json.loads((out / "report.json").read_text())
    rows = report["results"]["box_inpaint"]
    assert list(rows) == ["naive", "no PAG", "PAG s=1"]
    for row in rows.values():
        assert len(row["psnr"]) == 2 and all(math.isfinite(v) for v in row["psnr"])
    # DPS (Chung et al. 2023, Algorithm 1): one network call and one gradient through it per step; PAG adds the
    # perturbed call, without a graph
    assert (rows["no PAG"]["forward_passes"], rows["no PAG"]["backward_passes"]) == (2, 2)
    assert (rows["PAG s=1"]["forward_passes"], rows["PAG s=1"]["backward_passes"]) == (4, 2)
    assert report["command"] == "python scripts/tiny_prior_report.py " + " ".join(argv)
    psnr, difference, cost, task_cost = (out / "table.md").read_text().strip().split("\n\n")
    assert psnr.splitlines()[0] == "| PSNR (dB) ± std / SSIM | box_inpaint |" and len(psnr.splitlines()) == 5
    # the PAG row minus the no-PAG row, image by image, as the JSON's per-image PSNRs give it
    d = [a - b for a, b in zip(rows["PAG s=1"]["psnr"], rows["no PAG"]["psnr"])]
    assert rows["PAG s=1"]["pixel_vs_baseline"]["baseline"] == "no PAG"
    assert math.isclose(rows["PAG s=1"]["pixel_vs_baseline"]["psnr_difference"], sum(d) / 2, abs_tol=1e-9)
    assert math.isclose(rows["PAG s=1"]["pixel_vs_baseline"]["psnr_difference_se"], abs(d[0] - d[1]) / 2, abs_tol=1e-9)
    assert difference.splitlines()[2].startswith("| PAG s=1 − no PAG | ")
    passes = {line.split(" | ")[0][2:]: line.split(" | ")[1].split(" (")[1] for line in task_cost.splitlines()[2:]}
    assert passes == {"no PAG": "2 / 2) |", "PAG s=1": "4 / 2) |"}
    # per image, summed over the one task: the passes above
    costs = {line.split(" | ")[0][2:]: line.split(" | ")[2:4] for line in cost.splitlines()[2:]}
    assert costs == {"no PAG": ["2", "2"], "PAG s=1": ["4", "2"]}
    assert (out / "box_inpaint.png").is_file()


def test_merge_writes_one_table_from_shards_and_refuses_unpaired_ones(tmp_path, capsys):
    """``--merge``: the report.json of runs split by ``--solvers`` into one table.md, nothing run; shards of
    different images are a usage error (exit 2)."""
    import pytest

    def shard(name, solver, psnr, n=2):
        row = {"psnr": psnr, "ssim": [0.5] * n, "seconds_per_image": 1.0, "forward_passes": 4, "backward_passes": 0}
        report = {"prior": "tiny_adm", "split": "test", "start": 0, "n": n, "seed": 0, "overrides": [],
                  "command": f"python scripts/tiny_prior_report.py --solvers {solver}",
                  "results": {"sr4": {"naive": {"psnr": [9.0] * n, "ssim": [0.1] * n},
                                      f"{solver} no PAG": row}}}  # fmt: skip
        (tmp_path / name).mkdir()
        (tmp_path / name / "report.json").write_text(json.dumps(report))
        return str(tmp_path / name)

    folders = [shard("a", "ddnm", [20.0, 22.0]), shard("b", "pigdm", [24.0, 26.0])]
    main = load_script("tiny_prior_report.py").main
    main(["--merge", ",".join(folders), "--out", str(tmp_path / "all")])
    merged = json.loads((tmp_path / "all" / "report.json").read_text())
    assert merged["merged_from"] == folders and len(merged["commands"]) == 2
    psnr = (tmp_path / "all" / "table.md").read_text().split("\n\n")[0].splitlines()
    assert psnr[3:] == ["| ddnm no PAG | 21.00 ± 1.41 / 0.500 |", "| pigdm no PAG | 25.00 ± 1.41 / 0.500 |"]
    other = shard("c", "reddiff", [1.0, 2.0, 3.0], n=3)
    with pytest.raises(SystemExit) as exit_info:
        main(["--merge", f"{folders[0]},{other}", "--out", str(tmp_path / "bad")])
    assert exit_info.value.code == 2 and "differ in n" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
