#!/usr/bin/env python
"""Compare registered solvers on the same held-out images: PSNR / SSIM, KID, network passes and seconds per image,
with and without PAG (``--help``; the program is ``runner.measure.compare``)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from runner.measure.compare import main

if __name__ == "__main__":
    main()
