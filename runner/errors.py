"""The errors a user sees: a setup that cannot run, and an interrupted run."""

from __future__ import annotations

from pathlib import Path


class SetupError(RuntimeError):
    """The experiment cannot start as configured; the message says what to change (which file, which setting)."""


def error_lines(message: object) -> str:
    """``error: <first line>``, and any further lines (where a file comes from, how to fetch it) indented below it:
    one ``error:`` line per error, whatever its hints."""
    first, *hints = str(message).strip().splitlines()
    return "\n".join([f"error: {first}", *(f"  {line.strip()}" for line in hints if line.strip())])


class Interrupted(Exception):
    """Ctrl-C during a run: how many of the set's images have results, and where (rerunning resumes)."""

    def __init__(self, finished: int, total: int, folder: Path):
        super().__init__(f"interrupted: {finished} of {total} images have results in {folder}")
        self.finished, self.total, self.folder = finished, total, folder
