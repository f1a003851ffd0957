"""One experiment: every image of the (sharded) data set restored, saved, scored; resumable at any point."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from evaluation import ImageScorer, MetricResult, describe, distribution_between_files
from imaging import image_row, restoration_grid, save_image
from operators import Inpainting
from solvers import SOLVERS, DivergenceError, StepInfo

from .build import (
    build_operator,
    build_prior,
    build_solver,
    check_operator,
    check_pag_layers,
    prior_image_size,
    select_device,
    select_dtype,
)
from .config import Settings, resolve_settings
from .data import DataSet, Sample, build_dataset
from .errors import SetupError
from .seeds import image_streams
from .store import TaskFolder
from .weights import is_offline, metric_files, prefetch_command

log = logging.getLogger("runner")

#: keys of the data config that choose *which* images run, not what their results are
_DATA_SELECTION_KEYS = ("limit", "shard", "num_shards")


def experiment_identity(cfg: DictConfig, settings: Settings, size: int) -> dict[str, Any]:
    """The settings that determine each image's result (not which images run, nor where or how fast)."""
    c = OmegaConf.to_container(cfg, resolve=True)
    # the chosen solver's own options (step sizes and num_steps are in the effective settings)
    spec = SOLVERS[settings.solver]
    solver = {"name": settings.solver, **{k: c["solver"].get(k) for k in spec.options}}
    effective = {k: v for k, v in settings.to_dict().items() if k != "sources"}
    return {
        "task": c["task"],
        "prior": {k: v for k, v in c["prior"].items() if k not in ("title", "download", "weights", "features")},
        "solver": solver,
        "settings": effective,
        "data": {k: v for k, v in c["data"].items() if k not in _DATA_SELECTION_KEYS},
        "seed": c["seed"],
        "dtype": c["dtype"],
        "image_size": size,
        "metrics": {k: c["metrics"][k] for k in ("size", "recon")} | {"lpips_net": c["metrics"]["lpips"]["net"]},
    }


def scored_recon(cfg: DictConfig, masked: bool, reference: bool) -> str:
    """What the metrics score: ``raw`` (the restoration) or ``pasted`` (the observed pixels of the ground truth
    pasted in, PSLD_PAG's saved output for inpainting). ``metrics.recon=null``: pasted for inpainting under
    ``solver.reference=true``, else raw."""
    on = cfg.metrics.get("recon")
    if on is None:
        return "pasted" if masked and reference else "raw"
    if str(on) not in ("raw", "pasted"):
        raise SetupError(f"metrics.recon must be raw, pasted or null, got {on!r}")
    if str(on) == "pasted" and not masked:
        raise SetupError(f"metrics.recon=pasted needs an inpainting task (a mask to paste into); task={cfg.task.name}")
    return str(on)


def paste(operator: Inpainting, recon: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """mask * label + (1 - mask) * recon, at the working resolution (PSLD_PAG, stable-diffusion/scripts/inverse.py)."""
    mask = operator.mask.detach().float().cpu()
    return mask * labels.float() + (1 - mask) * recon


def measurement_summary(exp: Experiment) -> dict[str, Any]:
    """The measurement's size and its scale relative to the evaluated images (the source size: FFHQ's 256 px for
    SD1.5, whose working images are upsampled to 512): a super-resolution factor as the metrics see it."""
    height = exp.measurement_shape[0]
    source = exp.metrics_size if exp.metrics_size is not None else exp.size
    return {
        "shape": list(exp.measurement_shape),
        "working_size": exp.size,
        "source_size": source,
        "factor_vs_source": source / height,
    }


@dataclass
class Restored:
    """One restored image and what it came from."""

    sample: Sample
    label: torch.Tensor  # at the working resolution (what was measured)
    measurement: torch.Tensor
    recon: torch.Tensor
    frames: list[torch.Tensor]
    pasted: torch.Tensor | None = None  # inpainting: mask * label + (1 - mask) * recon


class Experiment:
    """Everything one run needs, built and checked at start-up (``SetupError`` for anything wrong)."""

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.settings = resolve_settings(cfg)
        self.device, self.dtype = select_device(str(cfg.device)), select_dtype(str(cfg.dtype))
        if int(cfg.batch_size) < 1:
            raise SetupError(f"batch_size must be >= 1, got {cfg.batch_size}")
        if int(cfg.progress_every) < 0:
            raise SetupError(f"progress_every must be >= 0 (0: no progress images), got {cfg.progress_every}")
        size = int(cfg.prior.image_size)
        #: the solver's reproduction switch also selects the reference code's task settings and outputs
        self.reference = bool(cfg.solver.get("reference", False))
        operator, self.measurement_shape = check_operator(cfg.task, size, self.device, self.dtype, self.reference)
        self.recon_kind = scored_recon(cfg, isinstance(operator, Inpainting), self.reference)
        metrics = cfg.metrics
        self.metrics_size = None if metrics.size is None else int(metrics.size)
        # PSLD_PAG upsamples its 256 px data to 512 with nearest; ours: bicubic
        resample = "nearest" if self.reference and bool(cfg.prior.latent) else "bicubic"
        self.data: DataSet = build_dataset(cfg.data, size, self.metrics_size, resample)
        self.offline, prefetch = is_offline(cfg), prefetch_command(cfg)
        self.prior = build_prior(cfg.prior, self.device, self.dtype, offline=self.offline, prefetch=prefetch)
        self.size = prior_image_size(self.prior)
        if self.size != size:
            raise SetupError(
                f"prior={cfg.prior.name}: the network works at {self.size} px but prior.image_size={size}; "
                f"set prior.image_size={self.size}"
            )
        check_pag_layers(self.prior, self.settings)
        self.folder = TaskFolder(Path(str(cfg.out_dir)) / str(cfg.task.name))
        self.folder.claim(experiment_identity(cfg, self.settings, self.size))
        self.scorer = None
        #: the metric networks' weights: given, cached, or fetched now (None: the metric says why it is unavailable)
        self.metric_weights = metric_files(cfg, self.offline, prefetch)
        if metrics.enabled:
            self.scorer = ImageScorer(
                self.metrics_size,
                lpips=bool(metrics.lpips.enabled),
                lpips_net=str(metrics.lpips.net),
                lpips_weights=self.metric_weights.get("metrics.lpips.weights") or metrics.lpips.weights,
                device=self.device,
            )

    # -- one batch --------------------------------------------------------------------------------------------
    def restore(self, samples: list[Sample], labels: torch.Tensor) -> list[Restored]:
        """Measure and restore ``labels`` (B, 3, H, W); raises ``DivergenceError``."""
        cfg = self.cfg
        streams = image_streams(int(cfg.seed), [s.index for s in samples])
        operator = build_operator(cfg.task, self.size, streams.operator, self.reference).to(self.device)
        x = labels.to(self.device, self.dtype)
        y = operator.measure(x, streams.noise)
        solver = build_solver(self.settings, cfg.solver, self.prior, operator, progress=bool(cfg.show_progress))
        frames: list[list[torch.Tensor]] = [[] for _ in samples]

        def keep_frame(info: StepInfo) -> None:
            x0_hat = info.x0_hat
            if self.prior.is_latent:
                with torch.no_grad():
                    x0_hat = self.prior.decode(x0_hat)
            for b, frame in enumerate(x0_hat.detach().float().clamp(-1, 1).cpu()):
                frames[b].append(frame)

        every = int(cfg.progress_every)
        recon = solver.restore(y, streams.sampler, callback=keep_frame if every > 0 else None, callback_every=every)
        recon = recon.detach().float().cpu()
        pasted = paste(operator, recon, labels) if isinstance(operator, Inpainting) else None
        return [
            Restored(
                s,
                labels[b],
                y[b].detach().float().cpu(),
                recon[b],
                frames[b],
                None if pasted is None else pasted[b],
            )
            for b, s in enumerate(samples)
        ]

    def save(self, result: Restored, seconds: float) -> dict[str, Any]:
        """Write the image's files, score it, and return its record (written last by the caller)."""
        folder, save = self.folder, self.cfg.save
        name = result.sample.name
        # the metrics' ground truth: the source image at the evaluation size (not the working label resized back)
        label = self.data.load_label(result.sample)
        save_image(result.measurement, folder.image_path("input", name))
        save_image(label, folder.image_path("label", name))
        save_image(result.recon, folder.image_path("recon", name))
        if result.pasted is not None:
            save_image(result.pasted, folder.image_path("pasted", name))
        if save.progress and result.frames:
            save_image(image_row(result.frames), folder.image_path("progress", name))
        if save.grid:
            frames = result.frames if save.grid_progress else []
            grid = restoration_grid(result.label, result.measurement, result.recon, frames)
            save_image(grid, folder.image_path("grid", name))
        scores: dict[str, Any] = {"psnr": None, "ssim": None, "lpips": None, "lpips_note": "metrics disabled"}
        if self.scorer is not None:
            scored = result.pasted if self.recon_kind == "pasted" else result.recon
            scores = self.scorer(scored[None], label[None])[0]
        return {
            "name": name,
            "index": result.sample.index,
            "status": "done",
            **scores,
            "seconds": round(seconds, 3),
            "error": "",
            "source": result.sample.source,
        }


def _needs_work(folder: TaskFolder, record: dict[str, Any] | None, retry_failed: bool) -> bool:
    if record is None:
        return True
    status = record["status"]
    if status == "done":
        return not folder.is_complete(record)
    if status == "failed":
        return retry_failed
    return True  # skipped at load time: try again (cheap; the file may have been fixed)


def _failed(sample: Sample, error: Exception, seconds: float) -> dict[str, Any]:
    return {
        "name": sample.name,
        "index": sample.index,
        "status": "failed",
        "psnr": None,
        "ssim": None,
        "lpips": None,
        "lpips_note": "",
        "seconds": round(seconds, 3),
        "error": f"{type(error).__name__}: {error}",
        "source": sample.source,
    }


def _skipped(name: str, index: int | None, reason: str, source: str = "") -> dict[str, Any]:
    return {"name": name, "index": index, "status": "skipped", "error": reason, "source": source}


def _in_set(records: dict[str, dict[str, Any]], data: DataSet) -> dict[str, dict[str, Any]]:
    """The records of this run's set (the folder may hold more, e.g. from an earlier run with a larger limit)."""
    names = set(data.names) | {s.name for s in data.skipped}
    return {name: r for name, r in records.items() if name in names}


def summarize(
    exp: Experiment, records: dict[str, dict[str, Any]], fid: MetricResult, kid: MetricResult | None = None
) -> dict[str, Any]:
    """summary.json: counts, metric statistics, FID / KID (with their feature extractor), settings, resolved config."""
    rows = list(records.values())
    done = [r for r in rows if r["status"] == "done"]
    failed = [r for r in rows if r["status"] == "failed"]
    skipped = [r for r in rows if r["status"] == "skipped"]
    finished = len(done) + len(failed) + len([r for r in skipped if r.get("index") is not None])
    lpips = describe([r.get("lpips") for r in done])
    if lpips["count"] < len(done):
        notes = sorted({r.get("lpips_note", "") for r in done if r.get("lpips") is None} - {""})
        lpips["unavailable"] = notes[0].removeprefix("unavailable: ") if notes else "not computed"
    config = OmegaConf.to_container(exp.cfg, resolve=True)
    config.pop("hydra", None)
    return {
        "task": str(exp.cfg.task.name),
        "folder": str(exp.folder.root),
        "counts": {
            "images": exp.data.total,
            "done": len(done),
            "failed": len(failed),
            "skipped": len(skipped),
            "remaining": max(exp.data.total - finished, 0),
        },
        "reference": exp.reference,
        "measurement": measurement_summary(exp),
        "metrics": {
            "recon": exp.recon_kind,
            "size": exp.metrics_size if exp.metrics_size is not None else exp.size,
            "psnr": describe([r.get("psnr") for r in done]),
            "ssim": describe([r.get("ssim") for r in done]),
            "lpips": lpips,
            "lpips_net": str(exp.cfg.metrics.lpips.net),
            "features": str(exp.cfg.metrics.features),
            "fid": fid.to_dict(),
            **({"kid": kid.to_dict()} if kid is not None else {}),
            "seconds": describe([r.get("seconds") for r in done]),
        },
        "failed": [{"name": r["name"], "error": r.get("error", "")} for r in failed],
        "skipped": [{"name": r["name"], "reason": r.get("error", "")} for r in skipped],
        "settings": exp.settings.to_dict(),
        "config": config,
    }


def compute_fid(exp: Experiment, records: dict[str, dict[str, Any]]) -> dict[str, MetricResult]:
    """FID and KID (``{"fid", "kid"}``) of recon vs label over the whole set on ``metrics.features``, once every
    image of it has a result; else why not."""
    cfg = exp.cfg.metrics
    features = str(cfg.features)

    def unavailable(reason: str) -> dict[str, MetricResult]:
        return {m: MetricResult.unavailable(m, reason, extractor=features) for m in ("fid", "kid")}

    if not cfg.enabled or not cfg.fid.enabled:
        return unavailable("disabled by configuration (metrics.fid.enabled=false)")
    done = sorted((r for r in records.values() if r["status"] == "done"), key=lambda r: r["index"])
    finished = sum(1 for r in records.values() if r.get("index") is not None)
    remaining = exp.data.total - finished
    if remaining > 0:
        return unavailable(
            f"not computed: {remaining} of {exp.data.total} images have no result yet (resume this run, or wait for "
            f"the other shards, then rerun the same command or scripts/evaluate.py {exp.folder.root})"
        )
    folder = exp.folder
    return distribution_between_files(
        [folder.image_path("pasted" if exp.recon_kind == "pasted" else "recon", r["name"]) for r in done],
        [folder.image_path("label", r["name"]) for r in done],
        features=features,
        size=exp.metrics_size,
        weights=exp.metric_weights.get("metrics.fid.weights") or cfg.fid.weights,
        dims=int(cfg.fid.dims),
        batch_size=int(cfg.fid.batch_size),
        device=exp.device,
        kid_subsets=int(cfg.kid.subsets),
        kid_subset_size=None if cfg.kid.subset_size is None else int(cfg.kid.subset_size),
        kid_seed=int(exp.cfg.seed),
    )


def one_line(summary: dict[str, Any]) -> str:
    """``box_inpaint: 3/3 done, 0 failed, 0 skipped | PSNR 21.30 dB | SSIM 0.6100 | LPIPS ... | FID ... -> folder``."""
    c, m = summary["counts"], summary["metrics"]

    def mean(key: str, fmt: str) -> str:
        value = m.get(key, {}).get("mean") if key not in ("fid", "kid") else m.get(key, {}).get("value")
        return "unavailable" if value is None else format(value, fmt)

    kid = mean("kid", ".4f") + (f" ± {m['kid']['std']:.4f}" if m.get("kid", {}).get("std") is not None else "")
    remaining = f", {c['remaining']} remaining" if c["remaining"] else ""
    return (
        f"{summary['task']}: {c['done']}/{c['images']} done, {c['failed']} failed, {c['skipped']} skipped{remaining}"
        f" | PSNR {mean('psnr', '.2f')} dB | SSIM {mean('ssim', '.4f')} | LPIPS {mean('lpips', '.4f')}"
        f" | FID {mean('fid', '.2f')} | KID {kid} ({m.get('features', 'inception')} features) -> {summary['folder']}"
    )


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run the experiment of ``cfg`` (composed from ``conf/``); returns the summary (also in summary.json)."""
    exp = Experiment(cfg)
    folder, data = exp.folder, exp.data
    log.info("%s", exp.settings.describe())
    log.info("data: %s; output: %s", data.description, folder.root)
    if exp.scorer is not None and exp.scorer.lpips_model is None:
        log.warning("LPIPS unavailable: %s", exp.scorer.lpips_reason)

    records = folder.read_records()
    listing_skips = {s.name: s.reason for s in data.skipped}
    for name, record in list(records.items()):  # a file fixed since the last run is no longer skipped
        if record["status"] == "skipped" and record.get("index") is None and name not in listing_skips:
            folder.record_path(name).unlink(missing_ok=True)
            del records[name]
    for name, reason in listing_skips.items():
        if records.get(name) != (record := _skipped(name, None, reason)):
            folder.write_record(record)
            records[name] = record

    pending = [s for s in data.samples if _needs_work(folder, records.get(s.name), bool(cfg.retry_failed))]
    finished_before = len(data.samples) - len(pending)
    if cfg.max_images is not None:
        pending = pending[: max(int(cfg.max_images), 0)]
    if finished_before:
        log.info("resuming: %d of this shard's %d images already have results", finished_before, len(data.samples))

    batch_size = int(cfg.batch_size)
    bar = tqdm(total=len(pending), desc=str(cfg.task.name), unit="img", disable=not cfg.show_progress)
    for start in range(0, len(pending), batch_size):
        batch = pending[start : start + batch_size]
        samples, labels = [], []
        for sample in batch:
            try:
                labels.append(data.load(sample))
                samples.append(sample)
            except Exception as exc:  # decoding failed: skip the image, record why, go on
                log.warning("skipping %s: cannot read %s (%s: %s)", sample.name, sample.source, type(exc).__name__, exc)
                reason = f"unreadable image ({type(exc).__name__}: {exc})"
                record = _skipped(sample.name, sample.index, reason, sample.source)
                folder.write_record(record)
                records[sample.name] = record
                bar.update(1)
        groups = [(samples, labels)] if samples else []
        while groups:
            group_samples, group_labels = groups.pop(0)
            tic = time.perf_counter()
            try:
                results = exp.restore(group_samples, torch.stack(group_labels))
            except DivergenceError as exc:
                if len(group_samples) > 1:  # find which image diverged: each alone gives the same numbers
                    groups = [([s], [x]) for s, x in zip(group_samples, group_labels)] + groups
                    continue
                log.warning("%s diverged: %s", group_samples[0].name, exc)
                record = _failed(group_samples[0], exc, time.perf_counter() - tic)
                folder.write_record(record)
                records[record["name"]] = record
                bar.update(1)
                continue
            seconds = (time.perf_counter() - tic) / len(results)
            for result in results:
                record = exp.save(result, seconds)
                folder.write_record(record)
                records[record["name"]] = record
                bar.update(1)
        folder.write_metrics_csv(_in_set(records, data).values())
    bar.close()

    records = _in_set(folder.read_records(), data)  # other shards' results too
    folder.write_metrics_csv(records.values())
    distribution = compute_fid(exp, records)
    summary = summarize(exp, records, distribution["fid"], distribution["kid"])
    folder.write_summary(summary)
    log.info("%s", one_line(summary))
    if summary["metrics"]["fid"].get("value") is None:
        log.info("FID/KID unavailable: %s", summary["metrics"]["fid"]["unavailable"])
    return summary
