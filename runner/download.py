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

Every download says what it fetches first (``downloading <what> (<N> MB) from <where>``), gives up after
``DOWNLOAD_TIMEOUT_S`` without an answer (a proxy that accepts and never answers would otherwise hold a run for
minutes: huggingface_hub retries a timed-out request five times, 60 s each), and is not tried again in the same
process once it failed (a sweep's jobs, the metrics of every job).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.error import HTTPError
from urllib.parse import quote
from urllib.request import Request, build_opener

import torch
from tqdm.auto import tqdm

from . import checksums
from .checksums import sha256_file

#: values of HF_HUB_OFFLINE that mean "offline" (huggingface_hub's own parsing)
_TRUE = {"1", "ON", "YES", "TRUE"}
_CHUNK = 1 << 20
#: seconds without an answer (connecting, or between two pieces of a transfer) after which a download gives up
DOWNLOAD_TIMEOUT_S = 15.0
#: downloads that failed in this process, by ``Source.key()``: the error, raised again instead of a second try
#: (one run, or one process running a sweep's jobs, meets an unreachable server once, not once per job)
_FAILED: dict[tuple, WeightsError] = {}


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
    size_mb: float | None = None  # as its publisher states it (torchvision's weights' ``_file_size``); None: unknown
    #: why ``url`` is a page a person follows rather than a file to download (None: downloaded automatically): such
    #: a file is never fetched; a missing one is an error naming the link and ``destination()``, where it is found
    manual: str | None = None

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
        """Where the file lives once fetched (a Hub source: its repo folder in the Hub cache).

        A URL's file goes to ``$TORCH_HOME/hub/checkpoints/<file name>`` (where torchvision and pytorch-fid look),
        unless a file of that name came from another URL (``checksums.origin``): then to
        ``checkpoints/url-<12 hex of the URL's SHA-256>/<file name>``, so two URLs never share a cache entry."""
        if self.url:
            plain = torch_checkpoints_dir() / self.filename
            came_from = checksums.origin(plain)
            if came_from is None or came_from == self.url:
                return plain
            return torch_checkpoints_dir() / f"url-{hashlib.sha256(self.url.encode()).hexdigest()[:12]}" / self.filename
        return hub_cache_dir() / f"models--{self.repo.replace('/', '--')}"

    def key(self) -> tuple:
        return (self.url, self.repo, self.revision, self.filename, self.patterns)


def matches(digest: str, expected: str) -> bool:
    """``digest`` equals ``expected``, or starts with it when ``expected`` is a published prefix."""
    return digest.lower().startswith(expected.strip().lower())


def pinned_mismatch(what: str, path: Path, expected: str, actual: str, url: str | None) -> WeightsError:
    """A file already here (cached or local) whose bytes are not the pinned ones: refused, and left as it is."""
    kind = "SHA-256" if len(expected) == 64 else "SHA-256 prefix"
    fix = f"remove it to fetch {url} again, " if url else "replace it, "
    return WeightsError(
        f"{what}: {path} has SHA-256 {actual}, not the pinned {kind} {expected}; it was not used and is left as it "
        f"is: {fix}or correct the pinned sha256"
    )


def verify_pinned(source: Source | None, path: Path) -> Path:
    """``path`` when ``source`` pins no SHA-256 or the file has it (hashed once per file version, ``checksums``);
    else ``WeightsError`` naming both digests (nothing is removed: the file may be someone else's)."""
    if source is None or not source.sha256 or not path.is_file():
        return path
    digest = checksums.file_sha256(path)
    if not matches(digest, source.sha256):
        raise pinned_mismatch(source.what, path, source.sha256, digest, source.url)
    return path


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
def fetch(source: Source, *, offline: bool = False, progress: bool = True, timeout: float | None = None) -> Path:
    """The local copy of ``source``, downloaded first when it is not cached (never when ``offline``; never twice
    in one process after a failure). A pinned SHA-256 is checked against the cached copy too (``verify_pinned``).
    ``timeout``: seconds without an answer before giving up (None: ``DOWNLOAD_TIMEOUT_S``)."""
    timeout = DOWNLOAD_TIMEOUT_S if timeout is None else timeout
    path = cached(source)
    if path is not None:
        return verify_pinned(source, path)
    if source.manual:
        raise WeightsMissing(manual_message(source))
    if offline or env_offline():
        raise WeightsMissing(f"{source.what}: {source.describe()} is not in the cache ({source.destination()})")
    if source.key() in _FAILED:
        raise WeightsError(f"{_FAILED[source.key()]} (failed earlier in this process: not tried again)")
    announce(source, timeout)
    try:
        if source.url:
            return download_url(
                source.url, source.destination(), source.sha256, what=source.what, progress=progress, timeout=timeout
            )
        return _download_hub(source, timeout)
    except WeightsError as exc:
        _FAILED[source.key()] = exc
        raise


def manual_message(source: Source) -> str:
    """One line for a missing file that is not downloaded automatically (``Source.manual``): the link and the path
    where it is found with no setting."""
    size = f" (~{source.size_mb:.0f} MB)" if source.size_mb else ""
    return (
        f"{source.what}{size} is not downloaded automatically ({source.manual}): download it by hand from "
        f"{source.describe()} and put it at {source.destination()}, where it is found with no setting"
    )


def forget_failures() -> None:
    """Forget this process's failed downloads (what a new command starts with; for tests that run several
    commands in one process)."""
    _FAILED.clear()


def announce(source: Source, timeout: float) -> None:
    """``downloading <what> (<N> MB) from <where> to <folder>``, on stderr before any byte is asked for."""
    size = f"{source.size_mb:.0f} MB" if source.size_mb else "size not published"
    print(
        f"downloading {source.what} ({size}) from {source.describe()} to {source.destination()} "
        f"(gives up after {timeout:g} s without an answer)",
        file=sys.stderr,
        flush=True,
    )


def _open(request: Request, timeout: float):
    """``urlopen`` with the proxies of the environment as it is now (``urlopen`` keeps the first ones it saw)."""
    return build_opener().open(request, timeout=timeout)


def _endpoint() -> str | None:
    """``HF_ENDPOINT`` (a Hub mirror), read now; None: huggingface_hub's default."""
    return os.environ.get("HF_ENDPOINT") or None


def _probe_hub(source: Source, timeout: float) -> None:
    """One request to the Hub (or ``HF_ENDPOINT``) with ``timeout``: ``WeightsError`` at once when it does not
    answer, instead of huggingface_hub's five retries of 60 s each. Any HTTP answer (even 401 / 404) means the
    server is there: huggingface_hub then says what is wrong."""
    from huggingface_hub import constants

    endpoint = (_endpoint() or constants.ENDPOINT).rstrip("/")
    revision = quote(source.revision or "main", safe="")
    if source.is_snapshot:
        url = f"{endpoint}/api/models/{source.repo}/revision/{revision}"
    else:
        url = f"{endpoint}/{source.repo}/resolve/{revision}/{quote(source.filename)}"
    try:
        with _open(Request(url, method="HEAD", headers={"User-Agent": "pag-inverse"}), timeout):
            pass
    except HTTPError:
        return
    except Exception as exc:  # URLError, timeouts, connection refused or reset
        raise WeightsError(
            f"{source.what}: could not reach {endpoint} for {source.describe()} within {timeout:g} s: "
            f"{type(exc).__name__}: {exc}"
        ) from None


@contextlib.contextmanager
def _hub_logs_once() -> Iterator[None]:
    """huggingface_hub's logger has its own console handler and also propagates to the root logger (Hydra's):
    every warning would be printed twice. While it runs here, only the root logger prints."""
    hub = logging.getLogger("huggingface_hub")
    own = [h for h in hub.handlers if isinstance(h, logging.StreamHandler)]
    for handler in own if logging.getLogger().handlers else []:
        hub.removeHandler(handler)
    try:
        yield
    finally:
        for handler in own:
            if handler not in hub.handlers:
                hub.addHandler(handler)


def _download_hub(source: Source, timeout: float) -> Path:
    from huggingface_hub import hf_hub_download, snapshot_download

    _probe_hub(source, timeout)
    try:
        with _hub_logs_once():
            return _hub_files(source, hf_hub_download, snapshot_download, timeout)
    except WeightsError:
        raise
    except Exception as exc:  # network, unknown repo or file, gated repo
        raise WeightsError(
            f"{source.what}: could not download {source.describe()}: {type(exc).__name__}: {exc}"
        ) from exc


def _hub_files(source: Source, hf_hub_download, snapshot_download, timeout: float) -> Path:
    """The snapshot folder or file of ``source``, downloaded by huggingface_hub and checked (blobs, pinned
    SHA-256); a file that does not verify is removed."""
    if source.is_snapshot:
        folder = Path(
            snapshot_download(
                source.repo,
                revision=source.revision,
                allow_patterns=list(source.patterns),
                cache_dir=hub_cache_dir(),
                endpoint=_endpoint(),
                etag_timeout=timeout,
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
            etag_timeout=timeout,
        )
    )
    if source.sha256:
        digest = checksums.file_sha256(path)
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
    timeout: float | None = None,
) -> Path:
    """Download ``url`` to ``destination`` atomically: a temporary file beside it, length and SHA-256 checked,
    then renamed. Any failure removes the temporary file and raises ``WeightsError``; ``timeout``: seconds without
    an answer (to connect, or between two reads) before giving up (None: ``DOWNLOAD_TIMEOUT_S``)."""
    timeout = DOWNLOAD_TIMEOUT_S if timeout is None else timeout
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}.partial")
    digest = hashlib.sha256()
    received = 0
    try:
        with _open(Request(url, headers={"User-Agent": "pag-inverse"}), timeout) as response:
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
        checksums.remember(destination, sha256=digest.hexdigest(), url=url)  # hashed as it streamed: not again
    except WeightsError:
        raise
    except Exception as exc:  # URLError, timeouts, IncompleteRead, connection reset, disk full
        raise WeightsError(
            f"{what}: download of {url} failed after {received} bytes: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        partial.unlink(missing_ok=True)
    return destination
