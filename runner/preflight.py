"""What ``scripts/restore.py`` checks before Hydra starts: a command that cannot run, or only shows, writes nothing.

Hydra creates the job's folder (and a sweep's ``multirun.yaml``) before the job's code runs, and reports a config
it cannot compose in several lines with exit status 1. Composing every job of the command here first turns each of
those into one ``error:`` line with exit status 2, naming the valid choices:

- an unknown group option (``task=nonexistent``) or key (``foo=1``, ``task.factor=3``), an unparsable override;
- a results folder that cannot be written (``results_root=<a file>``, a read-only folder);
- a launcher that cannot run here (``hydra/launcher=slurm`` without SLURM);
- a sweep whose every job would stop at start-up (then nothing of it is written);
- ``-m ... dry_run=true``: each job's settings are shown here and Hydra never starts (no ``multirun.yaml``).
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from .config import CONF_DIR, compose, group_options
from .errors import SetupError, error_lines

#: Hydra's command-line flags that take no value (anything else starting with "-" is left to Hydra as it is)
_MULTIRUN_FLAGS = ("-m", "--multirun")
#: the launchers of conf/hydra/launcher/ and what each needs on this machine
_SLURM_LAUNCHERS = ("slurm", "submitit_slurm")


def split_sweep(overrides: Sequence[str], multirun: bool) -> list[list[str]]:
    """One override list per job, ``hydra...`` overrides left out (they do not change a job's settings): a ``-m``
    sweep (``task=a,b seed=0,1``) expanded as Hydra's basic sweeper does."""
    overrides = [o for o in overrides if not _is_hydra(o)]
    if not multirun:
        return [overrides]
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as exc:  # OverrideParseException: a typo in the sweep syntax
        raise SetupError(_parse_error(exc)) from None
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def _is_hydra(override: str) -> bool:
    return override.lstrip("+~").startswith("hydra")


def _parse_error(exc: Exception) -> str:
    override = getattr(exc, "override", None) or "override"
    reason = str(getattr(exc, "message", None) or exc).splitlines()[0]
    return f"{override}: cannot be parsed ({reason}); see https://hydra.cc/docs/advanced/override_grammar/basic"


def compose_job(overrides: Sequence[str]) -> DictConfig:
    """``runner.compose(*overrides)``, with Hydra's composition errors as one-line ``SetupError``s."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    try:
        return compose(*overrides)
    except MissingConfigException as exc:
        raise SetupError(_missing_option(exc, overrides)) from None
    except OverrideParseException as exc:
        raise SetupError(_parse_error(exc)) from None
    except ConfigCompositionException as exc:
        raise SetupError(_unknown_key(exc, overrides)) from None


def _missing_option(exc: Exception, overrides: Sequence[str]) -> str:
    """``task=nonexistent: no such task; valid: ...`` (``_*.yaml`` are shared parts, never a choice)."""
    missing = str(getattr(exc, "missing_cfg_file", None) or "")
    group, _, name = missing.rpartition("/")
    if not group:
        return str(exc).splitlines()[0]
    valid = group_options(group)
    given = next((o for o in overrides if o.lstrip("+~").split("=")[0] == group), f"{group}={name}")
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" (did you mean {group}={close[0]}?)" if close else ""
    return f"{given}: no such {group}{hint}; valid: {', '.join(valid)}"


def _unknown_key(exc: Exception, overrides: Sequence[str]) -> str:
    """``task.factor=3: no such setting (did you mean task.params.factor? it is in task=sr4, sr8)``, from Hydra's
    "Could not override"."""
    found = re.search(r"Could not override '([^']+)'", str(exc))
    if not found:
        return " ".join(str(exc).split())  # another composition error: its text, on one line
    key = found.group(1)
    given = next((o for o in overrides if o.split("=")[0] == key), key)
    hint = _similar(key, overrides)
    return f"{given}: no such setting ({hint}every setting: conf/config.yaml; a new key needs +{given})"


def _similar(key: str, overrides: Sequence[str]) -> str:
    """``did you mean <keys>? `` for keys of this command's config that end like ``key`` or nearly spell it, or
    keys of another option of ``key``'s config group (``task.params.factor`` is in task=sr4, sr8); "" if none."""
    choices = [o for o in overrides if "=" in o and "." not in o.split("=")[0] and not o.startswith(("+", "~"))]
    try:
        known = _flat_keys(OmegaConf.to_container(compose(*choices), resolve=False))
    except Exception:  # the group choices themselves do not compose: no suggestion
        known = []
    leaf = key.rsplit(".", 1)[-1]
    same_leaf = sorted((k for k in known if k.rsplit(".", 1)[-1] == leaf), key=lambda k: k.count("."))
    similar = same_leaf[:1] or difflib.get_close_matches(key, known, 1, 0.8)  # the shallowest: params, not tables
    if similar:
        return f"did you mean {similar[0]}? "
    group, _, rest = key.partition(".")
    if rest and (CONF_DIR / group).is_dir():
        where: dict[str, list[str]] = {}
        for option in group_options(group):
            path = CONF_DIR / group / f"{option}.yaml"
            if not path.is_file():  # a node registered in code (solver=auto): its keys are its solvers' files'
                continue
            data = yaml.safe_load(path.read_text()) or {}
            for k in _flat_keys(data, f"{group}."):
                if k.rsplit(".", 1)[-1] == leaf:
                    where.setdefault(k, []).append(option)
        if where:
            k = min(where, key=lambda k: k.count("."))
            return f"{k} is in {group}={', '.join(where[k])}; "
    return ""


def _flat_keys(node: Any, prefix: str = "") -> list[str]:
    if isinstance(node, dict):
        return [k for key, value in node.items() for k in _flat_keys(value, f"{prefix}{key}.")]
    return [prefix[:-1]]


# -- where a run writes ---------------------------------------------------------------------------------------
def check_writable(setting: str, path: str | os.PathLike) -> None:
    """``SetupError`` unless ``path`` is a folder that can be written, or can be created: its nearest existing
    parent must be a folder this process may write into (``os.access``, which also sees a read-only file system
    and an immutable folder, for root too)."""
    path = Path(os.path.expanduser(str(path)))
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise SetupError(f"{setting}={path}: {existing} is a file, not a folder; give a folder ({setting}=<folder>)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SetupError(
            f"{setting}={path}: cannot write into {existing} (read-only: permissions, an immutable folder or a "
            f"read-only file system); give a folder you can write: {setting}=<folder>"
        )


def check_outputs(cfg: DictConfig) -> None:
    """``results_root`` and ``out_dir`` (where the job's folder goes) can be written."""
    check_writable("results_root", str(cfg.results_root))
    check_writable("out_dir", str(cfg.out_dir))


def check_launcher(overrides: Sequence[str]) -> None:
    """``hydra/launcher=slurm`` needs SLURM (submitit submits with ``sbatch`` and checks for ``srun``)."""
    launchers = [o.split("=", 1)[1] for o in overrides if o.lstrip("+~").startswith("hydra/launcher=")]
    if any(name in _SLURM_LAUNCHERS for name in launchers) and shutil.which("srun") is None:
        raise SetupError(
            "hydra/launcher=slurm: SLURM is not installed here (no srun or sbatch on PATH, which submitit needs); "
            "on this machine use hydra/launcher=local (jobs in parallel processes) or drop hydra/launcher "
            "(jobs one after another)"
        )


# -- the whole command ----------------------------------------------------------------------------------------
def preflight(argv: Sequence[str]) -> tuple[int, list[str]] | None:
    """Check a ``restore.py`` command line before Hydra starts. None: go on with Hydra. Else (exit status, lines
    to print): status 2 with ``error:`` lines (stderr), or 0 with a sweep's dry runs (stdout)."""
    args = list(argv)
    if any(a.startswith("-") and a not in _MULTIRUN_FLAGS for a in args):
        return None  # --help, --cfg, -cn ...: Hydra's own options, left to Hydra
    multirun = any(a in _MULTIRUN_FLAGS for a in args)
    overrides = [a for a in args if a not in _MULTIRUN_FLAGS]
    try:
        jobs = split_sweep(overrides, multirun)
        configs = [compose_job(job) for job in jobs]
        for cfg in configs:
            check_outputs(cfg)
        if multirun:
            check_launcher(overrides)
    except SetupError as exc:
        return 2, [error_lines(exc)]
    except Exception:  # anything else (an interpolation that fails, ...): the run reports it, as without this check
        return None
    if not multirun:
        return None  # its settings are checked by the run itself (restore.py: one error line, nothing written)
    return _sweep_plan(configs)


def _sweep_plan(configs: list[DictConfig]) -> tuple[int, list[str]] | None:
    """A sweep of dry runs: each job's settings, nothing written. A sweep none of whose jobs can start: its
    errors (each once). Otherwise None: Hydra runs it, and a job that cannot start says why and the others go on."""
    from .run import dry_run, plan

    if all(bool(OmegaConf.select(cfg, "dry_run", default=False)) for cfg in configs):
        shown = []
        try:
            for cfg in configs:
                shown.append(dry_run(cfg))
        except SetupError as exc:
            return 2, [error_lines(exc)]
        return 0, shown
    errors: list[str] = []
    for cfg in configs:
        try:
            plan(cfg)
        except SetupError as exc:
            errors.append(error_lines(exc))
            continue
        except Exception:  # not a setup error: the job itself reports it
            return None
        return None
    return 2, [*dict.fromkeys(errors), f"error: none of the sweep's {len(configs)} jobs can start; nothing written"]
