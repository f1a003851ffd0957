"""runner.measure's tiny-prior report: which rows it runs, how the cost table adds them up, the pass counter."""

import argparse

import pytest
import torch

from priors.adm import ADMPrior
from runner.measure import PassCounter, tiny_report


def test_variants_cover_every_solver_and_x0_choice():
    args = argparse.Namespace(solvers="dps,diffpir", x0_from="unguided,guided")
    rows = dict(tiny_report.variants(args, [1.0]))
    assert list(rows) == [
        "dps no PAG", "dps PAG s=1 (x0 unguided)", "dps PAG s=1 (x0 guided)",
        "diffpir no PAG", "diffpir PAG s=1 (x0 unguided)", "diffpir PAG s=1 (x0 guided)",
    ]  # fmt: skip
    assert rows["diffpir PAG s=1 (x0 guided)"] == ["solver=diffpir", "pag.scale=1.0", "pag.x0_from=guided"]
    # without --solvers: the config's solver and the original labels
    plain = dict(tiny_report.variants(argparse.Namespace(solvers="", x0_from="unguided"), [2.0]))
    assert plain == {"no PAG": [], "PAG s=2": ["pag.scale=2.0", "pag.x0_from=unguided"]}


def test_pass_counter_and_cost_table():
    prior = ADMPrior.from_preset("test", init="random", generator=torch.Generator().manual_seed(0)).eval()
    counter = PassCounter(prior)
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    prior(x, 10).eps.sum().backward()
    with torch.no_grad():
        prior(x, 10)
    assert (counter.forward, counter.backward) == (2, 1)
    counter.remove()  # counts nothing more
    prior(x, 10).eps.sum().backward()
    assert (counter.forward, counter.backward) == (2, 1)

    # diffusers' UNet returns a dataclass, where a module backward hook would never fire (PSLD read 0 backward passes)
    from priors.sd import random_sd_prior

    sd = random_sd_prior(seed=0, image_size=32)
    counter = PassCounter(sd)
    z = torch.randn(1, *sd.sample_shape, requires_grad=True)
    sd(z, 10).eps.sum().backward()
    with torch.no_grad():
        sd(z, 10)
    assert (counter.forward, counter.backward) == (2, 1)

    def row(seconds, forward, backward):
        return {"seconds_per_image": seconds, "forward_passes": forward, "backward_passes": backward}

    results = {
        "a": {"rows": {"naive": {}, "dps": row(2.0, 250, 250), "diffpir": row(0.5, 100, 0)}},
        "b": {"rows": {"naive": {}, "dps": row(4.0, 250, 250), "diffpir": row(1.0, 100, 0)}},
    }
    lines = tiny_report.cost_table(results).splitlines()
    assert lines[2] == "| dps | 6.00 | 250 | 250 | 1.00 |"
    assert lines[3] == "| diffpir | 1.50 | 100 | 0 | 0.25 |"


def test_table_scale_row_uses_the_step_size_table():
    assert tiny_report.parse_scales("1,table") == [1.0, "table"]
    args = argparse.Namespace(solvers="", x0_from="unguided", intervals="0:500")
    rows = dict(tiny_report.variants(args, ["table"]))
    assert rows["PAG (table)"] == ["pag.enabled=true", "pag.x0_from=unguided"]
    assert rows["PAG (table) t in [0, 500]"] == ["pag.enabled=true", "pag.interval=[0,500]"]


def test_each_pag_row_is_paired_with_its_own_solvers_no_pag_row():
    labels = ["label", "naive", "dps no PAG", "dps PAG s=1", "diffpir no PAG", "diffpir PAG s=1 (x0 guided)"]
    assert tiny_report.paired_baselines(labels) == {
        "dps PAG s=1": "dps no PAG",
        "diffpir PAG s=1 (x0 guided)": "diffpir no PAG",
    }
    results = {
        task: {
            "rows": {
                "no PAG": {},
                "PAG (table)": {
                    "kid_vs_baseline": {"baseline": "no PAG", "kid_difference": d, "kid_difference_std": 0.01}
                },
            }
        }
        for task, d in (("box_inpaint", -0.0625), ("sr4", 0.125))
    }
    lines = tiny_report.restoration_kid_difference_table(results).splitlines()
    assert lines[0] == "| KID difference ± std (paired) | box_inpaint | sr4 |"
    assert lines[2] == "| PAG (table) − no PAG | -0.062 ± 0.010 | +0.125 ± 0.010 |"


def test_distribution_table_shows_the_paired_difference_where_a_row_has_one():
    stats = {"kid": 1.0, "kid_std": 0.25, "fid": 40.0, "sharpness": 0.01, "contrast": 0.1, "clipped": 0.02}
    rows = {
        "no PAG": stats,
        "PAG s=1": stats | {"kid_vs_baseline": {"kid_difference": -0.125, "kid_difference_std": 0.05}},
    }
    lines = tiny_report.distribution_table(rows, 64).splitlines()
    assert lines[2] == "| no PAG | 1.000 ± 0.250 |  | 40.00 | 0.0100 | 0.100 | 2.00 |"
    assert lines[3] == "| PAG s=1 | 1.000 ± 0.250 | -0.125 ± 0.050 | 40.00 | 0.0100 | 0.100 | 2.00 |"


def test_paired_difference_is_the_mean_per_image_difference_and_its_standard_error():
    # per-image differences 1, 0, 2: mean 1, sample std 1, standard error 1 / sqrt(3)
    mean, se = tiny_report.paired_difference([20.0, 22.0, 25.0], [19.0, 22.0, 23.0])
    assert mean == 1.0 and abs(se - 3**-0.5) < 1e-12
    # a constant shift has no spread however far apart the images are: what pairing buys over two rows' own stds
    assert tiny_report.paired_difference([10.0, 30.0, 50.0], [9.5, 29.5, 49.5]) == (0.5, 0.0)


def test_pixel_difference_table_pairs_each_pag_row_with_its_own_no_pag_row():
    def row(psnr, ssim):
        return {"psnr": psnr, "ssim": ssim}

    rows = {
        "naive": row([10.0, 10.0], [0.1, 0.1]),
        "dps no PAG": row([20.0, 24.0], [0.5, 0.7]),
        "dps PAG (table)": row([21.0, 26.0], [0.5, 0.8]),  # +1, +2: mean +1.5, s.e. 0.5; SSIM 0, +0.1
        "ddnm no PAG": row([30.0, 30.0], [0.9, 0.9]),
        "ddnm PAG (table)": row([29.75, 29.75], [0.9, 0.9]),
    }
    for label, baseline in tiny_report.paired_baselines(["label", *rows]).items():
        rows[label]["pixel_vs_baseline"] = {"baseline": baseline} | tiny_report.pixel_difference(
            rows[label], rows[baseline]
        )
    assert set(tiny_report.paired_baselines(["label", *rows])) == {"dps PAG (table)", "ddnm PAG (table)"}
    lines = tiny_report.pixel_difference_table({"box_inpaint": {"rows": rows}}).splitlines()
    assert lines[0] == "| PSNR dB / SSIM difference ± s.e. (paired) | box_inpaint |"
    assert lines[2] == "| dps PAG (table) − dps no PAG | +1.50 ± 0.50 / +0.050 ± 0.050 |"
    assert lines[3] == "| ddnm PAG (table) − ddnm no PAG | -0.25 ± 0.00 / +0.000 ± 0.000 |"
    assert len(lines) == 4


def test_task_cost_table_lists_seconds_and_passes_per_task():
    def row(seconds, forward, backward):
        return {"seconds_per_image": seconds, "forward_passes": forward, "backward_passes": backward}

    results = {
        "sr4": {"rows": {"naive": {}, "pigdm no PAG": row(1.25, 50, 50), "pigdm PAG (table)": row(2.5, 100, 50)}},
        "box_inpaint": {
            "rows": {"naive": {}, "pigdm no PAG": row(1.0, 50, 50), "pigdm PAG (table)": row(2.0, 100, 50)}
        },
    }
    lines = tiny_report.task_cost_table(results).splitlines()
    assert lines[0] == "| s / image (forward / backward passes per image) | sr4 | box_inpaint |"
    assert lines[2:] == [
        "| pigdm no PAG | 1.25 (50 / 50) | 1.00 (50 / 50) |",
        "| pigdm PAG (table) | 2.50 (100 / 50) | 2.00 (100 / 50) |",
    ]


def _shard(command: str, rows: dict[str, dict[str, dict]], **changes) -> dict:
    """A report.json of one run of the measurement, as ``tiny_report.main`` writes it (no distribution metrics)."""
    return {"prior": "tiny_adm", "split": "test", "start": 0, "n": 2, "seed": 0, "overrides": [], "command": command,
            "results": rows} | changes  # fmt: skip


def test_merge_reports_puts_shards_by_solver_and_by_task_in_one_table(tmp_path):
    def row(psnr, seconds):
        return {"psnr": psnr, "ssim": [0.5, 0.5], "seconds_per_image": seconds, "forward_passes": 100,
                "backward_passes": 0}  # fmt: skip

    naive = {"psnr": [10.0, 12.0], "ssim": [0.1, 0.1]}
    by_solver = [
        _shard("a", {t: {"naive": naive, "ddnm no PAG": row([20.0, 22.0], 1.0)} for t in ("sr4", "box_inpaint")}),
        _shard("b", {t: {"naive": naive, "pigdm no PAG": row([21.0, 23.0], 2.0)} for t in ("sr4", "box_inpaint")}),
    ]
    merged = tiny_report.merge_reports(by_solver)
    assert merged["commands"] == ["a", "b"] and list(merged["results"]) == ["sr4", "box_inpaint"]
    assert list(merged["results"]["sr4"]) == ["naive", "ddnm no PAG", "pigdm no PAG"]
    lines = tiny_report.table({t: {"rows": r} for t, r in merged["results"].items()}).splitlines()
    assert lines[2:] == [
        "| naive | 11.00 ± 1.41 / 0.100 | 11.00 ± 1.41 / 0.100 |",
        "| ddnm no PAG | 21.00 ± 1.41 / 0.500 | 21.00 ± 1.41 / 0.500 |",
        "| pigdm no PAG | 22.00 ± 1.41 / 0.500 | 22.00 ± 1.41 / 0.500 |",
    ]
    by_task = [
        _shard("c", {"sr4": {"naive": naive, "ddnm no PAG": row([20.0, 22.0], 1.0)}}),
        _shard("d", {"box_inpaint": {"naive": naive, "ddnm no PAG": row([24.0, 26.0], 3.0)}}),
    ]
    costs = tiny_report.cost_table({t: {"rows": r} for t, r in tiny_report.merge_reports(by_task)["results"].items()})
    assert costs.splitlines()[2] == "| ddnm no PAG | 4.00 | 100 | 0 | 1.00 |"  # 1 s on sr4 + 3 s on box inpainting


def test_merge_reports_refuses_runs_that_are_not_paired():
    rows = {"sr4": {"naive": {}, "ddnm no PAG": {}}}
    for change in ({"n": 4}, {"start": 500000}, {"seed": 1}, {"overrides": ["solver.eta=1"]}):
        with pytest.raises(ValueError, match=f"differ in {next(iter(change))}"):
            tiny_report.merge_reports([_shard("a", rows), _shard("b", rows, **change)])
    with pytest.raises(ValueError, match="more than one run"):  # the same row measured twice
        tiny_report.merge_reports([_shard("a", rows), _shard("b", rows)])
    with pytest.raises(ValueError, match="a shard is missing"):  # ddnm ran on sr4 only, pigdm on box only
        tiny_report.merge_reports([_shard("a", rows), _shard("b", {"box_inpaint": {"naive": {}, "pigdm no PAG": {}}})])


def test_merge_names_the_solver_of_single_solver_runs():
    """A run of one solver labels its rows "no PAG" / "PAG (table)"; merged with another solver's run, each row (and
    the baseline its paired differences name) gets its solver, read from the row's settings, as ``--solvers a,b``."""

    def rows(solver: str, d: float) -> dict:
        setting = {"settings": f"{solver} on shapes/sr4: ...", "psnr": [20.0, 20.0], "ssim": [0.5, 0.5]}
        pag = setting | {"pixel_vs_baseline": {"baseline": "no PAG", "psnr_difference": d, "psnr_difference_se": 0.0,
                                               "ssim_difference": 0.0, "ssim_difference_se": 0.0}}  # fmt: skip
        return {"sr4": {"naive": {"psnr": [9.0, 9.0]}, "no PAG": setting, "PAG (table)": pag, "label": {}}}

    merged = tiny_report.merge_reports([_shard("a", rows("ddnm", 0.5)), _shard("b", rows("pigdm", -0.25))])
    assert list(merged["results"]["sr4"]) == [
        "naive", "ddnm no PAG", "ddnm PAG (table)", "pigdm no PAG", "pigdm PAG (table)", "label"
    ]  # fmt: skip
    lines = tiny_report.pixel_difference_table({"sr4": {"rows": merged["results"]["sr4"]}}).splitlines()
    assert lines[2:] == [
        "| ddnm PAG (table) − ddnm no PAG | +0.50 ± 0.00 / +0.000 ± 0.000 |",
        "| pigdm PAG (table) − pigdm no PAG | -0.25 ± 0.00 / +0.000 ± 0.000 |",
    ]
    # one solver split by task: nothing to name
    same = tiny_report.merge_reports(
        [_shard("a", rows("ddnm", 0.5)), _shard("b", {"box_inpaint": rows("ddnm", 1.0)["sr4"]})]
    )
    assert list(same["results"]["box_inpaint"]) == ["naive", "no PAG", "PAG (table)", "label"]
