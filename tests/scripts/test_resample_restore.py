"""ReSample through ``scripts/restore.py`` like a user types it, on the shipped tiny latent prior (few steps, every
step resampling so that both optimisation phases run), with and without PAG; ``pag.scale=0`` writes the same images
as no PAG."""

from __future__ import annotations

#: counted-down indices 1..2 resample: a pixel search at 2, a latent one at 1
FEW = ("solver.resample_every=1", "solver.pixel_iters=3", "solver.latent_iters=3")


def test_restore_script_runs_resample_with_and_without_pag(restore_box_inpaint):
    def restore(name, *extra):
        return restore_box_inpaint(name, "resample", *FEW, *extra, prior="tiny_sd", steps=4)

    plain = restore("plain")
    assert "_tiny_sd_resample_4steps_pag0_" in str(plain.csv)
    guided = restore("pag", "pag.enabled=true")
    assert "_tiny_sd_resample_4steps_pag4" in str(guided.csv)  # the shapes row's box_inpaint scale
    assert plain.psnr != guided.psnr  # PAG changed the restorations
    zero = restore("zero", "pag.scale=0")
    assert zero.psnr == plain.psnr
