"""The command-line options that ``compare`` and ``tiny_report`` share: which prior, tasks and held-out images,
the KID reference, threads, progress, the output folder and extra Hydra overrides; and their checks, run before
the prior and the reference features load (a bad task or solver name costs nothing)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import option_list
from ..errors import SetupError


def measurement_parser(
    description: str, *, tasks: str, n: int, priors: list[str] | None = None
) -> argparse.ArgumentParser:
    """A parser with the shared options; ``tasks`` / ``n``: each program's defaults (comma-separated tasks, images
    per task); ``priors``: the ``--prior`` choices (None: any prior config). Each program adds its own options
    (``--solvers`` among them: its default differs)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prior", default="tiny_adm", choices=priors)
    parser.add_argument("--tasks", default=tasks)
    parser.add_argument("--n", type=int, default=n, help="images per task")
    parser.add_argument("--split", default="test", help="shapes split of the restored images (train: validation)")
    parser.add_argument("--start", type=int, default=0, help="first image index")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--features", default="shapes", help="KID features against shapes test images (none: no KID)")
    parser.add_argument("--reference", type=int, default=1000, help="reference test images for KID")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("override", nargs="*", help="extra Hydra overrides for every run, e.g. solver.zeta=2")
    return parser


def checked_names(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[list[str], list[str] | None]:
    """(tasks, solvers) as named by ``--tasks`` / ``--solvers`` (None: no ``--solvers`` given), each checked against
    the config groups; an unknown name is a usage error (exit 2, one line)."""
    try:
        tasks = option_list("task", args.tasks)
        solvers = option_list("solver", args.solvers) if args.solvers else None
    except SetupError as exc:
        parser.error(str(exc))
    return tasks, solvers
