"""RED-diff through ``scripts/restore.py`` like a user types it, on the shipped tiny ADM (few steps): without PAG,
with PAG scale 0 (the same restorations bit for bit) and with PAG, and a batch of two equal to two batches of one."""

from __future__ import annotations

import numpy as np


def test_restore_script_runs_reddiff_with_and_without_pag(restore_box_inpaint):
    plain = restore_box_inpaint("plain", "reddiff")
    assert "_tiny_adm_reddiff_3steps_" in str(plain.csv)
    zero = restore_box_inpaint("zero", "reddiff", "pag.scale=0")
    guided = restore_box_inpaint("pag", "reddiff", "pag.enabled=true")
    assert "_pag" in str(guided.csv)
    assert zero.psnr == plain.psnr  # PAG scale 0 is no PAG
    assert guided.psnr != plain.psnr  # the table's PAG scale changes the restorations
    assert plain.pngs.keys() == zero.pngs.keys()
    assert all(np.array_equal(plain.pngs[k], zero.pngs[k]) for k in plain.pngs)
    one_by_one = restore_box_inpaint("single", "reddiff", "batch_size=1")
    assert one_by_one.psnr == plain.psnr  # a batch of two equals two batches of one
