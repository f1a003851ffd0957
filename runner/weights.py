"""Which weights a run reads, where each comes from, and fetching them (at start-up or ahead of time).

Every file has a *local* copy that wins when it exists (``prior.checkpoint``, ``prior.source``, ``prior.config``,
``metrics.*.weights``) and, where the config names one, a *source* (``prior.weights``: a Hub repo + file or a
URL, a SHA-256 where one is established; the metric networks' published URLs). A source is used only when the
local path is the config's default: a path the user gave is never silently replaced by a download.

What each prior family reads is declared with the family (``runner.priors``); a run's whole list is
``runner.build.run_needs``. ``scripts/fetch_weights.py`` fetches what a run (or a sweep) needs with the same
overrides as ``restore.py``; a run does the same at start-up unless it is offline (``offline=true`` or
``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import logging
import shlex
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .download import Source, WeightsError, WeightsMissing, cached, env_offline, fetch, verify_pinned
from .errors import SetupError

log = logging.getLogger("runner")


@dataclass(frozen=True)
class Need:
    """One thing a run reads: the setting it is configured by, the local copy (wins when it exists) and the source
    that fills the cache otherwise (None: the local copy is the only way). ``optional``: metric weights, whose
    absence makes the metric unavailable instead of stopping the run."""

    setting: str
    what: str
    local: Path | None
    source: Source | None
    optional: bool = False

    def status(self) -> tuple[str, Path | None]:
        """``("local", path)``, ``("cached", path)`` or ``("missing", where it would go)``."""
        if self.local is not None and self.local.exists():
            return "local", self.local
        if self.source is not None:
            path = cached(self.source)
            return ("cached", path) if path is not None else ("missing", self.source.destination())
        return "missing", self.local


def is_offline(cfg: DictConfig) -> bool:
    """``offline=true`` in the config, or ``HF_HUB_OFFLINE`` set in the environment."""
    return bool(OmegaConf.select(cfg, "offline", default=False)) or env_offline()


def prefetch_command(cfg: DictConfig) -> str:
    """``python scripts/fetch_weights.py <this run's overrides>`` (the prior's name outside a Hydra app)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        overrides = list(HydraConfig.get().overrides.task)
    except Exception:  # runner.compose / a config built in code: no recorded command line
        overrides = [f"prior={cfg.prior.name}"]
    overrides = [o for o in overrides if not o.lstrip("+~").startswith(("offline", "hydra"))]
    return " ".join(["python scripts/fetch_weights.py", *(shlex.quote(o) for o in overrides)])


def from_default(node: DictConfig, key: str) -> bool:
    """``node.key`` is the config file's interpolated default (``${oc.env:...}``), not a path the user typed."""
    try:
        return "${" in str(OmegaConf.to_container(node, resolve=False).get(key, ""))
    except Exception:
        return False


def looks_local(source: str) -> bool:
    """A filesystem path rather than a Hugging Face Hub id (``owner/name``)."""
    return (
        source.startswith((".", "/", "~")) or Path(source).suffix in (".safetensors", ".ckpt") or source.count("/") != 1
    )


def metric_needs(cfg: DictConfig) -> list[Need]:
    """LPIPS backbone and FID Inception weights (when those metrics are enabled; Inception only for FID/KID on
    Inception features): the explicit file, or torchvision's / pytorch-fid's URL into
    ``$TORCH_HOME/hub/checkpoints``."""
    from evaluation import BACKBONES, INCEPTION

    metrics = cfg.metrics
    if not metrics.enabled:
        return []
    wanted = []
    if metrics.lpips.enabled and str(metrics.lpips.net) in BACKBONES:
        wanted.append(("metrics.lpips.weights", BACKBONES[str(metrics.lpips.net)], metrics.lpips.weights))
    if metrics.fid.enabled and str(metrics.get("features", "inception")) == "inception":  # other features: no Inception
        wanted.append(("metrics.fid.weights", INCEPTION, metrics.fid.weights))
    needs = []
    for setting, spec, explicit in wanted:
        if explicit:
            needs.append(Need(setting, spec.what, Path(str(explicit)).expanduser(), None, optional=True))
        else:
            source = Source(spec.what, spec.filename, url=spec.url, sha256=spec.sha256, size_mb=spec.size_mb)
            needs.append(Need(setting, spec.what, None, source, optional=True))
    return needs


def operator_needs(task_cfg: DictConfig) -> list[Need]:
    """The weights file of a task's operator, where its class declares one (``weights_file``: the learned blur's
    ``GOPRO_wVAE.pth``): ``task.params.weights`` when given (the only copy then), else the file in torch's checkpoint
    cache, which is where the operator looks with no path (its source is a link followed by hand, ``manual``)."""
    from operators import OPERATORS

    cls = OPERATORS.get(str(task_cfg.get("operator")))
    spec = getattr(cls, "weights_file", None)
    if spec is None:
        return []
    given = OmegaConf.select(task_cfg, "params.weights", default=None)
    if given:
        return [Need("task.params.weights", spec.what, Path(str(given)).expanduser(), None)]
    source = Source(
        spec.what, spec.filename, url=spec.url, sha256=spec.sha256, size_mb=spec.size_mb, manual=spec.manual
    )
    return [Need("task.params.weights", spec.what, None, source)]


# -- using them -----------------------------------------------------------------------------------------------
def resolve(need: Need, offline: bool, progress: bool = True) -> Path:
    """The local copy when it exists, else the source's cached or downloaded copy (``WeightsMissing`` offline or
    without a source, ``WeightsError`` when a download fails, or the file, cached or local, does not have the
    source's pinned SHA-256)."""
    if need.local is not None and need.local.exists():
        return verify_pinned(need.source, need.local)
    if need.source is None:
        raise WeightsMissing(f"{need.what}: {need.local} does not exist")
    return fetch(need.source, offline=offline, progress=progress)


def metric_files(cfg: DictConfig, offline: bool, prefetch: str) -> dict[str, Path | None]:
    """``{setting: file or None}`` for the enabled metrics, fetched when missing (online). A metric whose weights
    cannot be had is reported unavailable later, with the reason; this logs how to fetch them."""
    files: dict[str, Path | None] = {}
    for need in metric_needs(cfg):
        if need.source is None:
            files[need.setting] = need.local
            continue
        try:
            files[need.setting] = resolve(need, offline)
        except WeightsMissing:
            files[need.setting] = None
            log.warning("%s weights are not cached and this run is offline; to fetch them: %s", need.what, prefetch)
        except WeightsError as exc:
            files[need.setting] = None
            log.warning("%s", exc)
    return files


def missing_message(need: Need, offline: bool, prefetch: str) -> str:
    """The part of a start-up error that says where the file would have come from and how to prefetch it."""
    if need.source is None:
        return ""
    if offline:
        why = "offline (offline=true or HF_HUB_OFFLINE=1), so nothing was downloaded"
        return (
            f"It is not in the cache either ({need.source.destination()}, from {need.source.describe()}) and this "
            f"run is {why}.\nFetch it where there is internet (then copy HF_HOME / TORCH_HOME here): {prefetch}"
        )
    return f"Source: {need.source.describe()} -> {need.source.destination()}"


def as_setup_error(exc: WeightsError, prefetch: str) -> SetupError:
    return SetupError(f"{exc}\nRetry, or fetch it ahead of time: {prefetch}")
