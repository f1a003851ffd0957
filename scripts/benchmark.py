#!/usr/bin/env python
"""What PAG costs: seconds per solver step, FLOPs and peak memory, side by side in one run (``--help``; the
program is ``runner.measure.benchmark``)."""

from runner.measure.benchmark import main

if __name__ == "__main__":
    main()
