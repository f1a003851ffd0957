"""DDNM and PiGDM through ``scripts/restore.py`` like a user types it, on the shipped tiny ADM (few steps), with and
without PAG; ``pag.scale=0`` writes the same images as no PAG."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("solver", ["ddnm", "pigdm"])
def test_restore_script_runs_with_and_without_pag(restore_box_inpaint, solver):
    plain = restore_box_inpaint("plain", solver)
    assert f"_tiny_adm_{solver}_3steps_pag0_" in str(plain.csv)
    guided = restore_box_inpaint("pag", solver, "pag.enabled=true")
    scale = {"ddnm": "0.25", "pigdm": "1"}[solver]  # the shapes rows' box_inpaint scales (conf/steps/paper.yaml)
    assert f"_tiny_adm_{solver}_3steps_pag{scale}_" in str(guided.csv)
    assert plain.psnr != guided.psnr  # PAG changed the restorations
    zero = restore_box_inpaint("zero", solver, "pag.scale=0")
    assert zero.psnr == plain.psnr
