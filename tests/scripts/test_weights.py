"""Real weights: fetched from their source into the standard caches, verified, loaded strictly, used offline.

Nothing here reaches the internet: a loopback HTTP server (127.0.0.1, port 0) serves checkpoints the tests write in
the real formats, and the Hugging Face cache is laid out by hand as huggingface_hub writes it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
import yaml

import runner
from runner import SetupError

REPO = Path(__file__).resolve().parents[2]
IMAGENET_URL = "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/256x256_diffusion_uncond.pt"
#: a commit hash for hand-made Hub cache snapshots
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class Server:
    """Serves ``files`` (path -> bytes, with ``headers`` per path); counts GET requests; ``cut`` paths send half the
    body once, then hang up. HEAD answers with the headers only (what huggingface_hub asks first)."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.headers: dict[str, dict[str, str]] = {}
        self.cut: set[str] = set()
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _head(self) -> bytes | None:
                path = self.path.split("?")[0]
                body = server.files.get(path)
                if body is None:
                    self.send_error(404)
                    return None
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                for name, value in server.headers.get(path, {}).items():
                    self.send_header(name, value)
                self.end_headers()
                return body

            def do_HEAD(self):
                self._head()

            def do_GET(self):
                server.requests.append(self.path)
                body = self._head()
                if body is None:
                    return
                if self.path in server.cut:
                    server.cut.discard(self.path)
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def serve_hub_file(self, repo: str, filename: str, data: bytes, sha256: str) -> None:
        """``data`` as the Hub serves an LFS file at ``<endpoint>/<repo>/resolve/main/<filename>``: its commit and
        its LFS SHA-256 (``sha256``) in the headers."""
        path = f"/{repo}/resolve/main/{filename}"
        self.files[path] = data
        self.headers[path] = {"X-Repo-Commit": COMMIT, "X-Linked-Etag": f'"{sha256}"', "ETag": f'"{sha256}"'}


@pytest.fixture
def server():
    s = Server()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture
def caches(tmp_path, monkeypatch) -> dict[str, Path]:
    """Empty HF_HOME and TORCH_HOME; online unless a test says otherwise (it only ever reaches 127.0.0.1)."""
    homes = {"HF_HOME": tmp_path / "hf_home", "TORCH_HOME": tmp_path / "torch_home"}
    for name, path in homes.items():
        monkeypatch.setenv(name, str(path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # an unintended Hub call fails here, not on the internet
    return homes


@pytest.fixture(scope="module")
def tiny_adm_pt(tmp_path_factory) -> tuple[Path, dict, dict]:
    """An ADM state dict in the released checkpoints' format (a pickled flat dict, ``.pt``), of the tiny preset:
    (file, preset, state dict)."""
    from priors.adm import ADMPrior
    from priors.tiny import TINY_ADM_CONFIG

    preset = dict(TINY_ADM_CONFIG)
    prior = ADMPrior.from_preset(preset, init="random", generator=torch.Generator().manual_seed(1))
    state = {k: v.clone() for k, v in prior.network.state_dict().items()}
    path = tmp_path_factory.mktemp("served") / "checkpoint.pt"
    torch.save(state, path)
    return path, preset, state


@pytest.fixture
def fetch_weights(capsys, monkeypatch):
    """``fetch_weights(*args)`` runs scripts/fetch_weights.py's ``main`` in this process (a subprocess costs an
    import of torch per call): a result with returncode, stdout, stderr."""
    import importlib.util
    import os
    import types

    import huggingface_hub.constants

    spec = importlib.util.spec_from_file_location("fetch_weights_script", REPO / "scripts" / "fetch_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def run(*args: str):
        # huggingface_hub reads HF_HUB_OFFLINE at import time (tests/conftest.py sets it); the tests set it per test
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", os.environ.get("HF_HUB_OFFLINE") == "1")
        runner.download.forget_failures()  # each call is a new command
        capsys.readouterr()
        code = module.main(list(args))
        out, err = capsys.readouterr()
        return types.SimpleNamespace(returncode=code, stdout=out, stderr=err)

    return run


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _imagenet_overrides(tmp_path: Path, url: str, sha256: str | None = None) -> list[str]:
    """prior=adm_imagenet from ``url`` (a 32 px tiny network stands in for the 256 px one)."""
    return [
        "prior=adm_imagenet",
        f"prior.weights.url={url}",
        *([f"prior.weights.sha256={sha256}"] if sha256 else []),
        "prior.image_size=32",
        f"results_root={tmp_path / 'results'}",
        "solver.num_steps=2",
        "data.limit=1",
        "show_progress=false",
        "metrics.enabled=false",
    ]


def _experiment(overrides: list[str], preset: dict) -> runner.Experiment:
    cfg = runner.compose(*overrides)
    cfg.prior.preset = preset  # the tiny network's architecture (the served file holds that one)
    return runner.Experiment(cfg)


def _assert_state(prior, state: dict) -> None:
    loaded = prior.network.state_dict()
    assert loaded.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key


# -- the configured sources ----------------------------------------------------------------------------------
def test_configured_sources_are_the_published_ones():
    """Repo ids, file names and URLs as their projects publish them (deepinv/models/diffunet.py: Hub repo
    deepinv/diffunet, file diffusion_ffhq_10m.pt; guided-diffusion README: the 256x256 unconditional URL)."""
    conf = {
        name: yaml.safe_load((REPO / "conf" / "prior" / f"{name}.yaml").read_text())
        for name in ("adm_ffhq", "adm_imagenet", "sd15")
    }
    assert conf["adm_ffhq"]["weights"] == {
        "repo": "deepinv/diffunet",
        "file": "diffusion_ffhq_10m.pt",
        "revision": None,
        "url": None,
        "sha256": None,
    }
    assert conf["adm_imagenet"]["weights"]["url"] == IMAGENET_URL
    assert conf["adm_imagenet"]["weights"]["repo"] is None
    assert conf["sd15"]["weights"] == {
        "repo": "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "revision": None,
        "variant": None,
    }


def test_metric_sources_match_the_libraries():
    """LPIPS backbones: torchvision's own weight URLs, whose file names carry the SHA-256 prefix torch.hub checks;
    FID: pytorch-fid's FID_WEIGHTS_URL (no digest published: none enforced)."""
    from pytorch_fid.inception import FID_WEIGHTS_URL
    from torchvision.models import AlexNet_Weights, VGG16_Weights

    from evaluation import BACKBONES, INCEPTION

    assert BACKBONES["alex"].url == AlexNet_Weights.IMAGENET1K_V1.url
    assert BACKBONES["vgg"].url == VGG16_Weights.IMAGENET1K_V1.url
    for spec in BACKBONES.values():
        assert spec.sha256 == re.search(r"-([a-f0-9]+)\.", spec.url.rsplit("/", 1)[1]).group(1)
    assert INCEPTION.url == FID_WEIGHTS_URL and INCEPTION.sha256 is None


def test_sd15_fetches_only_the_five_components(caches):
    """SD1.5 from the Hub: model_index.json and unet/ vae/ text_encoder/ tokenizer/ scheduler/ only; fp16 files
    with prior.weights.variant=fp16."""
    from runner.priors import prior_needs

    for variant, dot in ((None, ""), ("fp16", ".fp16")):
        cfg = runner.compose("prior=sd15", f"prior.weights.variant={variant or 'null'}")
        (need,) = prior_needs(cfg.prior)
        assert need.source.repo == "stable-diffusion-v1-5/stable-diffusion-v1-5"
        folders = {p.split("/")[0] for p in need.source.patterns if "/" in p}
        assert folders == {"unet", "vae", "text_encoder", "tokenizer", "scheduler"}
        assert f"unet/diffusion_pytorch_model{dot}.safetensors" in need.source.patterns


# -- URL sources ---------------------------------------------------------------------------------------------
def test_prefetch_then_runs_use_the_cache(server, caches, tiny_adm_pt, tmp_path, script, fetch_weights):
    """fetch_weights downloads and verifies; runs load it strictly from $TORCH_HOME/hub/checkpoints, with no
    further request, also offline."""
    path, preset, state = tiny_adm_pt
    data = path.read_bytes()
    server.files["/mirror/256x256_diffusion_uncond.pt"] = data
    overrides = _imagenet_overrides(tmp_path, server.url("/mirror/256x256_diffusion_uncond.pt"), _sha256(data))

    listed = fetch_weights("--list", *overrides)
    assert listed.returncode == 0, listed.stderr
    assert "state:  missing" in listed.stdout and server.requests == []
    fetched = script("fetch_weights.py", *overrides)
    assert fetched.returncode == 0, fetched.stderr
    destination = caches["TORCH_HOME"] / "hub" / "checkpoints" / "256x256_diffusion_uncond.pt"
    assert destination.read_bytes() == data and len(server.requests) == 1
    assert sorted(p.name for p in destination.parent.iterdir()) == [destination.name]  # no temporary file left

    _assert_state(_experiment(overrides, preset).prior, state)
    runner.run(_with_preset(overrides, preset))
    _assert_state(_experiment([*overrides, "offline=true"], preset).prior, state)
    assert len(server.requests) == 1
    again = fetch_weights("--list", *overrides)
    assert f"state:  cached: {destination}" in again.stdout


def _with_preset(overrides: list[str], preset: dict):
    cfg = runner.compose(*overrides)
    cfg.prior.preset = preset
    return cfg


def test_a_run_downloads_what_it_lacks(server, caches, tiny_adm_pt, tmp_path):
    path, preset, state = tiny_adm_pt
    server.files["/w.pt"] = path.read_bytes()
    overrides = _imagenet_overrides(tmp_path, server.url("/w.pt"), _sha256(path.read_bytes()))
    _assert_state(_experiment(overrides, preset).prior, state)
    assert (caches["TORCH_HOME"] / "hub" / "checkpoints" / "w.pt").is_file() and len(server.requests) == 1


def test_wrong_checksum_keeps_nothing(server, caches, tiny_adm_pt, tmp_path, fetch_weights):
    path, preset, _ = tiny_adm_pt
    data = path.read_bytes()
    server.files["/w.pt"] = data
    wrong = "0" * 64
    overrides = _imagenet_overrides(tmp_path, server.url("/w.pt"), wrong)
    result = fetch_weights(*overrides)
    assert result.returncode == 1
    assert wrong in result.stderr and _sha256(data) in result.stderr and "checksum mismatch" in result.stderr
    checkpoints = caches["TORCH_HOME"] / "hub" / "checkpoints"
    assert not checkpoints.exists() or list(checkpoints.iterdir()) == []
    with pytest.raises(SetupError) as info:  # a run says the same at start-up (restore.py: rc 2)
        _experiment(overrides, preset)
    assert wrong in str(info.value) and _sha256(data) in str(info.value)
    assert not checkpoints.exists() or list(checkpoints.iterdir()) == []


def test_download_cut_midway_leaves_nothing_and_the_retry_succeeds(
    server, caches, tiny_adm_pt, tmp_path, fetch_weights
):
    path, _, _ = tiny_adm_pt
    data = path.read_bytes()
    server.files["/w.pt"] = data
    server.cut.add("/w.pt")
    overrides = _imagenet_overrides(tmp_path, server.url("/w.pt"), _sha256(data))
    first = fetch_weights(*overrides)
    assert first.returncode == 1 and "/w.pt" in first.stderr
    checkpoints = caches["TORCH_HOME"] / "hub" / "checkpoints"
    assert list(checkpoints.iterdir()) == []
    second = fetch_weights(*overrides)
    assert second.returncode == 0, second.stderr
    assert (checkpoints / "w.pt").read_bytes() == data and len(server.requests) == 2


def test_offline_cold_cache_stops_at_start_up_with_the_prefetch_command(
    server, caches, tiny_adm_pt, tmp_path, monkeypatch
):
    path, preset, _ = tiny_adm_pt
    server.files["/w.pt"] = path.read_bytes()
    overrides = _imagenet_overrides(tmp_path, server.url("/w.pt"))
    for switch in (["offline=true"], []):
        if not switch:
            monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        with pytest.raises(SetupError) as info:
            _experiment([*overrides, *switch], preset)
        message = str(info.value)
        assert message.startswith("ImageNet 256 unconditional ADM (guided-diffusion) checkpoint not found")
        assert "offline" in message and "python scripts/fetch_weights.py prior=adm_imagenet" in message
        assert str(caches["TORCH_HOME"] / "hub" / "checkpoints" / "w.pt") in message
    assert server.requests == []


def test_multirun_prefetch_is_the_union_of_the_sweep(server, caches, tiny_adm_pt, tmp_path, fetch_weights):
    path, _, _ = tiny_adm_pt
    server.files["/a.pt"] = server.files["/b.pt"] = path.read_bytes()
    base = _imagenet_overrides(tmp_path, server.url("/a.pt"))
    overrides = [o for o in base if not o.startswith("prior.weights.url")]
    sweep = f"prior.weights.url={server.url('/a.pt')},{server.url('/b.pt')}"
    result = fetch_weights("-m", *overrides, sweep, "task=sr4,box_inpaint")
    assert result.returncode == 0, result.stderr
    assert sorted(server.requests) == ["/a.pt", "/b.pt"]  # four jobs, two files, each fetched once


# -- Hub sources ---------------------------------------------------------------------------------------------
def _hub_cache(hf_home: Path, repo: str, files: dict[str, Path]) -> Path:
    """``files`` laid out as huggingface_hub writes them: blobs/<sha256>, snapshots/<commit>/<name> -> blob,
    refs/main."""
    root = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    for name, source in files.items():
        blob = root / "blobs" / _sha256(source.read_bytes())
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, blob)
        link = root / "snapshots" / COMMIT / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path("../" * (name.count("/") + 2)) / "blobs" / blob.name)
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(COMMIT)
    return root


def test_ffhq_from_a_warm_hub_cache_offline(caches, tiny_adm_pt, tmp_path, monkeypatch):
    path, preset, state = tiny_adm_pt
    _hub_cache(caches["HF_HOME"], "deepinv/diffunet", {"diffusion_ffhq_10m.pt": path})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    overrides = ["prior=adm_ffhq", "prior.image_size=32", f"results_root={tmp_path}", "metrics.enabled=false"]
    _assert_state(_experiment(overrides, preset).prior, state)


def test_sd15_from_a_warm_hub_cache_offline(caches, tiny_sd_folder, tmp_path, monkeypatch):
    """The tiny latent prior's folder in the Hub cache under SD1.5's repo id is found and loaded offline."""
    from runner.priors import prior_needs

    repo = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    files = {str(p.relative_to(tiny_sd_folder)): p for p in tiny_sd_folder.rglob("*") if p.is_file()}
    configs = {name: p for name, p in files.items() if not name.endswith(".safetensors")}
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # no ./models/stable-diffusion-v1-5 here
    cfg = runner.compose("prior=sd15", "prior.image_size=32", f"results_root={tmp_path}", "metrics.enabled=false")
    _hub_cache(caches["HF_HOME"], repo, configs)  # what a single-file checkpoint fetches: not the model
    assert prior_needs(cfg.prior)[0].status()[0] == "missing"
    _hub_cache(caches["HF_HOME"], repo, {name: p for name, p in files.items() if name not in configs})
    assert prior_needs(cfg.prior)[0].status()[0] == "cached"
    prior = runner.build_prior(cfg.prior, torch.device("cpu"), torch.float32)
    from safetensors.torch import load_file

    expected = load_file(tiny_sd_folder / "unet" / "diffusion_pytorch_model.safetensors")
    loaded = prior.unet.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in expected.items())


# -- a single-file SD checkpoint -----------------------------------------------------------------------------
def test_single_file_without_configs_offline_names_them_and_the_override(caches, tiny_sd_folder, tmp_path, script):
    from priors.sd import load_sd, save_single_file

    checkpoint = save_single_file(load_sd(tiny_sd_folder), tmp_path / "v1-5-pruned-emaonly.safetensors")
    common = ["prior=sd15", f"prior.source={checkpoint}", "prior.image_size=32", f"results_root={tmp_path}"]
    result = script("restore.py", *common, "solver.num_steps=1", "data.limit=1", env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 2, result.stderr
    message = result.stderr
    assert f"prior.source={checkpoint} is there" in message
    assert "unet/, vae/, text_encoder/, tokenizer/ and scheduler/ configs are missing" in message
    assert "prior.config=./models/sd15-configs" in message and "Traceback" not in message
    # the override the message gives works (the key is declared: no '+')
    cfg = runner.compose(*common, f"prior.config={tiny_sd_folder}")
    prior = runner.build_prior(cfg.prior, torch.device("cpu"), torch.float32, offline=True)
    assert prior.image_size in (32, (32, 32))


def test_hub_blobs_are_checked_against_their_sha256_names(caches, tiny_adm_pt, tmp_path):
    """A downloaded Hub file whose bytes do not hash to its blob's name (the Hub's LFS SHA-256) is removed and
    reported with both digests; intact files and git-stored (non-SHA-256-named) files pass."""
    from runner.download import WeightsError, verify_hub_blobs

    path, _, _ = tiny_adm_pt
    config = tmp_path / "config.json"
    config.write_text("{}")
    root = _hub_cache(caches["HF_HOME"], "someone/model", {"unet/weights.pt": path})
    snapshot = root / "snapshots" / COMMIT
    git_blob = root / "blobs" / ("a" * 40)
    shutil.copyfile(config, git_blob)
    (snapshot / "config.json").symlink_to(Path("../..") / "blobs" / git_blob.name)
    verify_hub_blobs(snapshot, "model")  # intact

    link = snapshot / "unet" / "weights.pt"
    blob = link.resolve()
    expected = blob.name
    blob.write_bytes(path.read_bytes()[:-1] + b"x")
    actual = hashlib.sha256(blob.read_bytes()).hexdigest()
    with pytest.raises(WeightsError) as info:
        verify_hub_blobs(snapshot, "model")
    assert expected in str(info.value) and actual in str(info.value)
    assert not link.exists() and not link.is_symlink() and not blob.exists()
    assert (snapshot / "config.json").is_file()


def test_air_gapped_copy_by_file_url(caches, tiny_adm_pt, tmp_path):
    """prior.weights.url=file:///... (a copy on a shared disk) is copied into the cache, verified, and loaded."""
    path, preset, state = tiny_adm_pt
    overrides = _imagenet_overrides(tmp_path, path.as_uri(), _sha256(path.read_bytes()))
    _assert_state(_experiment(overrides, preset).prior, state)
    assert (caches["TORCH_HOME"] / "hub" / "checkpoints" / path.name).read_bytes() == path.read_bytes()


def test_a_run_fetches_metric_weights_once(server, caches, monkeypatch, tmp_path, tiny_checkpoint):
    """A run fetches the LPIPS backbone it lacks into $TORCH_HOME/hub/checkpoints (checked against a SHA-256 prefix,
    as torchvision's names carry) and scores with it; a later offline run reads the cache. Offline with a cold
    cache, LPIPS is unavailable and the restoration still runs. (Random backbone: tests the plumbing, not LPIPS.)"""
    from torchvision.models import alexnet

    from evaluation import BACKBONES, WeightsFile

    generator = torch.Generator().manual_seed(0)
    shapes = {f"features.{k}": v.shape for k, v in alexnet(weights=None).features.state_dict().items()}
    backbone = tmp_path / "alexnet-test.pth"
    torch.save({k: 0.05 * torch.randn(shape, generator=generator) for k, shape in shapes.items()}, backbone)
    data = backbone.read_bytes()
    server.files["/alexnet-test.pth"] = data
    spec = WeightsFile(
        "LPIPS backbone (AlexNet)", "alexnet-test.pth", server.url("/alexnet-test.pth"), _sha256(data)[:8]
    )
    monkeypatch.setitem(BACKBONES, "alex", spec)
    overrides = [
        f"prior.checkpoint={tiny_checkpoint}",
        f"results_root={tmp_path / 'results'}",
        "solver.num_steps=2",
        "data.limit=1",
        "show_progress=false",
        "metrics.fid.enabled=false",
    ]
    summary = runner.run(runner.compose(*overrides))
    assert summary["metrics"]["lpips"]["count"] == 1 and len(server.requests) == 1
    assert (caches["TORCH_HOME"] / "hub" / "checkpoints" / "alexnet-test.pth").read_bytes() == data
    summary = runner.run(runner.compose(*overrides, "offline=true", "tag=_offline"))
    assert summary["metrics"]["lpips"]["count"] == 1 and len(server.requests) == 1

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "cold"))
    summary = runner.run(runner.compose(*overrides, "offline=true", "tag=_cold"))
    assert summary["counts"]["done"] == 1 and summary["metrics"]["lpips"]["count"] == 0
    assert "alexnet-test.pth" in summary["metrics"]["lpips"]["unavailable"] and len(server.requests) == 1


def test_single_file_of_a_prior_without_a_source(tiny_sd_folder, tmp_path, monkeypatch):
    """prior=tiny_sd names no Hub repo: its single file takes +prior.config=<folder>; without it, offline, the
    error still says that configs are needed (load_sd infers SD1.5's Hub id from the keys, not cached here)."""
    from priors.sd import load_sd, save_single_file

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    checkpoint = save_single_file(load_sd(tiny_sd_folder), tmp_path / "tiny.safetensors")
    common = ["prior=tiny_sd", f"prior.source={checkpoint}", f"results_root={tmp_path}"]
    prior = runner.build_prior(runner.compose(*common, f"+prior.config={tiny_sd_folder}").prior, "cpu", torch.float32)
    assert prior.image_size in (32, (32, 32))
    with pytest.raises(SetupError, match=r"could not load prior\.source=.*config=") as info:
        runner.build_prior(runner.compose(*common).prior, "cpu", torch.float32)
    assert "Traceback" not in str(info.value)


def test_a_path_the_user_gives_wins_and_is_never_replaced_by_a_download(server, caches, tiny_adm_pt, tmp_path):
    path, preset, state = tiny_adm_pt
    server.files["/w.pt"] = b"not a checkpoint"
    overrides = _imagenet_overrides(tmp_path, server.url("/w.pt"))
    _assert_state(_experiment([*overrides, f"prior.checkpoint={path}"], preset).prior, state)
    missing = tmp_path / "typo" / "256x256_diffusion_uncond.pt"
    with pytest.raises(SetupError) as info:
        _experiment([*overrides, f"prior.checkpoint={missing}"], preset)
    assert str(info.value).startswith(
        f"ImageNet 256 unconditional ADM (guided-diffusion) checkpoint not found: {missing}"
    )
    assert server.requests == []


def test_ffhq_downloaded_from_the_hub(server, caches, tiny_adm_pt, tmp_path, fetch_weights, monkeypatch):
    """prior=adm_ffhq with no local copy: fetch_weights takes deepinv/diffunet's diffusion_ffhq_10m.pt through
    huggingface_hub (a loopback endpoint stands in for the Hub) into the HF cache; a run then loads it offline."""
    path, preset, state = tiny_adm_pt
    data = path.read_bytes()
    monkeypatch.setenv("HF_ENDPOINT", server.url())
    monkeypatch.chdir(tmp_path)
    server.serve_hub_file("deepinv/diffunet", "diffusion_ffhq_10m.pt", data, _sha256(data))
    overrides = ["prior=adm_ffhq", "prior.image_size=32", f"results_root={tmp_path}", "metrics.enabled=false"]
    result = fetch_weights(*overrides)
    assert result.returncode == 0, result.stderr
    blob = caches["HF_HOME"] / "hub" / "models--deepinv--diffunet" / "blobs" / _sha256(data)
    assert blob.read_bytes() == data
    _assert_state(_experiment([*overrides, "offline=true"], preset).prior, state)


def test_hub_download_that_does_not_match_its_sha256_is_not_kept(
    server, caches, tiny_adm_pt, tmp_path, fetch_weights, monkeypatch
):
    path, _, _ = tiny_adm_pt
    data = path.read_bytes()
    announced = _sha256(b"another file")
    monkeypatch.setenv("HF_ENDPOINT", server.url())
    monkeypatch.chdir(tmp_path)
    server.serve_hub_file("deepinv/diffunet", "diffusion_ffhq_10m.pt", data, announced)
    overrides = ["prior=adm_ffhq", "metrics.enabled=false"]
    result = fetch_weights(*overrides)
    assert result.returncode == 1
    assert announced in result.stderr and _sha256(data) in result.stderr
    repo = caches["HF_HOME"] / "hub" / "models--deepinv--diffunet"
    assert list((repo / "blobs").iterdir()) == []  # only refs/main (a commit id) is left
    assert [p for p in (repo / "snapshots").rglob("*") if p.is_file() or p.is_symlink()] == []
    server.serve_hub_file("deepinv/diffunet", "diffusion_ffhq_10m.pt", data, _sha256(data))  # the mirror fixed
    result = fetch_weights(*overrides)
    assert result.returncode == 0, result.stderr


# -- pinned checksums against what is already here; one cache entry per URL ----------------------------------
def test_a_cached_file_with_another_checksum_than_the_pinned_one_is_refused(
    server, caches, tiny_adm_pt, tmp_path, fetch_weights
):
    """A file fetched without a pin, then a pin that does not match it: fetch_weights exits 1 naming both digests,
    downloads nothing and replaces nothing; a run refuses it at start-up the same way."""
    path, preset, _ = tiny_adm_pt
    data = path.read_bytes()
    server.files["/w.pt"] = data
    url = server.url("/w.pt")
    assert fetch_weights(*_imagenet_overrides(tmp_path, url)).returncode == 0
    cached = caches["TORCH_HOME"] / "hub" / "checkpoints" / "w.pt"
    stamp = cached.stat().st_mtime_ns
    wrong = hashlib.sha256(b"the file someone meant").hexdigest()
    result = fetch_weights(*_imagenet_overrides(tmp_path, url, wrong))
    assert result.returncode == 1
    assert wrong in result.stderr and _sha256(data) in result.stderr and str(cached) in result.stderr
    assert cached.read_bytes() == data and cached.stat().st_mtime_ns == stamp and len(server.requests) == 1
    with pytest.raises(SetupError) as info:
        _experiment(_imagenet_overrides(tmp_path, url, wrong), preset)
    assert wrong in str(info.value) and _sha256(data) in str(info.value)
    assert cached.read_bytes() == data and len(server.requests) == 1
    right = fetch_weights(*_imagenet_overrides(tmp_path, url, _sha256(data)))  # the right pin: used as it is
    assert right.returncode == 0 and "pinned sha256 checked" in right.stdout and len(server.requests) == 1


def test_two_urls_with_the_same_file_name_do_not_share_a_cache_entry(
    server, caches, tiny_adm_pt, tmp_path, fetch_weights
):
    path, _, _ = tiny_adm_pt
    first, second = path.read_bytes(), path.read_bytes() + b"another version"
    server.files["/a/w.pt"], server.files["/b/w.pt"] = first, second
    url_a, url_b = server.url("/a/w.pt"), server.url("/b/w.pt")
    assert fetch_weights(*_imagenet_overrides(tmp_path, url_a)).returncode == 0
    result = fetch_weights(*_imagenet_overrides(tmp_path, url_b, _sha256(second)))
    assert result.returncode == 0, result.stderr
    assert server.requests == ["/a/w.pt", "/b/w.pt"]  # B was fetched, not taken from A's entry
    checkpoints = caches["TORCH_HOME"] / "hub" / "checkpoints"
    assert (checkpoints / "w.pt").read_bytes() == first  # A's entry untouched
    url_hash = hashlib.sha256(url_b.encode()).hexdigest()[:12]
    assert (checkpoints / f"url-{url_hash}" / "w.pt").read_bytes() == second
    for url, data in ((url_a, first), (url_b, second)):  # each URL finds its own file, nothing fetched again
        listed = fetch_weights("--list", *_imagenet_overrides(tmp_path, url))
        cached = Path(re.search(r"state:  cached: (\S+)", listed.stdout).group(1))
        assert cached.read_bytes() == data
    assert len(server.requests) == 2


def test_a_pinned_sha256_is_hashed_once_per_version_of_a_file(caches, tmp_path, monkeypatch):
    """Checked at every start, hashed only when the file's size or mtime changed: the digest is remembered."""
    from runner import checksums
    from runner.download import Source, WeightsError, verify_pinned

    calls = []
    original = checksums.sha256_file
    monkeypatch.setattr(checksums, "sha256_file", lambda p: calls.append(p) or original(p))
    local = tmp_path / "weights.pt"
    local.write_bytes(b"a" * 1000)
    source = Source("test weights", "weights.pt", url="http://127.0.0.1:9/weights.pt", sha256=_sha256(b"a" * 1000))
    for _ in range(3):
        assert verify_pinned(source, local) == local
    assert len(calls) == 1
    local.write_bytes(b"b" * 1000)  # same size, new mtime: hashed again, and refused
    os.utime(local, ns=(local.stat().st_atime_ns, local.stat().st_mtime_ns + 1_000_000))
    with pytest.raises(WeightsError) as info:
        verify_pinned(source, local)
    assert _sha256(b"b" * 1000) in str(info.value) and source.sha256 in str(info.value) and len(calls) == 2
    assert local.read_bytes() == b"b" * 1000  # refused, not removed: it may be someone else's file


def test_a_download_is_hashed_as_it_streams_not_again_at_start(server, caches, tiny_adm_pt, tmp_path, monkeypatch):
    from runner import checksums

    path, preset, state = tiny_adm_pt
    server.files["/w.pt"] = path.read_bytes()
    overrides = _imagenet_overrides(tmp_path, server.url("/w.pt"), _sha256(path.read_bytes()))
    calls = []
    original = checksums.sha256_file
    monkeypatch.setattr(checksums, "sha256_file", lambda p: calls.append(p) or original(p))
    _assert_state(_experiment(overrides, preset).prior, state)  # downloads
    _assert_state(_experiment(overrides, preset).prior, state)  # cached: the pin checked from the memo
    assert calls == [] and len(server.requests) == 1


# -- downloads through a proxy that never answers --------------------------------------------------------------
class SilentServer:
    """A TCP server on 127.0.0.1 that accepts connections and never answers (a dead proxy); counts them."""

    def __init__(self):
        import socket

        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(16)
        self.accepted: list = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.accepted.append(connection)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.socket.getsockname()[1]}"

    def close(self):
        for connection in self.accepted:
            connection.close()
        self.socket.close()


@pytest.fixture
def dead_proxy(monkeypatch):
    proxy = SilentServer()
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(name, proxy.url)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    yield proxy
    proxy.close()


def test_the_download_timeout_is_at_most_15_s():
    from runner import download

    assert 0 < download.DOWNLOAD_TIMEOUT_S <= 15


def test_a_run_behind_a_dead_proxy_says_what_it_fetches_and_gives_up_once(
    caches, dead_proxy, tiny_checkpoint, tmp_path, monkeypatch, capfd
):
    """The LPIPS backbone (torchvision's real URL, through a proxy on 127.0.0.1 that never answers): the run prints
    what it downloads and its size first, gives up after the timeout, restores without LPIPS, and a second run in
    the same process does not try again. (The timeout is shortened from 15 s to keep the test short.)"""
    import time

    from evaluation import BACKBONES
    from runner import download

    monkeypatch.setattr(download, "DOWNLOAD_TIMEOUT_S", 2.0)
    overrides = [
        f"prior.checkpoint={tiny_checkpoint}",
        f"results_root={tmp_path / 'results'}",
        "solver.num_steps=1",
        "data.limit=1",
        "show_progress=false",
        "metrics.fid.enabled=false",
    ]
    tic = time.monotonic()
    summary = runner.run(runner.compose(*overrides))
    seconds = time.monotonic() - tic
    err = capfd.readouterr().err
    spec = BACKBONES["alex"]
    assert f"downloading {spec.what} (233 MB) from {spec.url}" in err and "gives up after 2 s" in err
    assert summary["counts"]["done"] == 1 and summary["metrics"]["lpips"]["count"] == 0
    assert seconds < 2.0 + 30 and len(dead_proxy.accepted) == 1  # one connection, timed out, not retried
    runner.run(runner.compose(*overrides, "tag=_again"))
    assert "downloading" not in capfd.readouterr().err and len(dead_proxy.accepted) == 1


def test_a_hub_download_behind_a_dead_server_gives_up_after_the_timeout(caches, tmp_path, monkeypatch, capfd):
    """huggingface_hub would retry a request that times out five times, 60 s each: one probe with the timeout
    instead, and one line saying so (no retry warnings, printed twice or at all)."""
    import time

    from runner import download
    from runner.priors import prior_needs
    from runner.weights import resolve

    dead = SilentServer()
    try:
        monkeypatch.setattr(download, "DOWNLOAD_TIMEOUT_S", 2.0)
        monkeypatch.setenv("HF_ENDPOINT", dead.url)
        monkeypatch.chdir(tmp_path)
        (need,) = prior_needs(runner.compose("prior=adm_ffhq").prior)
        tic = time.monotonic()
        with pytest.raises(download.WeightsError) as info:
            resolve(need, offline=False)
        assert time.monotonic() - tic < 2.0 + 5
        assert f"could not reach {dead.url} for hf://deepinv/diffunet/diffusion_ffhq_10m.pt within 2 s" in str(
            info.value
        )
        err = capfd.readouterr().err
        assert "downloading FFHQ 256 ADM (DPS) (size not published) from hf://deepinv/diffunet" in err
        assert "Retrying" not in err and len(dead.accepted) == 1
        with pytest.raises(download.WeightsError, match="not tried again"):
            resolve(need, offline=False)
        assert len(dead.accepted) == 1
    finally:
        dead.close()


def test_hub_warnings_are_printed_once():
    """huggingface_hub's logger has its own console handler and propagates to the root logger too: while the runner
    downloads, a warning reaches one handler, not two (the issue's retry warnings, each printed twice)."""
    import io
    import logging

    from runner.download import _hub_logs_once

    root, hub = logging.getLogger(), logging.getLogger("huggingface_hub")
    root_stream, hub_stream = io.StringIO(), io.StringIO()
    root_handler, hub_handler = logging.StreamHandler(root_stream), logging.StreamHandler(hub_stream)
    root.addHandler(root_handler)
    hub.addHandler(hub_handler)
    try:
        with _hub_logs_once():
            logging.getLogger("huggingface_hub.utils._http").warning("Retrying in 1s [Retry 1/5].")
        printed = root_stream.getvalue() + hub_stream.getvalue()
        assert printed.count("Retrying in 1s") == 1
        assert hub_handler in hub.handlers  # given back afterwards
    finally:
        root.removeHandler(root_handler)
        hub.removeHandler(hub_handler)
