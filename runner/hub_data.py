"""Image data sets on the Hugging Face Hub: the rows a run selects, fetched on first use into the Hub cache.

A data set repository holds its rows either as parquet shards (the ``datasets`` library's layout: an image column
of ``{bytes, path}`` structs, or plain bytes) or as image files. The files of a split are found the way ``datasets``
finds them (the split's name, or a synonym, as a word of a folder or file name; no split names at all: every file is
``train``), unless ``files`` gives a glob, and are taken in sorted order; rows are numbered in that order.

Only what the selected rows need is downloaded: ``start`` / ``limit`` (and ``min_size``) choose the rows; a parquet
shard wholly before ``start`` is skipped after reading its footer (a ranged request of a few kB for its row count),
shards after the last selected row are never touched, and image files are fetched one by one. Files go to the Hub
cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``) through ``huggingface_hub`` at the listing's commit; the listing
(commit, file names, row counts) is kept beside them (``<repo cache>/pag-inverse/<revision>.json``), so a run
offline (``HF_HUB_OFFLINE=1`` or ``offline=true``) finds the same rows without the network.

Names and seeds follow the folder convention: the k-th usable selected row has index k (its seeds derive from it)
and is named after its file (the parquet struct's ``path``, or the image file's name) without the extension, or
after its row number (``00042``) where the set stores no file name.
"""

from __future__ import annotations

import fnmatch
import io
import json
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote
from urllib.request import Request, urlopen

from omegaconf import DictConfig, OmegaConf
from PIL import Image

from imaging import Skipped

from .download import WeightsError, env_offline, hub_cache_dir, verify_hub_blobs
from .errors import SetupError
from .paths import resolve_path

#: the split synonyms ``datasets`` recognises in file and folder names (datasets/data_files.py, SPLIT_KEYWORDS)
SPLIT_KEYWORDS = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "dev", "val"),
    "test": ("test", "testing", "eval", "evaluation"),
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
#: bytes read from a parquet shard's end for its footer (row counts); a larger footer takes a second request
FOOTER_BYTES = 1 << 16
_MANIFEST_DIR = "pag-inverse"


# -- the settings ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HubSpec:
    """Which rows of which Hub data set: ``data=hub``'s keys, or the ``hub`` fallback of ``data=ffhq|imagenet``."""

    repo: str
    revision: str | None = None
    split: str = "train"
    image_column: str = "image"
    files: str | None = None
    start: int = 0
    limit: int | None = None
    min_size: int | None = None
    setting: str = "data.repo"  # where the repo id is configured (for messages)
    alternative: str = ""  # the other way to give the images (data=ffhq|imagenet: a folder), for messages

    def url(self) -> str:
        return f"hf://datasets/{self.repo}" + (f"@{self.revision}" if self.revision else "")

    def describe(self) -> str:
        rows = f"rows {self.start}.." + (f"{self.start + self.limit - 1}" if self.limit else "end")
        where = f"files {self.files}" if self.files else f"split {self.split}"
        return f"{self.url()} ({where}, {rows}" + (f", min_size {self.min_size}" if self.min_size else "") + ")"

    def destination(self) -> Path:
        return hub_cache_dir() / f"datasets--{self.repo.replace('/', '--')}"

    def key(self) -> tuple:
        return (self.repo, self.revision, self.split, self.image_column, self.files, self.start, self.limit,
                self.min_size)  # fmt: skip


def hub_spec(data_cfg: DictConfig) -> HubSpec | None:
    """The Hub rows ``data_cfg`` reads: ``kind: hub``, or a folder config's ``hub`` fallback (its subset is the
    folder's: the first ``limit`` usable images); None when it reads none."""
    kind = str(data_cfg.get("kind"))
    node, prefix = (data_cfg, "data") if kind == "hub" else (data_cfg.get("hub"), "data.hub")
    if kind not in ("hub", "folder") or node is None:
        return None
    repo = node.get("repo")
    if repo in (None, "", "???"):
        raise SetupError(f"{prefix}.repo=null: data={data_cfg.name} needs a Hub data set id: {prefix}.repo=owner/name")
    if str(repo).count("/") != 1:
        raise SetupError(f"{prefix}.repo={repo}: a Hub data set id, owner/name")
    limit = data_cfg.get("limit")
    return HubSpec(
        repo=str(repo),
        revision=None if node.get("revision") in (None, "") else str(node.get("revision")),
        split=str(node.get("split") or "train"),
        image_column=str(node.get("image_column") or "image"),
        files=None if node.get("files") in (None, "") else str(node.get("files")),
        start=int(data_cfg.get("start", 0) or 0) if kind == "hub" else 0,
        limit=None if limit is None else int(limit),
        min_size=None if data_cfg.get("min_size") is None else int(data_cfg.get("min_size")),
        setting=f"{prefix}.repo",
        alternative="" if kind == "hub" else _folder_alternative(data_cfg),
    )


def _folder_alternative(data_cfg: DictConfig) -> str:
    env = _path_variable(data_cfg)
    return " or put the images in a folder: data.path=<folder>" + (f" (or export {env}=<folder>)" if env else "")


def _path_variable(data_cfg: DictConfig) -> str | None:
    """The environment variable of ``data.path``'s default (``${oc.env:FFHQ_DIR,...}``: ``FFHQ_DIR``), or None."""
    try:
        raw = str(OmegaConf.to_container(data_cfg, resolve=False).get("path", ""))
    except Exception:
        return None
    match = re.fullmatch(r"\$\{oc\.env:(\w+),[^}]*\}", raw)
    return match.group(1) if match else None


def folder_is_default(data_cfg: DictConfig) -> bool:
    """``data.path`` is the config file's default (``${oc.env:FFHQ_DIR,data/ffhq256}`` with the variable unset):
    only then may a missing folder be replaced by the Hub source. A path or variable the user set never is."""
    env = _path_variable(data_cfg)
    return env is not None and not os.environ.get(env)


# -- the repository's files -----------------------------------------------------------------------------------
@dataclass
class Listing:
    """A revision of a data set repository: its commit, its files, and the row counts of parquet shards seen."""

    commit: str
    files: list[str]
    rows: dict[str, int] = field(default_factory=dict)


def _manifest_path(spec: HubSpec) -> Path:
    return spec.destination() / _MANIFEST_DIR / f"{quote(spec.revision or 'main', safe='')}.json"


def _read_manifest(spec: HubSpec) -> Listing | None:
    try:
        data = json.loads(_manifest_path(spec).read_text())
        return Listing(str(data["commit"]), list(data["files"]), {k: int(v) for k, v in data["rows"].items()})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_manifest(spec: HubSpec, listing: Listing) -> None:
    from imaging import write_json

    path = _manifest_path(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {"commit": listing.commit, "files": listing.files, "rows": listing.rows})


def _endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT") or None


def _list_online(spec: HubSpec, hint: str) -> Listing:
    from huggingface_hub import HfApi

    try:
        info = HfApi(endpoint=_endpoint()).dataset_info(spec.repo, revision=spec.revision)
    except Exception as exc:
        raise _hub_error(spec, exc, hint) from exc
    files = sorted(s.rfilename for s in (info.siblings or []))
    cached = _read_manifest(spec)
    rows = cached.rows if cached is not None and cached.commit == info.sha else {}
    listing = Listing(str(info.sha), files, rows)
    _write_manifest(spec, listing)
    return listing


def _hub_error(spec: HubSpec, exc: Exception, hint: str) -> SetupError:
    """One line: a gated or private set says how to log in, an unknown one what is unknown; a network failure says
    to retry (``hint``: or how to prefetch)."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in (401, 403) or type(exc).__name__ == "GatedRepoError":
        return SetupError(
            f"{spec.setting}={spec.repo}: the Hub refused the download ({status or 'gated'}): the data set is gated "
            f"or private. Accept its terms at https://huggingface.co/datasets/{spec.repo} and log in "
            f"(hf auth login, or export HF_TOKEN=<token>){';' + spec.alternative if spec.alternative else ''}"
        )
    if type(exc).__name__ in ("RepositoryNotFoundError", "RevisionNotFoundError", "EntryNotFoundError"):
        what = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return SetupError(f"{spec.setting}={spec.repo}: {type(exc).__name__}: {what}")
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return SetupError(f"{spec.describe()}: could not reach the Hub ({type(exc).__name__}: {first}); retry{hint}")


def split_files(files: list[str], spec: HubSpec) -> tuple[str, list[str]]:
    """(``"parquet"`` or ``"images"``, the split's data files in sorted order)."""
    data = [f for f in files if f.lower().endswith((".parquet", *IMAGE_SUFFIXES))]
    if spec.files:
        chosen = [f for f in data if fnmatch.fnmatchcase(f, spec.files)]
    else:
        named = {s: [f for f in data if _in_split(f, s)] for s in {*SPLIT_KEYWORDS, spec.split}}
        no_split_names = not any(named.values())
        chosen = data if no_split_names and spec.split == "train" else named[spec.split]
    parquet = [f for f in chosen if f.endswith(".parquet")]
    images = [f for f in chosen if not f.endswith(".parquet")]
    if not chosen:
        found = ", ".join(files[:6]) + (", ..." if len(files) > 6 else "")
        where = f"data.files={spec.files}" if spec.files else f"split {spec.split}"
        raise SetupError(
            f"{spec.url()}: no parquet or image files for {where} (the repository holds: {found or 'nothing'}); "
            "choose them with data.files=<glob>, or read the Hub's parquet conversion: "
            "data.revision=refs/convert/parquet"
        )
    return ("parquet", sorted(parquet)) if parquet else ("images", sorted(images))


def _in_split(path: str, split: str) -> bool:
    words = SPLIT_KEYWORDS.get(split, (split,))
    parts = path.split("/")
    parts[-1] = parts[-1].rsplit(".", 1)[0]
    pattern = re.compile(r"(^|[-._ 0-9])(" + "|".join(map(re.escape, words)) + r")($|[-._ 0-9])")
    return any(pattern.search(part) for part in parts)


# -- fetching one file ----------------------------------------------------------------------------------------
class _Repo:
    """One revision of the repository: cached files, downloads (online), footers, the listing kept up to date."""

    def __init__(self, spec: HubSpec, listing: Listing, offline: bool, hint: str):
        self.spec, self.listing, self.offline, self.hint = spec, listing, offline, hint
        self.downloaded: list[str] = []

    def cached(self, filename: str) -> Path | None:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(
            self.spec.repo, filename, cache_dir=hub_cache_dir(), revision=self.listing.commit, repo_type="dataset"
        )
        return Path(found) if isinstance(found, str) and Path(found).is_file() else None

    def file(self, filename: str) -> Path:
        path = self.cached(filename)
        if path is not None:
            return path
        if self.offline:
            raise _not_cached(self.spec, self.hint)
        from huggingface_hub import hf_hub_download

        try:
            path = Path(
                hf_hub_download(
                    self.spec.repo,
                    filename,
                    repo_type="dataset",
                    revision=self.listing.commit,
                    cache_dir=hub_cache_dir(),
                    endpoint=_endpoint(),
                )
            )
            verify_hub_blobs(path, f"{self.spec.url()}/{filename}")
        except WeightsError as exc:
            raise SetupError(f"{exc}{self.hint}") from exc
        except Exception as exc:
            raise _hub_error(self.spec, exc, self.hint) from exc
        self.downloaded.append(filename)
        return path

    def row_count(self, filename: str) -> int:
        """Rows of a parquet shard: known, from the cached file, or from its footer (a ranged request)."""
        import pyarrow.parquet as pq

        if filename in self.listing.rows:
            return self.listing.rows[filename]
        path = self.cached(filename)
        if path is not None:
            count = pq.ParquetFile(path).metadata.num_rows
        elif self.offline:
            raise _not_cached(self.spec, self.hint)
        else:
            count = self._footer_rows(filename)
        self.listing.rows[filename] = int(count)
        _write_manifest(self.spec, self.listing)
        return int(count)

    def _footer_rows(self, filename: str) -> int:
        import pyarrow as pa
        import pyarrow.parquet as pq
        from huggingface_hub import hf_hub_url
        from huggingface_hub.utils import build_hf_headers

        url = hf_hub_url(
            self.spec.repo, filename, repo_type="dataset", revision=self.listing.commit, endpoint=_endpoint()
        )

        def tail(n: int) -> bytes:
            headers = {**build_hf_headers(), "Range": f"bytes=-{n}", "User-Agent": "pag-inverse"}
            with urlopen(Request(url, headers=headers), timeout=60) as response:
                return response.read()[-n:]

        try:
            end = tail(FOOTER_BYTES)
            size = struct.unpack("<I", end[-8:-4])[0]
            if end[-4:] != b"PAR1":
                raise ValueError(f"{filename} is not a parquet file (no PAR1 footer)")
            if size + 8 > len(end):
                end = tail(size + 8)
            metadata = pq.read_metadata(pa.BufferReader(b"PAR1" + end[-(size + 8) :]))
        except Exception as exc:
            raise _hub_error(self.spec, exc, self.hint) from exc
        return int(metadata.num_rows)


def _is_commit(revision: str | None) -> bool:
    """A pinned commit (40 hex digits): its listing never changes, so a cached one is used without the network."""
    return revision is not None and re.fullmatch(r"[0-9a-f]{40}", revision) is not None


def _not_cached(spec: HubSpec, hint: str) -> SetupError:
    return SetupError(
        f"{spec.describe()} is not in the Hub cache ({spec.destination()}) and this run is offline "
        f"(offline=true or HF_HUB_OFFLINE=1), so nothing was downloaded{hint}"
    )


# -- the selected rows ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HubRow:
    """One selected row: ``row`` its number in the split, ``file`` the shard or image file, ``offset`` its row
    group and position there (parquet; None for an image file)."""

    row: int
    name: str
    file: str
    offset: tuple[int, int] | None


@dataclass
class HubSelection:
    """The usable selected rows in order, the rows skipped, and how to read a row's encoded image."""

    spec: HubSpec
    commit: str
    kind: str
    rows: list[HubRow]
    skipped: list[Skipped]
    paths: dict[str, Path]
    downloaded: list[str]

    def image_bytes(self, row: HubRow) -> bytes:
        path = self.paths[row.file]
        if row.offset is None:
            return path.read_bytes()
        group, position = row.offset
        return _encoded(_row_group(str(path), group, self.spec.image_column)[position])

    def source(self, row: HubRow) -> str:
        where = f"#row={row.row}" if row.offset is not None else ""
        return f"hf://datasets/{self.spec.repo}@{self.commit}/{row.file}{where}"


@lru_cache(maxsize=2)
def _row_group(path: str, group: int, column: str) -> list[Any]:
    """The image column of one row group (kept while its rows are read in order)."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).read_row_group(group, columns=[column]).column(0).to_pylist()


def _encoded(value: Any) -> bytes:
    """The encoded image of a cell: ``datasets``' ``{bytes, path}`` struct, or raw bytes."""
    if isinstance(value, dict):
        value = value.get("bytes")
    if not isinstance(value, (bytes, bytearray)):
        raise ValueError("the cell holds no encoded image bytes")
    return bytes(value)


def _check(data: bytes, min_size: int | None) -> str | None:
    """Why an encoded image is not usable (folder rules: unreadable, or smaller than ``min_size``), or None."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Exception as exc:  # PIL raises several types on bad data
        return f"not a readable image ({type(exc).__name__}: {exc})"
    if min_size is not None and min(width, height) < min_size:
        return f"smaller than min_size={min_size} ({width}x{height})"
    return None


def select(spec: HubSpec, *, offline: bool, prefetch: str = "") -> HubSelection:
    """The rows ``spec`` selects, their files in the Hub cache (downloaded when missing, never when ``offline``).
    ``SetupError`` (one line) when they cannot be had; ``prefetch`` is named when offline."""
    offline = offline or env_offline()
    hint = f"; fetch it where there is internet (then copy HF_HOME here): {prefetch}" if prefetch and offline else ""
    retry = f"; or fetch it ahead of time: {prefetch}" if prefetch and not offline else ""
    listing = _read_manifest(spec) if offline or _is_commit(spec.revision) else None
    if listing is None and offline:
        raise _not_cached(spec, hint)
    if listing is None:
        listing = _list_online(spec, retry)
    repo = _Repo(spec, listing, offline, hint or retry)
    kind, files = split_files(listing.files, spec)
    usable: list[tuple[int, str, str, tuple[int, int] | None]] = []
    skipped: list[Skipped] = []
    paths: dict[str, Path] = {}
    rows = _parquet_rows(repo, files) if kind == "parquet" else _image_rows(repo, files)
    for row, label, filename, offset, data_of in rows:
        if filename not in paths:
            paths[filename] = repo.file(filename)
        try:
            reason = _check(data_of(paths[filename]), spec.min_size)
        except ValueError as exc:  # a null cell, or a column of something else than images
            reason = f"no image in this row ({exc})"
        if reason is None:
            usable.append((row, label, filename, offset))
        else:
            skipped.append(Skipped(label, reason))
        if spec.limit is not None and len(usable) >= spec.limit:
            break  # before the next row is asked for: a shard after the last selected row is never opened
    names = _unique_names([label for _, label, _, _ in usable], [row for row, _, _, _ in usable])
    selected = [HubRow(row, name, f, offset) for (row, _, f, offset), name in zip(usable, names)]
    return HubSelection(spec, listing.commit, kind, selected, skipped, paths, repo.downloaded)


def _parquet_rows(repo: _Repo, files: list[str]) -> Iterator[tuple]:
    """(row, name, shard, (group, position), reader) from ``spec.start`` on; shards before it are only counted."""
    import pyarrow.parquet as pq

    spec, first = repo.spec, 0
    for filename in files:
        if first < spec.start:  # it may lie wholly before start: count its rows before deciding to download it
            count = repo.row_count(filename)
            if first + count <= spec.start:
                first += count
                continue
        shard = pq.ParquetFile(repo.file(filename))
        columns = shard.schema_arrow.names
        if spec.image_column not in columns:
            raise SetupError(
                f"data.image_column={spec.image_column}: {spec.url()}/{filename} has no such column; "
                f"its columns: {', '.join(columns)}"
            )
        path_of = _path_reader(shard, spec.image_column)
        row = first
        for group in range(shard.metadata.num_row_groups):
            count = shard.metadata.row_group(group).num_rows
            if row + count <= spec.start:
                row += count
                continue
            names = path_of(group)
            for position in range(count):
                if row >= spec.start:
                    label = Path(names[position]).stem if names[position] else f"{row:05d}"
                    yield row, label, filename, (group, position), _cell_reader(group, position, spec.image_column)
                row += 1
        first = row


def _path_reader(shard: Any, column: str):
    """``group -> [file name or None per row]`` from the struct's ``path`` field (None where the set has none)."""
    import pyarrow as pa

    kind = shard.schema_arrow.field(column).type
    if not (pa.types.is_struct(kind) and kind.get_field_index("path") >= 0):
        return lambda group: [None] * shard.metadata.row_group(group).num_rows
    return lambda group: [
        (cell or {}).get("path")
        for cell in shard.read_row_group(group, columns=[f"{column}.path"]).column(0).to_pylist()
    ]


def _cell_reader(group: int, position: int, column: str):
    return lambda path: _encoded(_row_group(str(path), group, column)[position])


def _image_rows(repo: _Repo, files: list[str]) -> Iterator[tuple]:
    """(row, name, file, None, reader) for image files from ``spec.start`` on."""
    for row in range(repo.spec.start, len(files)):
        yield row, Path(files[row]).stem, files[row], None, (lambda path: path.read_bytes())


def _unique_names(labels: list[str], rows: list[int]) -> list[str]:
    """Labels as output names; a label used twice is suffixed with its row number (``a_12``) to stay unique."""
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    return [label if counts[label] == 1 else f"{label}_{row:05d}" for label, row in zip(labels, rows)]


def cached_selection(spec: HubSpec) -> HubSelection | None:
    """The selection from the cache alone (no network), or None when something it needs is not cached."""
    try:
        return select(spec, offline=True)
    except SetupError:
        return None


# -- ahead of time (scripts/fetch_weights.py) -----------------------------------------------------------------
@dataclass(frozen=True)
class DataNeed:
    """The Hub rows a run reads: ``local`` (a ``data=ffhq|imagenet`` folder at its default path) wins when it
    exists; otherwise ``spec``'s rows, from the Hub cache or fetched into it."""

    setting: str
    what: str
    local: Path | None
    spec: HubSpec

    def status(self) -> tuple[str, Path | None]:
        """``("local", folder)``, ``("cached", repo cache)`` or ``("missing", where it would go)``."""
        if self.local is not None and self.local.is_dir():
            return "local", self.local
        return ("cached" if cached_selection(self.spec) is not None else "missing"), self.spec.destination()

    def fetch(self) -> HubSelection:
        """Fetch the rows' files (``SetupError`` when they cannot be had)."""
        return select(self.spec, offline=False)


def data_need(cfg: DictConfig) -> DataNeed | None:
    """What of a run's data can be fetched: a ``data=hub`` set, or the Hub fallback of ``data=ffhq|imagenet`` when
    no path or variable is set (a folder the user names is theirs to fill); None otherwise."""
    data_cfg = cfg.data
    kind = str(data_cfg.get("kind"))
    if kind == "folder" and (data_cfg.get("hub") is None or not folder_is_default(data_cfg)):
        return None
    spec = hub_spec(data_cfg)
    if spec is None:
        return None
    local = resolve_path(data_cfg.path) if kind == "folder" else None
    setting = "data.path" if kind == "folder" else "data.repo"
    return DataNeed(setting, f"data={data_cfg.name} images", local, spec)
