"""Sweep report aggregation against hand computations on the synthetic sweep of conftest.py (two methods, two
tasks, two shards in separate folders, one failed image)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image

from runner.report import build_report, to_csv, to_latex, to_markdown, write_report

from .conftest import NAMES, TASKS, psnr_of, ssim_of, write_job


@pytest.fixture(autouse=True)
def _no_metric_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


def expected(metric, method: str, task: str) -> tuple[float, float, int]:
    """mean, population std and count over the images that did not fail, straight from the written values."""
    values = [metric(method, task, i) for i in range(4) if (method, task, i) != ("dps_pag", "sr4", 3)]
    return float(np.mean(values)), float(np.std(values)), len(values)


def cell_of(table, label: str, task: str):
    method = next(m for m in table.methods if table.labels[m] == label)
    return table.cells[(method, task)], table.stats[(method, task)]


def test_shards_merge_into_cells_with_hand_computed_statistics(synthetic_sweep):
    report = build_report(synthetic_sweep)
    assert len(report.jobs) == 8 and len(report.cells) == 4 and len(report.tables) == 1
    table = report.tables[0]
    assert table.dataset == ("demo", "tiny_adm")
    assert table.tasks == ["sr4", "box_inpaint"]  # the paper's task order
    assert [table.labels[m] for m in table.methods] == ["DPS", "DPS + PAG (s=2)"]
    assert table.metrics == ["psnr", "ssim", "sharpness"]  # LPIPS has no value; unknown columns are kept
    for label, method in (("DPS", "dps"), ("DPS + PAG (s=2)", "dps_pag")):
        for task in TASKS:
            cell, stats = cell_of(table, label, task)
            assert len(cell.jobs) == 2  # both shards' folders
            for metric, fn in (("psnr", psnr_of), ("ssim", ssim_of)):
                mean, std, count = expected(fn, method, task)
                assert stats[metric].mean == pytest.approx(mean, abs=1e-12)
                assert stats[metric].std == pytest.approx(std, abs=1e-12)
                assert stats[metric].count == count
            failed = (method, task) == ("dps_pag", "sr4")
            assert (cell.images, cell.done, cell.failed, cell.remaining) == (4, 3 if failed else 4, int(failed), 0)
            assert cell.complete is not failed
            assert stats["lpips"].mean is None and stats["lpips"].reason == "no AlexNet weights here"


def test_best_marks_only_complete_cells(synthetic_sweep):
    table = build_report(synthetic_sweep).tables[0]
    best = {
        (table.labels[m], t, metric) for (m, t), stats in table.stats.items() for metric, s in stats.items() if s.best
    }
    # box_inpaint: PAG's PSNR is higher; sr4: PAG's mean is higher only because its failed image is left out,
    # so the complete DPS cell is marked. SSIM and time favour DPS everywhere; "sharpness" has no direction.
    assert best == {
        ("DPS + PAG (s=2)", "box_inpaint", "psnr"),
        ("DPS", "sr4", "psnr"),
        ("DPS", "box_inpaint", "ssim"),
        ("DPS", "box_inpaint", "seconds"),
        ("DPS", "sr4", "ssim"),
        ("DPS", "sr4", "seconds"),
    }
    assert expected(psnr_of, "dps_pag", "sr4")[0] > expected(psnr_of, "dps", "sr4")[0]


def test_set_metrics_are_never_averaged_over_shards(synthetic_sweep):
    table = build_report(synthetic_sweep).tables[0]
    _, stats = cell_of(table, "DPS", "box_inpaint")
    # the shards' summaries say FID 50 and 51: a merged cell recomputes, here without Inception weights (offline)
    assert stats["fid"].mean is None and "merged shards" in stats["fid"].reason
    assert "pt_inception-2015-12-05-6726825d.pth" in stats["fid"].reason
    # KID too is recomputed over the merged files (the same Inception features), never averaged
    assert stats["kid"].mean is None and "merged shards" in stats["kid"].reason
    assert "pt_inception-2015-12-05-6726825d.pth" in stats["kid"].reason


class ChannelMeans(torch.nn.Module):
    """A stand-in feature extractor (pytorch-fid's output convention): per-channel means, (B, 3, 1, 1)."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return [x.mean(dim=(2, 3), keepdim=True)]


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)), from the definition."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(s_a @ s_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * root))


def test_fid_of_merged_shards_is_over_the_merged_files(synthetic_sweep):
    table = build_report(synthetic_sweep, fid_model=ChannelMeans()).tables[0]
    cell, stats = cell_of(table, "DPS", "box_inpaint")

    def features(kind: str, folders: list[Path]) -> np.ndarray:
        out = []
        for name in NAMES:
            path = next(f / kind / f"{name}.png" for f in folders if (f / kind / f"{name}.png").is_file())
            out.append(np.asarray(Image.open(path), dtype=np.float64).mean(axis=(0, 1)) / 255.0)
        return np.array(out)

    folders = [j.folder for j in cell.jobs]
    merged = frechet(features("recon", folders), features("label", folders))
    assert stats["fid"].mean == pytest.approx(merged, rel=1e-6)
    assert stats["fid"].count == 4
    _, failed = cell_of(table, "DPS + PAG (s=2)", "sr4")
    # over the 3 images that did not fail: below FID's minimum of 4 (evaluation.fid), so no number but the reason
    assert failed["fid"].mean is None and "FID needs >= 4 images per set, got 3 and 3" in failed["fid"].reason


def test_markdown_latex_csv_content(synthetic_sweep):
    table = build_report(synthetic_sweep).tables[0]
    md = to_markdown(table)
    lines = md.splitlines()
    assert lines[0] == (
        "| Method | sr4 PSNR ↑ | sr4 SSIM ↑ | sr4 SHARPNESS | box_inpaint PSNR ↑ | box_inpaint SSIM ↑ | "
        "box_inpaint SHARPNESS |"
    )
    m, s, _ = expected(psnr_of, "dps_pag", "box_inpaint")
    pag_row = next(line for line in lines if line.startswith("| DPS + PAG (s=2) |"))
    assert f"| **{m:.2f} ± {s:.2f}** |" in pag_row
    m, s, _ = expected(psnr_of, "dps_pag", "sr4")
    assert f"| {m:.2f} ± {s:.2f}‡ |" in pag_row  # flagged, not bold
    m, s, _ = expected(psnr_of, "dps", "sr4")
    assert f"| **{m:.2f} ± {s:.2f}** |" in next(line for line in lines if line.startswith("| DPS |"))

    tex = to_latex(table)
    assert r"\multicolumn{3}{c}{box\_inpaint}" in tex and r"\multicolumn{3}{c}{sr4}" in tex
    assert r"\cmidrule(lr){2-4} \cmidrule(lr){5-7}" in tex
    pag_tex = next(line for line in tex.splitlines() if line.startswith("DPS + PAG"))
    m, s, _ = expected(psnr_of, "dps_pag", "box_inpaint")
    assert rf"\textbf{{{m:.2f} $\pm$ {s:.2f}}}" in pag_tex and r"$^\ddagger$" in pag_tex
    assert tex.count(r"\textbf{") == 4  # the six best marks less the two of the time column (not in the table)

    rows = {r["method"]: r for r in csv.DictReader(io.StringIO(to_csv(table)))}
    assert set(rows) == {"DPS", "DPS + PAG (s=2)"}
    for label, method in (("DPS", "dps"), ("DPS + PAG (s=2)", "dps_pag")):
        for task in TASKS:
            mean, std, count = expected(psnr_of, method, task)
            assert float(rows[label][f"{task}:psnr:mean"]) == pytest.approx(mean, abs=1e-9)
            assert float(rows[label][f"{task}:psnr:std"]) == pytest.approx(std, abs=1e-9)
            assert int(rows[label][f"{task}:done"]) == count and int(rows[label][f"{task}:images"]) == 4
    assert rows["DPS + PAG (s=2)"]["sr4:failed"] == "1" and rows["DPS + PAG (s=2)"]["sr4:complete"] == "0"
    assert rows["DPS + PAG (s=2)"]["sr4:psnr:best"] == "0" and rows["DPS"]["sr4:psnr:best"] == "1"
    assert rows["DPS + PAG (s=2)"]["pag_scale"] == "2.0" and rows["DPS"]["pag_scale"] == "0"


def test_partial_sweep_marks_running_and_missing_cells(synthetic_sweep):
    # a third method with one shard still running (no summary.json yet) and no sr4 job at all
    running = synthetic_sweep / "job99" / "out"
    write_job(running, "dps_pag", "box_inpaint", 0, summary=False)
    settings = {
        "solver": "dps",
        "dataset": "shapes",
        "task": "box_inpaint",
        "zeta": 0.3,
        "num_steps": 100,
        "pag": {
            "scale": 4.0,
            "layers": ["middle_block.1"],
            "adaptive_scale": 0.0,
            "x0_from": "unguided",
            "mode": "shared_prefix",
        },
    }
    experiment = {
        "task": {"name": "box_inpaint"},
        "prior": {"name": "tiny_adm"},
        "solver": {"name": "dps"},
        "settings": settings,
        "data": {"name": "demo", "dataset": "shapes"},
        "seed": 0,
        "dtype": "float32",
        "metrics": {"size": None},
    }
    (running / "experiment.json").write_text(json.dumps(experiment))
    out = synthetic_sweep / "report"
    report = write_report(synthetic_sweep, out, fid_model=ChannelMeans())
    table = report.tables[0]
    assert [table.labels[m] for m in table.methods] == ["DPS", "DPS + PAG (s=2)", "DPS + PAG (s=4)"]
    cell, stats = cell_of(table, "DPS + PAG (s=4)", "box_inpaint")
    assert (cell.images, cell.remaining, cell.done) == (None, None, 2)
    assert not any(s.best for s in stats.values())
    md = to_markdown(table)
    s4 = next(line for line in md.splitlines() if line.startswith("| DPS + PAG (s=4) |"))
    assert s4.split(" | ")[1:4] == ["—", "—", "—"]  # no sr4 job
    assert "†" in s4
    readme = (out / "README.md").read_text()
    assert "DPS + PAG (s=4) / sr4: no job" in readme
    assert "DPS + PAG (s=4) / box_inpaint: running: 2 done, 0 failed so far" in readme
    assert "DPS + PAG (s=2) / sr4: ‡ 1 of 4 failed (img_3)" in readme
    for name in ("demo_tiny_adm.md", "demo_tiny_adm.csv", "demo_tiny_adm.tex"):
        assert (out / "tables" / name).is_file()
    for stem in ("psnr_vs_pag", "ssim_vs_pag", "seconds"):
        for ext in ("png", "svg"):
            assert (out / "plots" / f"demo_tiny_adm_{stem}.{ext}").stat().st_size > 0
    assert "PSNR vs LPIPS plot skipped" in readme
    cells = json.loads((out / "report.json").read_text())["cells"]
    assert len(cells) == 5
    # rerunning does not count the report's own folder as a job
    assert len(write_report(synthetic_sweep, out).jobs) == 9


def test_records_beyond_the_set_are_ignored(synthetic_sweep):
    # an earlier run with a larger data.limit left img_9 in a folder; a newer record of img_0 overrides the CSV row
    folder = synthetic_sweep / "job00" / "out"
    (folder / "records").mkdir()
    stray = {"name": "img_9", "index": 9, "status": "done", "psnr": 99.0, "ssim": 1.0, "seconds": 1.0}
    (folder / "records" / "img_9.json").write_text(json.dumps(stray))
    newer = {"name": "img_0", "index": 0, "status": "done", "psnr": 30.0, "ssim": 0.5, "seconds": 1.0}
    (folder / "records" / "img_0.json").write_text(json.dumps(newer))
    table = build_report(synthetic_sweep).tables[0]
    cell, stats = cell_of(table, "DPS", "box_inpaint")
    assert (cell.done, cell.images) == (4, 4)
    values = [30.0] + [psnr_of("dps", "box_inpaint", i) for i in (1, 2, 3)]
    assert stats["psnr"].mean == pytest.approx(np.mean(values), abs=1e-12)


def test_labels_of_table_driven_pag():
    from runner.report.tables import method_label

    method = (("pag", "table"), ("seed", 1), ("solver", "psld"))
    assert method_label(method, [], [1.0, 1.0]) == "PSLD + PAG (table s=1)"
    assert method_label(method, ["seed"], [1.0, 3.0]) == "PSLD + PAG (table s) [seed=1]"
    assert method_label((("pag", "off"), ("solver", "dps")), []) == "DPS"


def test_one_folder_kid_keeps_its_std_over_subsets():
    from types import SimpleNamespace

    from runner.report import Stat
    from runner.report.tables import summary_set_metric

    job = SimpleNamespace(set_metrics={"kid": {"value": 0.125, "std": 0.485}, "fid": {"value": 32.0}})
    cell = SimpleNamespace(jobs=[job], done=8)
    kid, fid = summary_set_metric(cell, "kid"), summary_set_metric(cell, "fid")
    assert (kid.mean, kid.std, kid.count) == (0.125, 0.485, 8)
    assert kid.text("kid") == "0.1250 ± 0.4850"  # the noise of an 8-image KID is in the cell
    assert fid.std is None and fid.text("fid") == "32.00"
    assert Stat(0.1).text("kid") == "0.1000"


def test_plot_lines_split_by_pag_layer_and_start_at_pag_off():
    from types import SimpleNamespace

    from runner.report.plots import _series

    off = (("pag", "off"), ("solver", "dps"))
    a1 = (("pag", 1.0), ("pag.layers", "output_blocks.4.1"), ("solver", "dps"))
    a2 = (("pag", 2.0), ("pag.layers", "output_blocks.4.1"), ("solver", "dps"))
    b1 = (("pag", 1.0), ("pag.layers", "input_blocks.5.1"), ("solver", "dps"))
    labels = {off: "DPS", a1: "DPS + PAG (s=1) [x]", a2: "DPS + PAG (s=2) [x]", b1: "DPS + PAG (s=1) [y]"}
    lines = _series(SimpleNamespace(methods=[off, a1, b1, a2], labels=labels))
    assert lines == {
        "DPS [pag.layers=output_blocks.4.1]": [off, a1, a2],
        "DPS [pag.layers=input_blocks.5.1]": [off, b1],
    }


def test_legends_only_where_something_is_labelled(recwarn):
    """matplotlib warns "No artists with labels found to put in legend" for a panel without labelled lines: the
    report's legend collects the labels of every panel, and draws none when there are none."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from runner.report.plots import _legend

    fig, (first, second) = plt.subplots(1, 2)
    _legend(first, [first, second])
    assert first.get_legend() is None
    second.plot([0, 1], [0, 1], label="DPS + PAG")
    _legend(first, [first, second])
    assert [t.get_text() for t in first.get_legend().get_texts()] == ["DPS + PAG"]
    plt.close(fig)
    assert not [w for w in recwarn if "No artists with labels" in str(w.message)]
