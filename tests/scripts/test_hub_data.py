"""Image data sets from the Hugging Face Hub: only the files holding the selected rows are fetched, into the Hub
cache; reruns and offline runs read that cache; names and seeds are those of the same images in a folder.

Nothing here reaches the internet: a loopback HTTP server (127.0.0.1, port 0) answers as the Hub does (the dataset
info API, ``resolve`` downloads with their commit and LFS SHA-256 headers, ranged reads, 401 for a gated set), and
huggingface_hub is pointed at it with HF_ENDPOINT.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

import runner
from imaging import load_image
from runner import SetupError
from runner.hub_data import HubSpec, split_files

REPO = Path(__file__).resolve().parents[2]
COMMIT = "89abcdef0123456789abcdef0123456789abcdef"
SET = "someone/faces"
#: rows per parquet shard of the served set: 10 rows in three shards, row groups of 2 rows
SHARD_ROWS = (4, 4, 2)


class Hub:
    """A Hub stand-in for data set repositories: ``repos[repo] = {file: bytes}``; ``gated`` repos answer 401 to
    downloads (their info stays public, as on the Hub). ``downloads``: full GETs of files; ``ranges``: ranged GETs;
    ``api``: info requests."""

    def __init__(self):
        self.repos: dict[str, dict[str, bytes]] = {}
        self.gated: set[str] = set()
        self.announced: dict[str, str] = {}  # file -> the SHA-256 announced instead of the true one
        self.downloads: list[str] = []
        self.ranges: list[str] = []
        self.api: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def _file(self) -> tuple[str, str, bytes] | None:
                path = self.path.split("?")[0]
                if not path.startswith("/datasets/") or "/resolve/" not in path:
                    self.send_error(404)
                    return None
                repo, rest = path[len("/datasets/") :].split("/resolve/", 1)
                name = rest.split("/", 1)[1]
                if repo in hub.gated:
                    self.send_response(401)
                    self.send_header("X-Error-Code", "GatedRepo")
                    self.send_header("X-Error-Message", "Access to this dataset is restricted.")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                data = hub.repos.get(repo, {}).get(name)
                if data is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                return repo, name, data

            def _headers(self, name: str, data: bytes, status: int = 200, length: int | None = None) -> None:
                digest = hub.announced.get(name, hashlib.sha256(data).hexdigest())
                self.send_response(status)
                self.send_header("Content-Length", str(len(data) if length is None else length))
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{digest}"')
                self.send_header("X-Linked-Etag", f'"{digest}"')
                self.end_headers()

            def do_HEAD(self):
                found = self._file()
                if found is not None:
                    self._headers(found[1], found[2])

            def do_GET(self):
                if self.path.startswith("/api/datasets/"):
                    hub.api.append(self.path)
                    repo = self.path.split("?")[0][len("/api/datasets/") :].split("/revision/")[0]
                    body = json.dumps(
                        {"id": repo, "sha": COMMIT, "siblings": [{"rfilename": f} for f in hub.repos.get(repo, {})]}
                    ).encode()
                    self.send_response(200 if repo in hub.repos else 404)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                found = self._file()
                if found is None:
                    return
                _, name, data = found
                wanted = self.headers.get("Range")
                if wanted and wanted.startswith("bytes=-"):
                    hub.ranges.append(name)
                    part = data[-int(wanted[len("bytes=-") :]) :]
                    self._headers(name, data, 206, len(part))
                    self.wfile.write(part)
                    return
                hub.downloads.append(name)
                self._headers(name, data)
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"


def _pictures(count: int, seed: int = 0) -> list[bytes]:
    """``count`` distinct 40 x 40 RGB PNGs (random pixels: any mix-up of rows shows)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def _parquet(rows: list[dict]) -> bytes:
    """Rows as ``datasets`` writes an Image column: ``{bytes, path}`` structs, row groups of 2."""
    buffer = io.BytesIO()
    pq.write_table(pa.table({"image": pa.array(rows), "label": list(range(len(rows)))}), buffer, row_group_size=2)
    return buffer.getvalue()


@pytest.fixture
def pictures() -> list[bytes]:
    return _pictures(sum(SHARD_ROWS))


@pytest.fixture
def hub(tmp_path, monkeypatch, pictures) -> Hub:
    """The stand-in serving ``SET`` (FFHQ-style names 00000.png.. in three parquet shards), an empty HF_HOME, online."""
    server = Hub()
    shards, first = {}, 0
    for i, count in enumerate(SHARD_ROWS):
        rows = [{"bytes": pictures[r], "path": f"{r:05d}.png"} for r in range(first, first + count)]
        shards[f"data/train-{i:05d}-of-{len(SHARD_ROWS):05d}.parquet"] = _parquet(rows)
        first += count
    server.repos[SET] = {".gitattributes": b"*.parquet filter=lfs\n", "README.md": b"# faces\n", **shards}
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", server.url())
    monkeypatch.chdir(tmp_path)  # no ./data/ffhq256 here
    set_offline(monkeypatch, False)
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def set_offline(monkeypatch, offline: bool) -> None:
    """HF_HUB_OFFLINE for this process (huggingface_hub also keeps the value it read at import)."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", offline)


def _hub_data(*overrides: str, **kwargs) -> runner.DataSet:
    cfg = runner.compose("data=hub", f"data.repo={SET}", *overrides)
    return runner.build_dataset(cfg.data, 40, **kwargs)


def _names(data: runner.DataSet) -> list[tuple[int, str]]:
    return [(s.index, s.name) for s in data.samples]


def _truth(picture: bytes) -> torch.Tensor:
    """The served image decoded by the folder reader from its own bytes (not through the Hub code)."""
    return load_image(io.BytesIO(picture), 40)


# -- which files are fetched --------------------------------------------------------------------------------
def test_only_the_shard_holding_the_rows_is_fetched_and_reruns_read_the_cache(hub, pictures):
    data = _hub_data("data.limit=3")
    assert _names(data) == [(0, "00000"), (1, "00001"), (2, "00002")]
    assert hub.downloads == ["data/train-00000-of-00003.parquet"] and hub.ranges == []
    for sample in data.samples:
        assert torch.equal(data.load(sample), _truth(pictures[int(sample.name)]))

    # rows 5-6: shard 0 (cached) is counted, shard 1 counted from its footer and fetched, shard 2 never touched
    data = _hub_data("data.start=5", "data.limit=2")
    assert _names(data) == [(0, "00005"), (1, "00006")]
    assert hub.ranges == ["data/train-00001-of-00003.parquet"]
    assert hub.downloads == [f"data/train-0000{i}-of-00003.parquet" for i in (0, 1)]
    assert torch.equal(data.load(data.samples[1]), _truth(pictures[6]))

    # rows 3-4 straddle shards 0 and 1, both cached: a rerun downloads nothing
    data = _hub_data("data.start=3", "data.limit=2")
    assert _names(data) == [(0, "00003"), (1, "00004")] and len(hub.downloads) == 2
    blobs = Path(runner.download.hub_cache_dir(), "datasets--someone--faces", "blobs")
    assert len(list(blobs.iterdir())) == 2


def test_a_shard_before_start_is_counted_from_its_footer_not_downloaded(hub, pictures):
    data = _hub_data("data.start=9", "data.limit=1")
    assert _names(data) == [(0, "00009")]
    assert hub.ranges == [f"data/train-0000{i}-of-00003.parquet" for i in (0, 1, 2)]  # footers: a few kB each
    assert hub.downloads == ["data/train-00002-of-00003.parquet"]
    assert torch.equal(data.load(data.samples[0]), _truth(pictures[9]))


def test_offline_reads_the_cache_and_a_cold_cache_says_how_to_prefetch(hub, monkeypatch, tmp_path):
    online = _hub_data("data.start=5", "data.limit=2")
    requests = (len(hub.api), len(hub.downloads), len(hub.ranges))
    set_offline(monkeypatch, True)
    offline = _hub_data("data.start=5", "data.limit=2")
    assert _names(offline) == _names(online)
    assert [s.source for s in offline.samples] == [s.source for s in online.samples]
    assert (len(hub.api), len(hub.downloads), len(hub.ranges)) == requests

    with pytest.raises(SetupError) as info:  # rows 8-9 live in shard 2, never fetched
        _hub_data("data.start=8", "data.limit=2", offline=True, prefetch="python scripts/fetch_weights.py data=hub")
    message = str(info.value)
    assert "\n" not in message and "offline" in message and "python scripts/fetch_weights.py data=hub" in message

    monkeypatch.setenv("HF_HOME", str(tmp_path / "cold"))
    with pytest.raises(SetupError, match="is not in the Hub cache"):
        _hub_data("data.limit=1")
    assert (len(hub.api), len(hub.downloads), len(hub.ranges)) == requests


def test_a_run_offline_with_a_cold_cache_stops_with_one_error_line(hub, tmp_path, script):
    results = tmp_path / "results"
    result = script(
        "restore.py", "data=hub", f"data.repo={SET}", "data.limit=2", f"results_root={results}",
        env={"HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert f"python scripts/fetch_weights.py data=hub data.repo={SET} data.limit=2" in errors[0]
    assert not results.exists() or not any(results.rglob("*"))
    assert hub.api == [] and hub.downloads == []


# -- the same images as in a folder -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("start", "limit", "shard", "num_shards"), [(0, 10, 0, 1), (0, 3, 0, 1), (3, 5, 0, 1), (3, 5, 1, 2), (6, 4, 2, 3)]
)
def test_subsets_have_the_names_indices_and_pixels_of_the_same_images_in_a_folder(
    hub, pictures, tmp_path, start, limit, shard, num_shards
):
    folder = tmp_path / f"folder_{start}_{limit}"
    folder.mkdir()
    for row in range(start, start + limit):
        (folder / f"{row:05d}.png").write_bytes(pictures[row])
    sharding = [f"data.shard={shard}", f"data.num_shards={num_shards}"]
    from_hub = _hub_data(f"data.start={start}", f"data.limit={limit}", *sharding)
    from_folder = runner.build_dataset(runner.compose("data=folder", f"data.path={folder}", *sharding).data, 40)
    assert _names(from_hub) == _names(from_folder) and from_hub.names == from_folder.names
    assert [s.index for s in from_hub.samples] == list(range(shard, limit, num_shards))
    for a, b in zip(from_hub.samples, from_folder.samples):
        assert torch.equal(from_hub.load(a), from_folder.load(b))
    # the per-image seeds derive from (seed, index, stream): the same indices give the same streams
    hub_seeds = [runner.stream_seed(0, s.index, 2) for s in from_hub.samples]
    assert hub_seeds == [runner.stream_seed(0, s.index, 2) for s in from_folder.samples]


def test_restore_from_the_hub_end_to_end_matches_the_folder_run(hub, pictures, tmp_path, tiny_checkpoint, script):
    """restore.py data=hub on the tiny prior: the loopback set's rows 4-5 restored, written under their FFHQ-style
    names, byte for byte what the same two images give from a folder (same seeds: same measurements and noise)."""
    common = [
        f"prior.checkpoint={tiny_checkpoint}", "solver.num_steps=3", "metrics.enabled=false", "show_progress=false",
        "progress_every=0", "batch_size=1",
    ]  # fmt: skip
    result = script(
        "restore.py", "data=hub", f"data.repo={SET}", "data.start=4", "data.limit=2",
        f"results_root={tmp_path / 'hub'}", *common,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert hub.downloads == ["data/train-00001-of-00003.parquet"]
    folder = tmp_path / "images"
    folder.mkdir()
    for row in (4, 5):
        (folder / f"{row:05d}.png").write_bytes(pictures[row])
    runner.run(runner.compose("data=folder", f"data.path={folder}", f"results_root={tmp_path / 'folder'}", *common))
    for kind in ("label", "input", "recon"):
        from_hub = sorted((tmp_path / "hub").rglob(f"{kind}/*.png"))
        from_folder = sorted((tmp_path / "folder").rglob(f"{kind}/*.png"))
        assert [p.name for p in from_hub] == ["00004.png", "00005.png"] == [p.name for p in from_folder]
        assert [p.read_bytes() for p in from_hub] == [p.read_bytes() for p in from_folder], kind


# -- prefetching --------------------------------------------------------------------------------------------
def test_fetch_weights_prefetches_the_rows_a_run_reads(hub, fetch_weights, monkeypatch):
    overrides = ["data=hub", f"data.repo={SET}", "data.start=2", "data.limit=4", "metrics.enabled=false"]
    listed = fetch_weights("--list", *overrides)
    assert listed.returncode == 0 and "state:  missing" in listed.stdout
    assert f"hf://datasets/{SET} (split train, rows 2..5)" in listed.stdout
    assert hub.downloads == []
    fetched = fetch_weights(*overrides)
    assert fetched.returncode == 0, fetched.stderr
    assert hub.downloads == [f"data/train-0000{i}-of-00003.parquet" for i in (0, 1)]
    assert "state:  cached" in fetch_weights("--list", *overrides).stdout
    set_offline(monkeypatch, True)
    data = runner.build_dataset(runner.compose(*overrides).data, 40)
    assert _names(data) == [(0, "00002"), (1, "00003"), (2, "00004"), (3, "00005")]
    assert len(hub.downloads) == 2


# -- data=ffhq / data=imagenet without a folder -------------------------------------------------------------
def test_ffhq_without_a_folder_reads_its_hub_source_and_a_folder_still_wins(hub, pictures, tmp_path):
    hub.repos["merkol/ffhq-256"] = hub.repos[SET]
    data = runner.build_dataset(runner.compose("data=ffhq", "data.limit=2").data, 40)
    assert _names(data) == [(0, "00000"), (1, "00001")]
    assert data.samples[0].source.startswith(f"hf://datasets/merkol/ffhq-256@{COMMIT}/data/train-00000")
    downloads = list(hub.downloads)
    folder = tmp_path / "data" / "ffhq256"  # the config's default folder, relative to the working directory
    folder.mkdir(parents=True)
    for row in (0, 1):
        (folder / f"{row:05d}.png").write_bytes(pictures[row])
    data = runner.build_dataset(runner.compose("data=ffhq", "data.limit=2").data, 40)
    assert data.samples[0].source == str(folder.resolve() / "00000.png") and hub.downloads == downloads


def test_a_folder_the_user_names_is_never_replaced_by_a_download(hub, tmp_path, monkeypatch):
    hub.repos["merkol/ffhq-256"] = hub.repos[SET]
    with pytest.raises(SetupError, match="image folder not found"):
        runner.validate(runner.compose("data=ffhq", f"data.path={tmp_path / 'typo'}"))
    monkeypatch.setenv("FFHQ_DIR", str(tmp_path / "typo"))
    with pytest.raises(SetupError, match="FFHQ_DIR"):
        runner.validate(runner.compose("data=ffhq"))
    assert hub.api == [] and hub.downloads == []


def test_gated_imagenet_says_how_to_log_in_or_where_to_put_a_folder(hub, tiny_checkpoint, tmp_path, script):
    hub.repos["ILSVRC/imagenet-1k"] = {"data/validation-00000-of-00001.parquet": b"PAR1"}
    hub.gated.add("ILSVRC/imagenet-1k")
    result = script(
        "restore.py", "data=imagenet", "data.limit=1", f"prior.checkpoint={tiny_checkpoint}",
        f"results_root={tmp_path / 'results'}", "metrics.enabled=false", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "data.hub.repo=ILSVRC/imagenet-1k" in errors[0] and "401" in errors[0]
    assert "hf auth login" in errors[0] and "HF_TOKEN" in errors[0]
    assert "data.path=<folder>" in errors[0] and "IMAGENET_VAL_DIR" in errors[0]
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("*"))


# -- image-folder repositories and the split rules ----------------------------------------------------------
def test_an_image_file_repository_fetches_only_the_selected_files(hub, pictures):
    hub.repos["someone/pngs"] = {f"images/{r:05d}.png": pictures[r] for r in range(6)}
    cfg = runner.compose("data=hub", "data.repo=someone/pngs", "data.start=1", "data.limit=2")
    data = runner.build_dataset(cfg.data, 40)
    assert _names(data) == [(0, "00001"), (1, "00002")]
    assert sorted(hub.downloads) == ["images/00001.png", "images/00002.png"]
    assert torch.equal(data.load(data.samples[1]), _truth(pictures[2]))


def test_split_files_follow_the_datasets_conventions():
    """The split's files as ``datasets`` resolves them (its docs, "File names and splits"): the split name or a
    synonym (val, dev, valid; eval, testing) as a word of a file or folder name; no split name anywhere: train."""
    files = [
        "README.md",
        "data/train-00001-of-00002.parquet",
        "data/train-00000-of-00002.parquet",
        "data/validation-00000-of-00001.parquet",
        "data/test-00000-of-00001.parquet",
    ]
    spec = HubSpec("a/b")
    assert split_files(files, spec) == ("parquet", files[2:0:-1])
    assert split_files(files, HubSpec("a/b", split="validation")) == ("parquet", [files[3]])
    folders = ["val/ILSVRC2012_val_00000002.JPEG", "val/ILSVRC2012_val_00000001.JPEG", "train/n01/x.JPEG"]
    assert split_files(folders, HubSpec("a/b", split="validation")) == ("images", sorted(folders[:2]))
    assert split_files(["00001.png", "00000.png"], spec) == ("images", ["00000.png", "00001.png"])
    glob = HubSpec("a/b", files="default/validation/*.parquet")
    assert split_files(["default/validation/0001.parquet", "default/validation/0000.parquet"], glob)[1] == [
        "default/validation/0000.parquet",
        "default/validation/0001.parquet",
    ]
    with pytest.raises(SetupError, match=r"refs/convert/parquet"):
        split_files(["data/val_images.tar.gz", "classes.py"], HubSpec("a/b", split="validation"))


def test_a_pinned_commit_once_fetched_needs_no_request(hub):
    first = _hub_data(f"data.revision={COMMIT}", "data.limit=2")
    requests = (len(hub.api), len(hub.downloads), len(hub.ranges))
    assert requests == (1, 1, 0)
    again = _hub_data(f"data.revision={COMMIT}", "data.limit=2")
    assert _names(again) == _names(first) and (len(hub.api), len(hub.downloads), len(hub.ranges)) == requests
    assert again.samples[0].source == f"hf://datasets/{SET}@{COMMIT}/data/train-00000-of-00003.parquet#row=0"


def test_min_size_and_unreadable_rows_are_skipped_as_in_a_folder(hub, pictures, tmp_path):
    """ImageNet's rule: images under min_size (and rows without an image) are skipped, reported, and not counted in
    data.limit; the folder reader applied to the same files gives the same names, indices and skips."""
    small = io.BytesIO()
    Image.new("RGB", (20, 30), (9, 9, 9)).save(small, format="PNG")
    rows = [pictures[0], small.getvalue(), None, pictures[3], pictures[4]]  # row 2: a null cell
    hub.repos["someone/mixed"] = {"data/validation-00000-of-00001.parquet": _parquet(
        [{"bytes": data, "path": f"ILSVRC2012_val_{r + 1:08d}.JPEG"} for r, data in enumerate(rows)]
    )}  # fmt: skip
    cfg = runner.compose("data=hub", "data.repo=someone/mixed", "data.split=validation", "data.min_size=32",
                         "data.limit=2")  # fmt: skip
    data = runner.build_dataset(cfg.data, 40)
    folder = tmp_path / "mixed"
    folder.mkdir()
    for r, content in enumerate(rows):
        (folder / f"ILSVRC2012_val_{r + 1:08d}.JPEG").write_bytes(content or b"not an image")
    from_folder = runner.build_dataset(
        runner.compose("data=folder", f"data.path={folder}", "data.min_size=32", "data.limit=2").data, 40
    )
    assert _names(data) == _names(from_folder) == [(0, "ILSVRC2012_val_00000001"), (1, "ILSVRC2012_val_00000004")]
    assert [s.name for s in data.skipped] == ["ILSVRC2012_val_00000002", "ILSVRC2012_val_00000003"]
    assert "smaller than min_size=32 (20x30)" in data.skipped[0].reason
    assert data.skipped[1].reason.startswith("no image in this row")
    assert from_folder.skipped[0].reason == data.skipped[0].reason


def test_a_download_that_does_not_match_its_sha256_is_not_kept(hub):
    shard = "data/train-00000-of-00003.parquet"
    announced = hashlib.sha256(b"another file").hexdigest()
    hub.announced[shard] = announced
    with pytest.raises(SetupError) as info:
        _hub_data("data.limit=1")
    actual = hashlib.sha256(hub.repos[SET][shard]).hexdigest()
    assert "checksum mismatch" in str(info.value) and announced in str(info.value) and actual in str(info.value)
    blobs = Path(runner.download.hub_cache_dir(), "datasets--someone--faces", "blobs")
    assert not blobs.exists() or list(blobs.iterdir()) == []
    del hub.announced[shard]  # the mirror fixed: the retry fetches and keeps it
    assert _names(_hub_data("data.limit=1")) == [(0, "00000")]
