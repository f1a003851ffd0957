#!/usr/bin/env python
"""Measure the shipped tiny priors on held-out images: PSNR / SSIM, costs, KID / FID per task, with and without PAG,
and unconditional samples (``--help``; the program is ``runner.measure.tiny_report``)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from runner.measure.tiny_report import main

if __name__ == "__main__":
    main()
