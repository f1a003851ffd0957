"""SHA-256 of weights files, hashed once per version of a file, and the URL each cached file came from.

A pinned ``sha256`` is checked against whatever file a run would use, cached or local, at every start; hashing a
multi-GB checkpoint each time would cost seconds to minutes, so the digest is remembered with the file's size and
modification time (``st_mtime_ns``) and recomputed only when either changes. The memo also records the URL a
download came from: the torch cache is keyed by file name, and two URLs with the same file name must not share
one entry (``runner.download.Source.destination``).

The memo is ``$TORCH_HOME/hub/pag-inverse-files.json`` (beside ``checkpoints/``), keyed by absolute path. It is a
cache: deleting it costs one hash per file; a cache folder that cannot be written only means hashing again.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

import torch

_CHUNK = 1 << 20
MEMO_NAME = "pag-inverse-files.json"


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 of the file's bytes (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def memo_path() -> Path:
    """``$TORCH_HOME/hub/pag-inverse-files.json`` (read now, so TORCH_HOME may change)."""
    return Path(torch.hub.get_dir()) / MEMO_NAME


def _read() -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(memo_path().read_text())
    except (OSError, ValueError):  # absent, unreadable or half-written by a killed process: start afresh
        return {}
    return data if isinstance(data, dict) else {}


def _write(memo: dict[str, dict[str, Any]]) -> None:
    """Atomically (a temporary file renamed over the memo); a folder that cannot be written is not an error."""
    path = memo_path()
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps(memo, indent=1, sort_keys=True))
        os.replace(partial, path)
    except OSError:
        partial.unlink(missing_ok=True)


def _key(path: Path) -> str:
    return str(path.resolve())  # a Hub snapshot's link and its blob are one file


def _version(path: Path) -> dict[str, int]:
    stat = path.resolve().stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def file_sha256(path: str | os.PathLike) -> str:
    """The file's SHA-256, from the memo when its size and mtime are those it was hashed at, else hashed now."""
    path = Path(path)
    memo, version = _read(), _version(path)
    entry = memo.get(_key(path), {})
    if entry.get("sha256") and all(entry.get(k) == v for k, v in version.items()):
        return str(entry["sha256"])
    digest = sha256_file(path)
    memo[_key(path)] = {**{k: v for k, v in entry.items() if k == "url"}, **version, "sha256": digest}
    _write(memo)
    return digest


def remember(path: str | os.PathLike, *, sha256: str, url: str | None = None) -> None:
    """Record a file just written (a download): its digest, computed while it streamed, and where it came from."""
    path = Path(path)
    memo = _read()
    memo[_key(path)] = {**_version(path), "sha256": sha256, **({"url": url} if url else {})}
    _write(memo)


def origin(path: str | os.PathLike) -> str | None:
    """The URL the file at ``path`` was downloaded from, or None (absent, or placed there by hand or by another
    program, or changed since: then nobody can tell)."""
    path = Path(path)
    if not path.is_file():
        return None
    entry = _read().get(_key(path), {})
    return entry.get("url") if all(entry.get(k) == v for k, v in _version(path).items()) else None
