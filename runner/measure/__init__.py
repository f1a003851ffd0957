"""The measurement programs behind the numbers in ``docs/``: each is a library module whose ``main(argv)`` the
script of the same job calls (``scripts/`` holds only front-ends).

    benchmark      what PAG costs per solver step: seconds, FLOPs, aten calls, peak memory  (scripts/benchmark.py)
      bench_problem  its models, cases and one problem per model; bench_costs  how a case is measured
    compare        registered solvers side by side on held-out images                  (scripts/compare_solvers.py)
    tiny_report    the shipped tiny priors on held-out images, PAG scales, KID / FID   (scripts/tiny_prior_report.py)
    passes         ``PassCounter``: a prior network's forward calls and backward passes, shared by all three
    cli            the options and name checks ``compare`` and ``tiny_report`` share
    paired         paired differences between rows of tiny_report's reports             (scripts/paired_difference.py)

The held-out images, their restoration and scores come from ``runner.heldout``; tables from ``runner.report``.
"""

from .passes import PassCounter

__all__ = ["PassCounter"]
