"""The OmegaConf resolvers ``conf/*.yaml`` calls, registered on import of ``runner``: ``auto_solver`` (the solver
for the prior), ``pag_tag`` and ``path_stem`` (``runner.config``), and the folder-name parts ``steps_tag``,
``settings_hash`` and ``task_folder`` (``runner.identity``)."""

from __future__ import annotations

from omegaconf import OmegaConf

from . import identity
from .config import auto_solver, pag_tag, path_stem


def register_resolvers() -> None:
    """Register the resolvers of ``conf/*.yaml`` with OmegaConf (idempotent)."""
    resolvers = {
        "auto_solver": auto_solver,
        "pag_tag": pag_tag,
        "path_stem": path_stem,
        "steps_tag": identity.steps_tag,
        "settings_hash": identity.settings_hash,
        "task_folder": identity.task_folder,
    }
    for name, fn in resolvers.items():
        OmegaConf.register_new_resolver(name, fn, replace=True)


register_resolvers()
