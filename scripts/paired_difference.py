#!/usr/bin/env python
"""Paired PSNR / SSIM differences (mean ± standard error) between two rows of tiny_prior_report.py reports
(``--help``; the program is ``runner.measure.paired``)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from runner.measure.paired import main

if __name__ == "__main__":
    main()
