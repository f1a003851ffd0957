"""One experiment: every image of the (sharded) data set restored, saved, scored; resumable at any point."""

from __future__ import annotations

import functools
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from tqdm import tqdm

from evaluation import ImageScorer, MetricResult, describe, distribution_between_files
from imaging import image_row, restoration_grid, save_image
from operators import Operator
from solvers import SOLVERS, DivergenceError, StepInfo, restore_best_of
from solvers.chain import should_call

from .build import (
    build_operator,
    build_prior,
    build_solver,
    check_operator,
    check_pag_layers,
    check_solver_fits,
    prior_image_size,
    select_device,
    select_dtype,
)
from .config import Settings, check_compatible, operator_params, resolve_settings, task_noise
from .data import DataSet, Sample, build_dataset
from .errors import Interrupted, SetupError
from .identity import experiment_identity, task_as_run, task_folder
from .seeds import image_streams, restart_generators
from .store import TaskFolder
from .validate import validate
from .weights import is_offline, metric_files, prefetch_command

log = logging.getLogger("runner")


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


def paste(operator: Operator, recon: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """mask * label + (1 - mask) * recon, at the working resolution (PSLD_PAG, stable-diffusion/scripts/inverse.py),
    for an operator with an ``observed_mask`` (inpainting)."""
    mask = operator.observed_mask.detach().float().cpu()
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
    restart: int = 0  # solver.restarts > 1: the kept restart (0-based)
    residuals: list[float] | None = None  # solver.restarts > 1: ||y - A(x_hat)||_2 of every restart


def task_dir(cfg: DictConfig) -> Path:
    """``<out_dir>/<task folder>``: where the run of ``cfg`` writes (see ``runner.identity``)."""
    return Path(str(cfg.out_dir)) / task_folder(_root_=cfg)


def domain_note(cfg: DictConfig, settings: Settings, data: DataSet, size: int) -> str | None:
    """A warning when the prior's step-size row (its training domain) is not what the data are, with the sizes."""
    if settings.sources.get("dataset") == "data.dataset" or str(cfg.data.dataset) == settings.dataset:
        return None
    sizes = ""
    if data.samples and str(cfg.data.kind) == "folder":
        try:
            with Image.open(data.samples[0].source) as image:
                sizes = f"from {image.width}x{image.height} px (the first one) "
        except OSError:
            pass
    # a named data set is known to hold its domain's images; a folder can hold anything: say only where they are
    if str(cfg.data.kind) == "folder":
        images = f"the images of data.path={cfg.data.path} are"
    else:
        images = f"data={cfg.data.name} holds {cfg.data.dataset} images; they are"
    return (
        f"{images} resized {sizes}to {size} px for "
        f"prior={cfg.prior.name}, trained on {settings.dataset}, and restored with the steps.{settings.solver}."
        f"{settings.dataset} row ({settings.sources['dataset']}; steps.row=... chooses another)"
    )


@dataclass
class Plan:
    """What a run would do, worked out without loading the prior or writing anything."""

    settings: Settings
    device: torch.device
    dtype: torch.dtype
    size: int
    data: DataSet
    folder: TaskFolder
    note: str | None
    reference: bool  # the solver's reproduction switch: also the reference code's task settings and outputs
    measurement_shape: tuple[int, ...]
    recon_kind: str  # what the metrics score: raw | pasted
    metrics_size: int | None


def plan(cfg: DictConfig, fetch: bool = True) -> Plan:
    """Validate every setting, resolve the step sizes, list the data; ``SetupError`` for anything wrong.
    ``fetch=False`` (a dry run): a Hub data set that is not cached is listed as pending, not downloaded."""
    validate(cfg)
    solver = check_compatible(cfg)
    device, dtype = select_device(str(cfg.device)), select_dtype(str(cfg.dtype))
    size = int(cfg.prior.image_size)
    reference = bool(cfg.solver.get("reference", False))
    operator, measurement_shape = check_operator(cfg.task, size, device, dtype, reference, solver)
    # before the step sizes: an incompatible pair is told so (and who can), not asked for step sizes it has no row of
    check_solver_fits(solver, operator, str(cfg.task.name))
    settings = resolve_settings(cfg)
    recon_kind = scored_recon(cfg, operator.observed_mask is not None, reference)
    metrics_size = None if cfg.metrics.size is None else int(cfg.metrics.size)
    resample = SOLVERS[settings.solver].reference_resample if reference else "bicubic"  # PSLD_PAG's: nearest
    data = build_dataset(
        cfg.data,
        size,
        metrics_size,
        resample,
        int(cfg.batch_size),
        offline=is_offline(cfg),
        prefetch=prefetch_command(cfg),
        fetch=fetch,
    )
    if data.total == 0 and not data.pending:
        reasons = "; ".join(f"{s.name}: {s.reason}" for s in data.skipped[:3])
        raise SetupError(
            f"data.path={cfg.data.get('path')}: no usable image ({len(data.skipped)} files skipped"
            + (f": {reasons}" if reasons else "")
            + "); give a folder holding PNG/JPEG images"
        )
    return Plan(
        settings,
        device,
        dtype,
        size,
        data,
        TaskFolder(task_dir(cfg)),
        domain_note(cfg, settings, data, size),
        reference,
        measurement_shape,
        recon_kind,
        metrics_size,
    )


class Experiment:
    """Everything one run needs, built and checked at start-up (``SetupError`` for anything wrong)."""

    def __init__(self, cfg: DictConfig, checked: Plan | None = None):
        self.cfg = cfg
        checked = checked or plan(cfg)
        self.settings, self.device, self.dtype = checked.settings, checked.device, checked.dtype
        self.data: DataSet = checked.data
        self.reference, self.measurement_shape = checked.reference, checked.measurement_shape
        self.recon_kind, self.metrics_size = checked.recon_kind, checked.metrics_size
        size = checked.size
        self.offline, prefetch = is_offline(cfg), prefetch_command(cfg)
        self.prior = build_prior(cfg.prior, self.device, self.dtype, offline=self.offline, prefetch=prefetch)
        self.size = prior_image_size(self.prior)
        if self.size != size:
            raise SetupError(
                f"prior={cfg.prior.name}: the network works at {self.size} px but prior.image_size={size}; "
                f"set prior.image_size={self.size}"
            )
        check_pag_layers(self.prior, self.settings)
        self.folder, self.note = checked.folder, checked.note
        self.folder.claim(experiment_identity(cfg, self.settings, self.size))
        self.scorer = None
        #: the metric networks' weights: given, cached, or fetched now (None: the metric says why it is unavailable)
        self.metric_weights = metric_files(cfg, self.offline, prefetch)
        metrics = cfg.metrics
        if metrics.enabled:
            self.scorer = ImageScorer(
                self.metrics_size,
                lpips=bool(metrics.lpips.enabled),
                lpips_net=str(metrics.lpips.net),
                lpips_weights=self.metric_weights.get("metrics.lpips.weights") or metrics.lpips.weights,
                device=self.device,
            )

    # -- one batch --------------------------------------------------------------------------------------------
    @property
    def restarts(self) -> int:
        """``solver.restarts``: runs per image, the one whose measurement fits best kept (1: a single run)."""
        return int(self.cfg.solver.get("restarts", 1))

    def restore(
        self,
        samples: list[Sample],
        labels: torch.Tensor,
        on_step: Callable[[], None] | None = None,
        on_restart: Callable[[int, int], None] | None = None,
    ):
        """Measure and restore ``labels`` (B, 3, H, W); ``on_step()`` after every solver step, ``on_restart(k, n)``
        before restart k of n (``solver.restarts``). Raises ``DivergenceError``."""
        cfg = self.cfg
        indices = [s.index for s in samples]
        streams = image_streams(int(cfg.seed), indices)
        operator = build_operator(cfg.task, self.size, streams.operator, self.reference, self.settings.solver)
        operator = operator.to(self.device)
        x = labels.to(self.device, self.dtype)
        y = operator.measure(x, streams.noise)
        solver = build_solver(self.settings, cfg.solver, self.prior, operator, progress=False)  # the run's bar
        restarts = self.restarts
        # frames[k][b]: the progress frames of restart k of image b (the kept restart's are saved)
        frames: list[list[list[torch.Tensor]]] = [[[] for _ in samples] for _ in range(restarts)]
        current = [0]
        every = int(cfg.progress_every)

        def restart_begins(k: int, n: int) -> None:
            current[0] = k
            if on_restart is not None:
                on_restart(k, n)

        def step_done(info: StepInfo) -> None:
            if on_step is not None:
                on_step()
            if not should_call(info.i, info.num_steps, every):
                return
            x0_hat = info.x0_hat
            if self.prior.is_latent:
                with torch.no_grad():
                    x0_hat = self.prior.decode(x0_hat)
            for b, frame in enumerate(x0_hat.detach().float().clamp(-1, 1).cpu()):
                frames[current[0]][b].append(frame)

        # restart 0 draws from streams.sampler's seeds: solver.restarts=1 is exactly one restore
        generators = restart_generators(int(cfg.seed), indices, restarts)
        kept = restore_best_of(solver, y, generators, on_restart=restart_begins, callback=step_done, callback_every=1)
        recon = kept.x_hat.detach().float().cpu()
        pasted = paste(operator, recon, labels) if operator.observed_mask is not None else None
        return [
            Restored(
                s,
                labels[b],
                y[b].detach().float().cpu(),
                recon[b],
                frames[kept.best[b]][b],
                None if pasted is None else pasted[b],
                restart=kept.best[b],
                residuals=kept.residuals[:, b].tolist() if restarts > 1 else None,
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
            # solver.restarts > 1: which restart was kept, and ||y - A(x_hat)||_2 of each (the smallest wins)
            **({} if result.residuals is None else {"restart": result.restart, "residuals": result.residuals}),
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


def _batch_needs_work(exp: Experiment, batch: list[Sample], records: dict[str, dict[str, Any]]) -> bool:
    """Whether any image of ``batch`` lacks a final result: then the whole batch is restored again. An image
    skipped at load time counts as final while its file still cannot be decoded (checked now: cheap), so a broken
    file does not make every rerun redo its batch."""
    retry_failed = bool(exp.cfg.retry_failed)
    for sample in batch:
        record = records.get(sample.name)
        if record is not None and record["status"] == "skipped":
            try:
                exp.data.load(sample)
            except Exception:  # still unreadable: the same batch as before
                continue
            return True
        if _needs_work(exp.folder, record, retry_failed):
            return True
    return False


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
    # the operator settings that ran, at the working size
    config["task"] = task_as_run(exp.cfg.task, exp.size, exp.reference, exp.settings.solver)
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


def dry_run(cfg: DictConfig) -> str:
    """The resolved settings of ``cfg``, each with where it came from, and the folder: nothing is loaded or written."""
    p = plan(cfg, fetch=False)
    st, src = p.settings, p.settings.sources
    lines = [f"dry run of {cfg.task.name} (nothing loaded or written):"]

    def line(key: str, value: Any, source: str) -> None:
        lines.append(f"  {key:<22} {value!s:<40} <- {source}")

    line("step-size row", st.dataset, src["dataset"])
    line("solver", st.solver, "solver.name")
    for key, value in st.step_sizes.items():
        line(f"solver.{key}", f"{value:g}", src[key])
    line("solver.num_steps", st.num_steps, src["num_steps"])
    if st.pag is None:
        line("pag", "off", "pag.enabled=false and pag.scale unset or 0")
    else:
        line("pag.scale", f"{st.pag.scale:g}", src["pag.scale"])
        line("pag.layers", ",".join(st.pag.layers), src["pag.layers"])
    params = operator_params(cfg.task, p.size, p.reference, p.settings.solver)
    line(f"task params at {p.size} px", params, f"conf/task/{cfg.task.name}.yaml")
    if p.reference:  # the reference code's task settings may replace the task's (SolverSpec.reference_tasks)
        line("task noise", task_noise(cfg.task, True, st.solver), f"solver.reference ({st.solver}'s reference code)")
    line("seed", cfg.seed, "seed")
    line("device / dtype", f"{p.device} / {cfg.dtype}", "device, dtype")
    line("batch_size / threads", f"{cfg.batch_size} / {cfg.threads}", "batch_size, threads")
    skipped = f" ({len(p.data.skipped)} files skipped)" if p.data.skipped else ""
    lines.append(f"  data: {p.data.description}{skipped}")
    finished = sum(1 for r in p.folder.read_records().values() if r["status"] in ("done", "failed"))
    state = f"resumes: {finished} images have results" if finished else "new"
    lines.append(f"  folder: {p.folder.root} ({state})")
    if p.note:
        lines.append(f"  warning: {p.note}")
    return "\n".join(lines)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run the experiment of ``cfg`` (composed from ``conf/``); returns the summary (also in summary.json).

    ``dry_run=true``: log what would run (``dry_run``) and return ``{}``. Ctrl-C raises ``Interrupted`` saying
    what finished. ``threads`` sets torch's CPU threads for the run (restored afterwards)."""
    if bool(OmegaConf.select(cfg, "dry_run", default=False)):
        report = dry_run(cfg)
        print(report, flush=True)
        return {}
    checked = plan(cfg)
    threads = torch.get_num_threads()
    if cfg.get("threads") is not None:
        torch.set_num_threads(int(cfg.threads))
    try:
        exp = Experiment(cfg, checked)
        return _run(exp)
    finally:
        torch.set_num_threads(threads)


def _hydra_files(folder: TaskFolder, cfg: DictConfig) -> logging.Handler | None:
    """Under ``@hydra.main``: the composed config in ``.hydra/`` and a log file, written once the run is known to
    be valid (``hydra.output_subdir`` is null and Hydra's job logging console-only, so a failed start writes
    nothing). Returns the log handler to remove at the end."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    folder.root.mkdir(parents=True, exist_ok=True)
    (folder.root / ".hydra").mkdir(exist_ok=True)
    OmegaConf.save(cfg, folder.root / ".hydra" / "config.yaml")
    OmegaConf.save(OmegaConf.create(list(hydra_cfg.overrides.task)), folder.root / ".hydra" / "overrides.yaml")
    handler = logging.FileHandler(folder.root / f"{hydra_cfg.job.name}.log")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler


def _run(exp: Experiment) -> dict[str, Any]:
    handler = _hydra_files(exp.folder, exp.cfg)
    try:
        return _run_logged(exp)
    finally:
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()


def _run_logged(exp: Experiment) -> dict[str, Any]:
    cfg, folder, data = exp.cfg, exp.folder, exp.data
    log.info("%s", exp.settings.describe())
    log.info("data: %s; output: %s", data.description, folder.root)
    if exp.note:
        log.warning("%s", exp.note)

    records = folder.read_records()
    listing_skips = {s.name: s.reason for s in data.skipped}
    for name, record in list(records.items()):  # a file fixed since the last run is no longer skipped
        if record["status"] == "skipped" and record.get("index") is None and name not in listing_skips:
            folder.forget(name)
            del records[name]
    for name, reason in listing_skips.items():
        if records.get(name) != (record := _skipped(name, None, reason)):
            folder.write_record(record)
            records[name] = record

    # whole batches (runner.data): one with any image still to do is restored again whole, so that every image
    # is computed in the batch an uninterrupted run gives it
    batches = data.batches()
    pending = [batch for batch in batches if _batch_needs_work(exp, batch, records)]
    if len(pending) < len(batches):
        log.info(
            "resuming: %d of this shard's %d batches (batch_size=%d) are complete; an incomplete batch is redone whole",
            len(batches) - len(pending),
            len(batches),
            int(cfg.batch_size),
        )
    _warn_other_batch_size(exp, records, pending)
    if cfg.max_images is not None:  # whole batches: the first ceil(max_images / batch_size) pending ones
        pending = pending[: math.ceil(max(int(cfg.max_images), 0) / int(cfg.batch_size))]

    try:
        _restore_pending(exp, pending, records)
    except KeyboardInterrupt:
        finished = sum(1 for r in _in_set(folder.read_records(), data).values() if r["status"] in ("done", "failed"))
        folder.write_metrics_csv(_in_set(folder.read_records(), data).values())
        raise Interrupted(finished, data.total, folder.root) from None

    records = _in_set(folder.read_records(), data)  # other shards' results too
    folder.write_metrics_csv(records.values())
    distribution = compute_fid(exp, records)
    summary = summarize(exp, records, distribution["fid"], distribution["kid"])
    folder.write_summary(summary)
    log.info("%s", one_line(summary))
    if summary["metrics"]["lpips"].get("unavailable"):
        log.info("LPIPS unavailable: %s", summary["metrics"]["lpips"]["unavailable"])
    if summary["metrics"]["fid"].get("value") is None:
        log.info("FID/KID unavailable: %s", summary["metrics"]["fid"]["unavailable"])
    return summary


def _warn_other_batch_size(exp: Experiment, records: dict[str, dict[str, Any]], pending: list[list[Sample]]) -> None:
    """A warning when the batches about to run use another ``batch_size`` than the folder's results: the folder name
    leaves it out, and a float32 batch of other size rounds differently (the records say which size made them)."""
    if not pending:
        return
    names = set(exp.data.names)
    sizes = {r["batch_size"] for n, r in records.items() if n in names and r["status"] == "done" and "batch_size" in r}
    others = sorted(sizes - {int(exp.cfg.batch_size)})
    if others:
        log.warning(
            "this folder's results were restored with batch_size=%s; this run restores with batch_size=%d: the "
            "images it restores may differ from an uninterrupted run with one batch size by float rounding",
            ",".join(map(str, others)),
            int(exp.cfg.batch_size),
        )


def _restore_pending(exp: Experiment, pending: list[list[Sample]], records: dict[str, dict[str, Any]]) -> None:
    """Restore, save and record the batches ``pending``, each whole (``records`` is updated)."""
    cfg, folder, data = exp.cfg, exp.folder, exp.data
    steps = exp.settings.num_steps * exp.restarts  # per image: every restart's steps
    images = sum(len(batch) for batch in pending)
    # one bar over the job, in image-steps, so it moves (and its ETA holds) while a batch of images is sampled;
    # to a file or pipe it writes plain lines now and then rather than a redrawn line
    interactive = sys.stderr.isatty()
    with tqdm(
        total=images * steps,
        desc=f"{cfg.task.name} ({images} images x {steps} steps)"
        + (f" ({exp.restarts} restarts x {exp.settings.num_steps})" if exp.restarts > 1 else ""),
        unit="step",
        disable=not cfg.show_progress,
        mininterval=0.5 if interactive else 30,
        ascii=not interactive,
    ) as bar:
        for batch in pending:
            samples, labels = [], []
            for sample in batch:
                try:
                    labels.append(data.load(sample))
                    samples.append(sample)
                except Exception as exc:  # decoding failed: skip the image, record why, go on
                    reason = f"unreadable image ({type(exc).__name__}: {exc})"
                    log.warning("skipping %s: cannot read %s (%s)", sample.name, sample.source, reason)
                    record = _skipped(sample.name, sample.index, reason, sample.source)
                    folder.write_record(record)
                    records[sample.name] = record
                    bar.update(steps)
            groups = [(samples, labels)] if samples else []
            while groups:
                group_samples, group_labels = groups.pop(0)
                tic, start_n = time.perf_counter(), bar.n
                try:
                    advance = functools.partial(bar.update, len(group_samples))  # one step of each image
                    results = exp.restore(
                        group_samples,
                        torch.stack(group_labels),
                        advance,
                        lambda k, n: bar.set_postfix_str(f"restart {k + 1}/{n}") if n > 1 else None,
                    )
                except DivergenceError as exc:
                    bar.update(start_n - bar.n)  # back to where the group started: its steps are redone or failed
                    if len(group_samples) > 1:  # find which image diverged: each alone (a rerun does the same)
                        groups = [([s], [x]) for s, x in zip(group_samples, group_labels)] + groups
                        continue
                    log.warning("%s diverged: %s", group_samples[0].name, exc)
                    record = _failed(group_samples[0], exc, time.perf_counter() - tic)
                    folder.write_record(record)
                    records[record["name"]] = record
                    bar.update(steps)
                    continue
                seconds = (time.perf_counter() - tic) / len(results)
                for result in results:  # the bar has counted their steps already
                    # an image of a batch redone whole may have files and a record: the record goes first, so a
                    # record still means that all of its image's files are in place
                    folder.forget(result.sample.name)
                    record = {**exp.save(result, seconds), "batch_size": int(cfg.batch_size)}
                    folder.write_record(record)
                    records[record["name"]] = record
            folder.write_metrics_csv(_in_set(records, data).values())
