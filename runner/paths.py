"""Where things are: the repository, its ``conf/`` folder, a user's path, and the environment variable a config
value reads its default from."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

REPO_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = REPO_ROOT / "conf"

#: ``${oc.env:NAME`` or ``${oc.env:NAME,default}`` in a config value
_ENV = re.compile(r"\$\{oc\.env:([A-Za-z_][A-Za-z0-9_]*)")


def resolve_path(path: str | os.PathLike) -> Path:
    """A user path: absolute as is; relative to the current folder when it exists there, else to the repository
    when it exists there, else (for messages) relative to the current folder."""
    path = Path(os.path.expanduser(str(path)))
    if path.is_absolute():
        return path
    for base in (Path.cwd(), REPO_ROOT):
        if (base / path).exists():
            return (base / path).resolve()
    return (Path.cwd() / path).resolve()


def raw_value(node: DictConfig, key: str) -> str:
    """The unresolved text of ``node.key`` ("" when absent or unreadable)."""
    try:
        return str(OmegaConf.to_container(node, resolve=False).get(key, ""))
    except Exception:
        return ""


def env_variable(value: Any) -> str | None:
    """The environment variable an unresolved config value reads (``${oc.env:FFHQ_DIR,data/ffhq256}``: FFHQ_DIR),
    or None: the conf file is the one place that names it; messages read it from there."""
    found = _ENV.search(str(value)) if value is not None else None
    return found.group(1) if found else None
