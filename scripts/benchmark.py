#!/usr/bin/env python
"""What PAG costs: seconds per solver step, FLOPs and peak memory, side by side in one run (``--help``; the
program is ``runner.measure.benchmark``)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from runner.measure.benchmark import main

if __name__ == "__main__":
    main()
