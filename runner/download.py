"""Fetching one weights file (or Hub snapshot) into the standard caches: verified, atomic, offline-aware.

Where files go (the ecosystem's own conventions, so caches copied between machines just work):

- a Hugging Face Hub source: the Hub cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
  ``~/.cache/huggingface/hub``), written by ``huggingface_hub`` itself;
- a URL: ``$TORCH_HOME/hub/checkpoints/<file name>`` (``torch.hub.get_dir()``), where torchvision and pytorch-fid
  look too.

A URL download goes to a temporary file in the destination folder, is checked (length, SHA-256) and only then
renamed into place (``os.replace``), so an interrupted or corrupt download never leaves a file at the destination.
Offline (``HF_HUB_OFFLINE=1``, or ``offline=True``), nothing touches the network: a file not already cached raises
``WeightsMissing``.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.request import Request, urlopen

import torch
from tqdm.auto import tqdm

#: values of HF_HUB_OFFLINE that mean "offline" (huggingface_hub's own parsing)
_TRUE = {"1", "ON", "YES", "TRUE"}
_CHUNK = 1 << 20


class WeightsError(RuntimeError):
    """A download failed or a file does not have the expected SHA-256."""


class WeightsMissing(WeightsError):
    """Offline and the file is not in the cache."""


def env_offline() -> bool:
    """``HF_HUB_OFFLINE`` is set to a true value (read now, not at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in _TRUE


def hub_cache_dir() -> Path:
    """The Hugging Face Hub cache folder, read from the environment now (``HF_HUB_CACHE`` / ``HF_HOME``)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.path.expanduser(os.environ["HF_HUB_CACHE"]))
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(os.path.expanduser(home)) / "hub"


def torch_checkpoints_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` (read now, so TORCH_HOME may change)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


@dataclass(frozen=True)
class Source:
    """Where one weights file, or one Hub snapshot (``patterns``), comes from.

    ``url`` wins over ``repo``. ``sha256`` is the full digest or a published prefix of it (torchvision's file
    names carry one, which ``torch.hub`` checks); None where nobody published one. ``required`` lists the files a
    cached snapshot must hold to count as complete.
    """

    what: str
    filename: str
    url: str | None = None
    repo: str | None = None
    revision: str | None = None
    patterns: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    sha256: str | None = None

    @property
    def is_snapshot(self) -> bool:
        return self.url is None and bool(self.patterns)

    def describe(self) -> str:
        """``https://...`` or ``hf://owner/name/file@revision`` (a snapshot: ``hf://owner/name [folders]``)."""
        if self.url:
            return self.url
        rev = f"@{self.revision}" if self.revision else ""
        if self.is_snapshot:  # the folders (and root files) it takes
            parts = dict.fromkeys(p.split("/")[0] for p in self.patterns)
            return f"hf://{self.repo}{rev} [{', '.join(parts)}]"
        return f"hf://{self.repo}/{self.filename}{rev}"

    def destination(self) -> Path:
        """Where the file lives once fetched (a Hub source: its repo folder in the Hub cache)."""
        if self.url:
            return torch_checkpoints_dir() / self.filename
        return hub_cache_dir() / f"models--{self.repo.replace('/', '--')}"

    def key(self) -> tuple:
        return (self.url, self.repo, self.revision, self.filename, self.patterns)


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def matches(digest: str, expected: str) -> bool:
    """``digest`` equals ``expected``, or starts with it when ``expected`` is a published prefix."""
    return digest.lower().startswith(expected.strip().lower())


def _mismatch(what: str, where: str, expected: str, actual: str) -> WeightsError:
    kind = "SHA-256" if len(expected) == 64 else "SHA-256 prefix"
    return WeightsError(
        f"{what}: checksum mismatch for {where}: expected {kind} {expected}, got {actual}. The file was not kept; "
        f"check the source (a mirror may hold another file) or the configured sha256"
    )


# -- what is already here -------------------------------------------------------------------------------------
def cached(source: Source) -> Path | None:
    """The local copy of ``source`` (a file, or a snapshot folder holding every ``required`` file), or None."""
    if source.url:
        path = source.destination()
        return path if path.is_file() else None
    from huggingface_hub import snapshot_download, try_to_load_from_cache

    if source.is_snapshot:
        try:
            folder = Path(
                snapshot_download(
                    source.repo,
                    revision=source.revision,
                    allow_patterns=list(source.patterns),
                    cache_dir=hub_cache_dir(),
                    local_files_only=True,
                )
            )
        except Exception:  # not cached (LocalEntryNotFoundError and relatives)
            return None
        return folder if all((folder / name).is_file() for name in source.required) else None
    found = try_to_load_from_cache(source.repo, source.filename, cache_dir=hub_cache_dir(), revision=source.revision)
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


# -- fetching -------------------------------------------------------------------------------------------------
def fetch(source: Source, *, offline: bool = False, progress: bool = True, timeout: float = 60.0) -> Path:
    """The local copy of ``source``, downloaded first when it is not cached (never when ``offline``)."""
    path = cached(source)
    if path is not None:
        return path
    if offline or env_offline():
        raise WeightsMissing(f"{source.what}: {source.describe()} is not in the cache ({source.destination()})")
    if source.url:
        return download_url(
            source.url, source.destination(), source.sha256, what=source.what, progress=progress, timeout=timeout
        )
    return _download_hub(source)


def _endpoint() -> str | None:
    """``HF_ENDPOINT`` (a Hub mirror), read now; None: huggingface_hub's default."""
    return os.environ.get("HF_ENDPOINT") or None


def _download_hub(source: Source) -> Path:
    from huggingface_hub import hf_hub_download, snapshot_download

    try:
        if source.is_snapshot:
            folder = Path(
                snapshot_download(
                    source.repo,
                    revision=source.revision,
                    allow_patterns=list(source.patterns),
                    cache_dir=hub_cache_dir(),
                    endpoint=_endpoint(),
                )
            )
            missing = [name for name in source.required if not (folder / name).is_file()]
            if missing:
                raise WeightsError(f"{source.what}: {source.describe()} has no {', '.join(missing)}")
            verify_hub_blobs(folder, source.what)
            return folder
        path = Path(
            hf_hub_download(
                source.repo,
                source.filename,
                revision=source.revision,
                cache_dir=hub_cache_dir(),
                endpoint=_endpoint(),
            )
        )
    except WeightsError:
        raise
    except Exception as exc:  # network, unknown repo or file, gated repo
        raise WeightsError(
            f"{source.what}: could not download {source.describe()}: {type(exc).__name__}: {exc}"
        ) from exc
    if source.sha256:
        digest = sha256_file(path)
        if not matches(digest, source.sha256):
            _discard(path)
            raise _mismatch(source.what, source.describe(), source.sha256, digest)
    verify_hub_blobs(path, source.what)
    return path


_SHA256_NAME = re.compile(r"^[0-9a-f]{64}$")


def _discard(link: Path) -> None:
    """Remove a Hub snapshot's link and the blob it points to."""
    blob = link.resolve()
    link.unlink(missing_ok=True)
    blob.unlink(missing_ok=True)


def verify_hub_blobs(path: Path, what: str) -> None:
    """Check the files of a Hub snapshot (``path``: a file or a folder) against their blobs' names: huggingface_hub
    names an LFS file's blob by the SHA-256 the Hub publishes for it (its LFS object id) but does not re-check the
    bytes. A mismatch removes the file and raises, naming both digests."""
    links = [path] if path.is_file() else [p for p in sorted(path.rglob("*")) if p.is_file()]
    for link in links:
        expected = link.resolve().name
        if not _SHA256_NAME.match(expected):  # a small git-stored file: named by its git hash
            continue
        digest = sha256_file(link)
        if digest != expected:
            _discard(link)
            raise _mismatch(what, str(link), expected, digest)


def download_url(
    url: str,
    destination: str | os.PathLike,
    sha256: str | None = None,
    *,
    what: str = "weights",
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``destination`` atomically: a temporary file beside it, length and SHA-256 checked,
    then renamed. Any failure removes the temporary file and raises ``WeightsError``."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}.partial")
    digest = hashlib.sha256()
    received = 0
    try:
        with urlopen(Request(url, headers={"User-Agent": "pag-inverse"}), timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length else None
            with (
                open(partial, "wb") as f,
                tqdm(
                    total=total,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=destination.name,
                    disable=not progress or None,
                ) as bar,
            ):
                while chunk := response.read(_CHUNK):
                    f.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        if total is not None and received != total:
            raise WeightsError(f"{what}: download of {url} cut short: {received} of {total} bytes")
        if sha256 and not matches(digest.hexdigest(), sha256):
            raise _mismatch(what, url, sha256, digest.hexdigest())
        os.replace(partial, destination)
    except WeightsError:
        raise
    except Exception as exc:  # URLError, timeouts, IncompleteRead, connection reset, disk full
        raise WeightsError(
            f"{what}: download of {url} failed after {received} bytes: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        partial.unlink(missing_ok=True)
    return destination
