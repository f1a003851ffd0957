"""runner.measure.paired: the mean per-image difference and its standard error, written out by hand; reports of
other images refused; the script's table from two report files."""

from __future__ import annotations

import json
import math

import pytest

from runner.measure.paired import main, paired_difference


def test_mean_and_standard_error_by_hand():
    a, b = [10.0, 12.0, 11.0, 9.0], [11.0, 12.5, 10.0, 10.5]
    # differences 1, 0.5, -1, 1.5: mean 0.5; squared deviations 0.25, 0, 2.25, 1 -> sample variance 3.5 / 3
    mean, se, n, higher = paired_difference(a, b)
    assert mean == pytest.approx(0.5) and se == pytest.approx(math.sqrt(3.5 / 3) / 2)
    assert (n, higher) == (4, 3)
    assert paired_difference(a, [*b, 99.0])[:3] == (mean, se, 4)  # the longer run's extra images are left out
    with pytest.raises(ValueError, match=">= 2 images"):
        paired_difference([1.0], [2.0])


def report(psnr_a, psnr_b, start=0):
    rows = {
        "no PAG": {"psnr": psnr_a, "ssim": [0.5] * len(psnr_a)},
        "PAG": {"psnr": psnr_b, "ssim": [0.6] * len(psnr_b)},
    }
    return {"prior": "tiny_adm", "split": "test", "start": start, "seed": 0, "results": {"hdr": rows}}


def test_table_across_two_reports(tmp_path, capsys):
    (tmp_path / "a.json").write_text(json.dumps(report([10.0, 12.0, 11.0], [0.0, 0.0, 0.0])))
    (tmp_path / "b.json").write_text(json.dumps(report([0.0, 0.0], [11.0, 11.0])))
    main(["--a", str(tmp_path / "a.json"), "--a-row", "no PAG", "--b", str(tmp_path / "b.json"), "--b-row", "PAG"])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    # images 0, 1: differences +1, -1 -> mean 0, std sqrt(2), SE 1; SSIM +0.1 on both
    assert line == "| hdr | PAG − no PAG | +0.00 ± 1.00 (1/2) | +0.100 ± 0.000 (2/2) | 2 |"
    main(["--a", str(tmp_path / "a.json"), "--a-row", "no PAG", "--b-row", "PAG", "--label", "B vs A"])
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("| hdr | B vs A | -11.00 ± 0.58 (0/3) |")
    (tmp_path / "c.json").write_text(json.dumps(report([0.0, 0.0], [1.0, 1.0], start=5)))
    with pytest.raises(ValueError, match="different images: start 0 vs 5"):
        main(["--a", str(tmp_path / "a.json"), "--a-row", "no PAG", "--b", str(tmp_path / "c.json"), "--b-row", "PAG"])
