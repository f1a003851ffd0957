"""KID of each column of a tiny_prior_report picture (8 validation images, 8-bit) against the report's reference set.

    PYTHONPATH=. python docs/results/tune/every_solver_pag/kid_from_pictures.py /tmp/val_ddnm/box_inpaint.png

The sweeps here were stopped before they wrote report.json (which holds each row's KID): their pictures hold the same
8-bit restorations, one image per row, one table row per column (ground truth, naive, no PAG, PAG s = 0.25, 0.5, 1).
"""

import sys

import numpy as np
import torch
from PIL import Image

from evaluation import load_extractor
from runner.heldout import ShapesReference

TILE, GAP = 32, 1  # tiny_prior_report's image_grid(..., gap=1) of 32 px images

if __name__ == "__main__":
    torch.set_num_threads(1)
    reference = ShapesReference(load_extractor("shapes"), 1000, 0)  # tiny_prior_report's defaults
    for path in sys.argv[1:]:
        grid = torch.from_numpy(np.asarray(Image.open(path).convert("RGB")).copy()).permute(2, 0, 1).float()
        grid = grid / 127.5 - 1
        step = TILE + GAP
        rows, columns = (grid.shape[1] + GAP) // step, (grid.shape[2] + GAP) // step
        kids = []
        for c in range(columns):
            images = torch.stack([grid[:, r * step : r * step + TILE, c * step : c * step + TILE] for r in range(rows)])
            kids.append(f"{reference(images)['kid']:.3f}")
        print(path, " | ".join(kids), flush=True)
