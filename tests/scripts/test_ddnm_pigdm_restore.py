"""DDNM and PiGDM through ``scripts/restore.py`` like a user types it, on the shipped tiny ADM (few steps), with and
without PAG; ``pag.scale=0`` writes the same images as no PAG."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("solver", ["ddnm", "pigdm"])
def test_restore_script_runs_with_and_without_pag(restore_box_inpaint, solver):
    plain = restore_box_inpaint("plain", solver)
    assert f"_tiny_adm_{solver}_3steps_pag0_" in str(plain.csv)
    guided = restore_box_inpaint("pag", solver, "pag.enabled=true")
    assert f"_tiny_adm_{solver}_3steps_pag2" in str(guided.csv)  # the shapes row's box_inpaint scale
    assert plain.psnr != guided.psnr  # PAG changed the restorations
    zero = restore_box_inpaint("zero", solver, "pag.scale=0")
    assert zero.psnr == plain.psnr
