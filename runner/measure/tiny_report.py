"""Measure the shipped tiny priors on held-out images: PSNR / SSIM per task for the naive back-projection of the
measurement, the solver without PAG and with PAG at several scales; plus unconditional samples with and
without PAG as a picture. Writes a markdown table, a JSON file and PNGs.

    python scripts/tiny_prior_report.py --prior tiny_adm --scales 1,2,4 --out docs/results/tiny_adm
    python scripts/tiny_prior_report.py --prior tiny_sd  --scales 1,2,4 --out docs/results/tiny_sd
    python scripts/tiny_prior_report.py --prior tiny_adm --split train --start 500000 ...   # tuning images
    python scripts/tiny_prior_report.py --solvers dps,diffpir --x0-from unguided,guided ...  # solvers side by side
    python scripts/tiny_prior_report.py --prior tiny_adm --scales 1 --intervals 0:500 ...   # + PAG for t in [0, 500]
    python scripts/tiny_prior_report.py --prior tiny_adm --scales table ...   # PAG as the step-size table sets it
    python scripts/tiny_prior_report.py --prior tiny_sd --tasks "" --unconditional 128 --sample-scales 0,1,2,3,4 \
        --sample-steps 50 --out docs/results/tiny_sd_kid          # distribution metrics of unconditional samples

Distribution metrics (``--features``, default the shapes network): KID (with its std over subsets) and FID of
each set of images -- restorations of every row, unconditional samples at each PAG scale -- against
``--reference`` images of the test split (indices from 100 000, disjoint from the restored ones), next to the
same metrics of as many other *data* images (the floor: what a perfect sampler gets), and the sets' sharpness /
contrast / clipped-pixel statistics (``evaluation.statistics``) next to the data's. Every PAG row's restorations are
also compared with its no-PAG row's on paired subsets (the same images in both, ``kid_difference_from_features``):
the KID difference ± its own std, which says whether PAG's effect holds across the images drawn; and its PSNR / SSIM
minus its no-PAG row's, image by image: the mean difference ± its standard error.

Everything runs through the same code as ``scripts/restore.py`` (configs, step-size table, operators, per-image
seed streams), with all images of a task in one batch (results do not depend on the batch: one generator per image).
``--solvers`` runs each named solver (``solver=<name>``, its own step-size table rows) instead of the config's
one; ``--x0-from`` adds a PAG row per choice of what the data term sees. Each row also records seconds per image and
the network's forward / backward passes per image (counted with module hooks on the prior).
``--merge DIR,DIR`` puts the report.json of runs split by ``--solvers`` or ``--tasks`` (shards run side by side on
the same images) into one table.md / report.json in ``--out``, running nothing; shards that differ in images, seeds,
overrides or KID reference are refused.
The default images are the shapes *test* split, which training never sees; ``--split train --start 500000`` gives
training-split images beyond the first 10,000 the priors were trained on, for tuning without touching the test set.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from evaluation import load_extractor
from imaging.grid import image_grid
from imaging.io import save_image, write_json, write_text
from solvers import PAG, sample

from ..build import build_prior, prior_image_size
from ..config import compose, resolve_settings
from ..heldout import ShapesReference, held_out_batch, pixel_scores, restore_batch
from ..report import markdown_table
from ..seeds import image_streams
from . import paired
from .cli import checked_names, measurement_parser
from .passes import PassCounter

TASKS = ("box_inpaint", "sr4", "gaussian_deblur", "motion_deblur")


def naive_inverse(operator, y: torch.Tensor, size: int) -> torch.Tensor:
    """The measurement taken at face value: the masked image, the blurred image, bicubic upsampling for SR."""
    if y.shape[-2:] != (size, size):  # a smaller measurement (super-resolution)
        return F.interpolate(y, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)
    return y.clamp(-1, 1)


def mean_std(values: list[float]) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std()) if len(t) > 1 else 0.0


def solver_names(args) -> list[str]:
    return [s for s in args.solvers.split(",") if s]


def task_overrides(args, task: str) -> list[str]:
    # the first solver's config, so that solver-specific overrides (solver.lam=...) compose
    return [
        *[f"solver={name}" for name in solver_names(args)[:1]],
        f"prior={args.prior}",
        f"task={task}",
        f"data.limit={args.n}",
        f"data.split={args.split}",
        f"data.start={args.start}",
        f"seed={args.seed}",
        *args.override,
    ]


def parse_intervals(text: str) -> list[tuple[float, float]]:
    """``"0:500,500:999"`` -> [(0, 500), (500, 999)]."""
    return [tuple(float(v) for v in part.split(":")) for part in text.split(",") if part]


def pag_overrides(scale: float | str) -> tuple[str, list[str]]:
    """(label part, overrides) of one ``--scales`` entry: a number, or ``table`` (the step-size table's scale and
    step sizes for each task: ``pag.enabled=true``)."""
    if scale == "table":
        return "PAG (table)", ["pag.enabled=true"]
    return f"PAG s={scale:g}", [f"pag.scale={scale}"]


def parse_scales(text: str) -> list[float | str]:
    """``"1,2,table"`` -> [1.0, 2.0, "table"]."""
    return [s if s == "table" else float(s) for s in text.split(",") if s]


def variants(args, scales: list[float | str]) -> list[tuple[str, list[str]]]:
    """(row label, extra overrides) for every solver x (no PAG, PAG at each scale x each x0_from, PAG at each scale
    limited to each of ``--intervals``); a scale ``table`` is the step-size table's per-task PAG setting."""
    solvers = solver_names(args) or [None]
    x0_choices = [c for c in args.x0_from.split(",") if c] or ["unguided"]
    out = []
    for solver in solvers:
        head = [f"solver={solver}"] if solver else []
        prefix = f"{solver} " if len(solvers) > 1 else ""
        out.append((f"{prefix}no PAG", head))
        for scale in scales:
            name, pag = pag_overrides(scale)
            for x0_from in x0_choices:
                tail = f" (x0 {x0_from})" if len(x0_choices) > 1 else ""
                out.append((f"{prefix}{name}{tail}", head + pag + [f"pag.x0_from={x0_from}"]))
        for scale in scales:
            name, pag = pag_overrides(scale)
            for low, high in parse_intervals(getattr(args, "intervals", "")):
                extra = [*pag, f"pag.interval=[{low:g},{high:g}]"]
                out.append((f"{prefix}{name} t in [{low:g}, {high:g}]", head + extra))
    return out


def evaluate_task(
    args, task: str, prior, scales: list[float | str], counter: PassCounter, distribution: ShapesReference | None
) -> dict:
    base = task_overrides(args, task)
    batch = held_out_batch(compose(*base), prior)
    x, y, operator, size = batch.x, batch.y, batch.operator, prior_image_size(prior)
    rows = {"naive": pixel_scores(naive_inverse(operator, y, size), x)}
    images = {"label": x, "naive": naive_inverse(operator, y, size)}
    for label, extra in variants(args, scales):
        counter.reset()
        x_hat, seconds, settings = restore_batch(compose(*base, *extra), prior, batch, args.progress)
        n = len(x)
        rows[label] = pixel_scores(x_hat, x) | {
            "seconds": seconds,
            "seconds_per_image": seconds / n,
            # one network call runs the whole batch: per image = per call
            "forward_passes": counter.forward,
            "backward_passes": counter.backward,
            "settings": settings.describe(),
        }
        images[label] = x_hat
        print(f"  {task:16s} {label:24s} PSNR {mean_std(rows[label]['psnr'])[0]:.2f}  ({seconds:.0f} s)", flush=True)
    for label, baseline in paired_baselines(list(images)).items():
        rows[label]["pixel_vs_baseline"] = {"baseline": baseline} | pixel_difference(rows[label], rows[baseline])
    if distribution is not None:
        for label, image_set in images.items():
            rows.setdefault(label, {})["distribution"] = distribution(image_set)
        for label, baseline in paired_baselines(list(images)).items():
            rows[label]["kid_vs_baseline"] = {"baseline": baseline} | distribution.kid_difference(
                images[label], images[baseline]
            )
    return {"rows": rows, "images": images}


def paired_baselines(labels: list[str]) -> dict[str, str]:
    """Each PAG row's baseline: the last ``no PAG`` row before it (its solver's own, with ``--solvers``)."""
    out, baseline = {}, None
    for label in labels:
        if label.endswith("no PAG"):
            baseline = label
        elif baseline is not None and label not in ("label", "naive"):
            out[label] = baseline
    return out


def paired_difference(values: list[float], baseline: list[float]) -> tuple[float, float]:
    """Mean of the per-image differences values[i] - baseline[i] and its standard error (``paired.paired_difference``;
    nan for one image): the same images restored two ways, so what differs between them is the method alone."""
    if len(values) < 2:
        return float(values[0]) - float(baseline[0]), float("nan")
    mean, se, _, _ = paired.paired_difference(baseline, values)
    return mean, se


def pixel_difference(row: dict, baseline: dict) -> dict[str, float]:
    """PSNR and SSIM of ``row`` minus its ``baseline`` row's, paired per image, each with its standard error."""
    psnr, psnr_se = paired_difference(row["psnr"], baseline["psnr"])
    ssim, ssim_se = paired_difference(row["ssim"], baseline["ssim"])
    return {
        "psnr_difference": psnr,
        "psnr_difference_se": psnr_se,
        "ssim_difference": ssim,
        "ssim_difference_se": ssim_se,
    }


def pixel_difference_table(results: dict[str, dict]) -> str:
    """PSNR / SSIM of each PAG row minus its no-PAG row's, per image, mean ± standard error: the PAG effect and
    whether it holds across the images (each row's own std, above, mostly measures how the images differ)."""
    first = next(iter(results.values()))["rows"]
    labels = [label for label, r in first.items() if "pixel_vs_baseline" in r]
    if not labels:
        return ""

    def cell(r: dict) -> str:
        d = r["pixel_vs_baseline"]
        psnr = f"{d['psnr_difference']:+.2f} ± {d['psnr_difference_se']:.2f}"
        return f"{psnr} / {d['ssim_difference']:+.3f} ± {d['ssim_difference_se']:.3f}"

    cells = [
        [f"{label} − {first[label]['pixel_vs_baseline']['baseline']}"]
        + [cell(results[task]["rows"][label]) for task in results]
        for label in labels
    ]
    return markdown_table(["PSNR dB / SSIM difference ± s.e. (paired)", *results], cells)


def task_cost_table(results: dict[str, dict]) -> str:
    """Seconds per image and the network's forward / backward passes per image, per task."""
    labels = [label for label, r in next(iter(results.values()))["rows"].items() if "seconds_per_image" in r]

    def cell(r: dict) -> str:
        return f"{r['seconds_per_image']:.2f} ({r['forward_passes']} / {r['backward_passes']})"

    cells = [[label, *(cell(results[task]["rows"][label]) for task in results)] for label in labels]
    return markdown_table(["s / image (forward / backward passes per image)", *results], cells)


def kid_cell(r: dict) -> str:
    return f"{r['kid']:.3f} ± {r['kid_std']:.3f}"


def stats_cells(r: dict) -> list[str]:
    return [f"{r['sharpness']:.4f}", f"{r['contrast']:.3f}", f"{100 * r['clipped']:.2f}"]


def difference_cell(r: dict) -> str:
    d = r.get("kid_vs_baseline")
    return "" if d is None else f"{d['kid_difference']:+.3f} ± {d['kid_difference_std']:.3f}"


def distribution_table(rows: dict[str, dict], n: int) -> str:
    """Rows: label -> Distribution row; one column per metric; KID minus the first row's on paired subsets (the
    same seeds) where the row has it."""
    header = [f"{n} images", "KID ± std", "KID − first row ± std (paired)", "FID", "sharpness", "contrast", "clipped %"]
    cells = []
    for label, r in rows.items():
        fid = "n/a" if r["fid"] is None else f"{r['fid']:.2f}"
        cells.append([label, kid_cell(r), difference_cell(r), fid, *stats_cells(r)])
    return markdown_table(header, cells)


def restoration_kid_table(results: dict[str, dict]) -> str:
    """KID ± std of every row of every task against the reference set."""
    labels = list(next(iter(results.values()))["rows"])
    cells = [
        [row_name(label), *(kid_cell(results[task]["rows"][label]["distribution"]) for task in results)]
        for label in labels
    ]
    return markdown_table(["KID ± std", *results], cells)


def row_name(label: str) -> str:
    return "ground truth" if label == "label" else label


def restoration_kid_difference_table(results: dict[str, dict]) -> str:
    """KID(row) - KID(its no-PAG row) on paired subsets, ± the std of that difference: the PAG effect and whether
    it holds across the images drawn (each KID's own std, above, also moves with the images both rows share)."""
    first = next(iter(results.values()))["rows"]
    labels = [label for label, r in first.items() if "kid_vs_baseline" in r]
    if not labels:
        return ""
    cells = [
        [f"{label} − {first[label]['kid_vs_baseline']['baseline']}"]
        + [difference_cell(results[task]["rows"][label]) for task in results]
        for label in labels
    ]
    return markdown_table(["KID difference ± std (paired)", *results], cells)


def restoration_stats_table(results: dict[str, dict], data: dict[str, float]) -> str:
    """Sharpness / contrast / clipped % of every row of every task, and of the reference data."""
    labels = list(next(iter(results.values()))["rows"])

    def cell(r: dict) -> str:
        return " / ".join(stats_cells(r))

    cells = [
        [row_name(label), *(cell(results[task]["rows"][label]["distribution"]) for task in results)] for label in labels
    ]
    cells.append(["data (reference set)", *(cell(data) for _ in results)])
    return markdown_table(["sharpness / contrast / clipped %", *results], cells)


def unconditional(args, prior, distribution: ShapesReference | None) -> tuple[dict, list[torch.Tensor], dict]:
    """``--unconditional`` samples per scale of ``--sample-scales`` (the same seeds at every scale): distribution
    rows, the first ``--samples`` of each scale for the picture, and the settings used."""
    settings = resolve_settings(compose(f"prior={args.prior}", "pag.enabled=true", *args.override))
    layers = settings.pag.layers
    steps = args.sample_steps or settings.num_steps
    n = max(args.unconditional, args.samples)
    scales = [float(x) for x in args.sample_scales.split(",") if x]
    rows, pictures, first = {}, [], None
    for scale in scales:
        pag = PAG(scale, layers) if scale > 0 else None
        gens = image_streams(args.seed, range(n)).sampler
        start, chunks = time.time(), []
        key = f"{args.prior}_s{scale:g}_{steps}steps_n{n}_seed{args.seed}_{'-'.join(layers)}_{'_'.join(args.override)}"
        cached = args.sample_cache / f"{key}.pt" if args.sample_cache else None
        if cached is not None and cached.is_file():  # the same samples, drawn by an earlier run of this command
            chunks = [torch.load(cached)]
        for i in range(sum(len(c) for c in chunks), n, args.sample_batch):
            chunks.append(
                sample(
                    prior,
                    len(gens[i : i + args.sample_batch]),
                    gens[i : i + args.sample_batch],
                    num_steps=steps,
                    pag=pag,
                    progress=False,
                )
            )
        images = torch.cat(chunks)
        if cached is not None and not cached.is_file():
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.save(images, cached)
        label = "no PAG" if scale == 0 else f"PAG s={scale:g}"
        pictures.append(images[: args.samples])
        if distribution is not None and args.unconditional:
            rows[label] = distribution(images[: args.unconditional]) | {"seconds": time.time() - start}
            r = rows[label]
            print(f"  samples {label:10s} KID {kid_cell(r)} FID {r['fid']:.2f} ({time.time() - start:.0f} s)")
            if first is None:
                first = (label, images[: args.unconditional])
            else:  # sample i of every scale starts from the same seed: paired with the first scale's sample i
                r["kid_vs_baseline"] = {"baseline": first[0]} | distribution.kid_difference(
                    images[: args.unconditional], first[1]
                )
    if distribution is not None and args.unconditional:
        rows["data (test split)"] = distribution.data_row(args.unconditional)
    return rows, pictures, {"scales": scales, "layers": list(layers), "num_steps": steps, "n": n}


def cost_table(results: dict[str, dict]) -> str:
    """Seconds per image and network passes per image, summed over the tasks, and their ratio to the first row."""
    labels = [label for label, r in next(iter(results.values()))["rows"].items() if "seconds_per_image" in r]

    def total(label: str, key: str) -> float:
        return sum(r["rows"][label][key] for r in results.values())

    first = labels[0]
    header = ["", "s / image (all tasks)", "forward passes / image", "backward passes / image", "time vs first row"]
    cells = []
    for label in labels:
        n = len(results)
        seconds = total(label, "seconds_per_image")
        ratio = seconds / total(first, "seconds_per_image")
        forward, backward = total(label, "forward_passes") / n, total(label, "backward_passes") / n
        cells.append([label, f"{seconds:.2f}", f"{forward:.0f}", f"{backward:.0f}", f"{ratio:.2f}"])
    return markdown_table(header, cells)


def table(results: dict[str, dict]) -> str:
    labels = [label for label, r in next(iter(results.values()))["rows"].items() if "psnr" in r]

    def cell(r: dict) -> str:
        (p, ps), (s, _) = mean_std(r["psnr"]), mean_std(r["ssim"])
        return f"{p:.2f} ± {ps:.2f} / {s:.3f}"

    cells = [[label, *(cell(results[task]["rows"][label]) for task in results)] for label in labels]
    return markdown_table(["PSNR (dB) ± std / SSIM", *results], cells)


def main(argv: list[str] | None = None) -> None:
    parser = measurement_parser(__doc__, tasks=",".join(TASKS), n=16, priors=["tiny_adm", "tiny_sd"])
    parser.add_argument("--scales", default="1,2,4", help="PAG scales besides 0; 'table': the table's per task")
    parser.add_argument("--intervals", default="", help="PAG intervals t_lo:t_hi,... (rows for each scale)")
    parser.add_argument("--samples", type=int, default=16, help="unconditional samples for the picture (0: none)")
    parser.add_argument("--unconditional", type=int, default=0, help="unconditional samples per scale for KID/FID")
    parser.add_argument("--sample-scales", default=None, help="PAG scales of the samples (default: 0 and --scales)")
    parser.add_argument("--sample-steps", type=int, default=0, help="sampling steps (0: the table's num_steps)")
    parser.add_argument("--sample-batch", type=int, default=32)
    parser.add_argument("--sample-cache", type=Path, default=None, help="keep / reuse the samples in this folder")
    parser.add_argument("--solvers", default="", help="comma-separated solver names (default: the config's)")
    parser.add_argument("--x0-from", default="unguided", help="PAG rows for these pag.x0_from values")
    parser.add_argument("--merge", default="", help="output folders of runs to put in one table (nothing is run)")
    args = parser.parse_args(argv)
    if args.merge:
        folders = [Path(f) for f in args.merge.split(",") if f]
        try:
            report = merge_reports([json.loads((f / "report.json").read_text()) for f in folders])
        except (OSError, ValueError) as exc:
            parser.error(f"--merge: {exc}")
        write_report(report | {"merged_from": [str(f) for f in folders]}, restoration_sections(report), args.out)
        return
    tasks, _ = checked_names(parser, args)  # before the prior and the reference features load
    if args.threads:
        torch.set_num_threads(args.threads)
    scales = parse_scales(args.scales)
    cfg = compose(*[f"solver={name}" for name in solver_names(args)[:1]], f"prior={args.prior}", *args.override)
    prior = build_prior(cfg.prior, torch.device("cpu"), torch.float32)

    args.sample_scales = args.sample_scales or ",".join(str(x) for x in [0.0, *scales] if x != "table")
    distribution = None
    if args.features != "none":
        distribution = ShapesReference(load_extractor(args.features), args.reference, args.seed)

    counter = PassCounter(prior)
    results = {}
    for task in tasks:
        results[task] = evaluate_task(args, task, prior, scales, counter, distribution)
        # one row per image: label | naive | no PAG | PAG s=...
        columns = list(results[task]["images"].values())
        save_image(image_grid([list(r) for r in zip(*(c[:8] for c in columns))], gap=1), args.out / f"{task}.png")

    report = {
        "prior": args.prior,
        "split": args.split,
        "start": args.start,
        "n": args.n,
        "seed": args.seed,
        "overrides": args.override,
        "command": "python scripts/tiny_prior_report.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "results": {t: r["rows"] for t, r in results.items()},
    }
    if distribution is not None:
        report["features"] = distribution.extractor.name
        report["reference"] = {"split": "test", "start": distribution.start, "n": args.reference}
        report["data_statistics"] = distribution.data_stats
    sections = restoration_sections(report)
    if args.samples or args.unconditional:
        rows, pictures, info = unconditional(args, prior, distribution)
        # one row per PAG scale (0 first), same seeds in every row
        if args.samples:
            save_image(image_grid([list(p) for p in pictures], gap=1), args.out / "samples.png")
        report["samples"] = info | {"distribution": rows}
        if rows:
            sections.append(distribution_table(rows, args.unconditional))
    write_report(report, sections, args.out)


def restoration_sections(report: dict) -> list[str]:
    """The restoration tables of a report (``report["results"]``: task -> row label -> row): PSNR / SSIM, their
    paired differences, costs; with distribution metrics (``report["data_statistics"]``) KID, its paired
    differences and the image statistics."""
    results = {task: {"rows": rows} for task, rows in report["results"].items()}
    if not results:
        return []
    sections = [table(results)]
    if difference := pixel_difference_table(results):
        sections.append(difference)
    sections += [cost_table(results), task_cost_table(results)]
    if "data_statistics" in report:
        sections.append(restoration_kid_table(results))
        if difference := restoration_kid_difference_table(results):
            sections.append(difference)
        sections.append(restoration_stats_table(results, report["data_statistics"]))
    return sections


def write_report(report: dict, sections: list[str], out: Path) -> None:
    """report.json and table.md (the sections and the KID reference) in ``out``; the tables also to stdout."""
    if "features" in report:
        sections = [
            *sections,
            f"KID/FID features: {report['features']}; reference: {report['reference']['n']} test images.",
        ]
    write_json(out / "report.json", report)
    markdown = "\n\n".join(sections)
    write_text(out / "table.md", markdown + "\n")
    print(markdown)


#: rows every run of a measurement has, the same in each: the measurement at face value, the ground truth (its KID)
SHARED_ROWS = ("naive", "label")


def run_solver(report: dict) -> str | None:
    """The solver a report's rows ran (the first word of each row's ``settings``) if it is one, else None."""
    names = {
        row["settings"].split()[0] for rows in report["results"].values() for row in rows.values() if "settings" in row
    }
    return names.pop() if len(names) == 1 else None


def with_solver(results: dict[str, dict], solver: str | None) -> dict[str, dict]:
    """``results`` with each solver row's label (and its baseline's) prefixed by ``solver``, as a run of several
    solvers labels them; labels that have it already, and the shared rows, stay."""
    if solver is None:
        return results

    def name(label: str) -> str:
        return label if label in SHARED_ROWS or label.startswith(f"{solver} ") else f"{solver} {label}"

    out = {}
    for task, rows in results.items():
        out[task] = {}
        for label, row in rows.items():
            row = dict(row)
            for key in ("pixel_vs_baseline", "kid_vs_baseline"):
                if key in row:
                    row[key] = row[key] | {"baseline": name(row[key]["baseline"])}
            out[task][name(label)] = row
    return out


#: what every merged report must share: the same images, seeds and KID reference, or the rows are not comparable
MERGE_KEYS = ("prior", "split", "start", "n", "seed", "overrides", "features", "reference")


def merge_reports(reports: list[dict]) -> dict:
    """One report from several runs of the same measurement split by ``--solvers`` or ``--tasks`` (shards run side
    by side): each task's rows in the order the reports come, the shared rows (``SHARED_ROWS``) once, the ground truth
    last as in one run. Runs that differ in their images, seeds, overrides or KID reference are refused
    (``ValueError``): their rows are not paired."""
    first = reports[0]
    for other in reports[1:]:
        differing = [key for key in MERGE_KEYS if other.get(key) != first.get(key)]
        if differing:
            raise ValueError(f"cannot merge runs that differ in {', '.join(differing)}")
    solvers = [run_solver(report) for report in reports]
    if len(set(solvers)) > 1:  # runs of one solver each label their rows without it: name it, as --solvers a,b would
        reports = [report | {"results": with_solver(report["results"], s)} for report, s in zip(reports, solvers)]
    results: dict[str, dict] = {}
    for report in reports:
        for task, rows in report["results"].items():
            merged = results.setdefault(task, {})
            for label, row in rows.items():
                if label in merged and label not in SHARED_ROWS:
                    raise ValueError(f"row {label!r} of {task} is in more than one run")
                merged.setdefault(label, row)
    for rows in results.values():
        if "label" in rows:
            rows["label"] = rows.pop("label")
    labels = [list(rows) for rows in results.values()]
    if any(set(ls) != set(labels[0]) for ls in labels):
        raise ValueError("the merged runs do not give every task the same rows (a shard is missing)")
    merged = {key: first[key] for key in (*MERGE_KEYS, "data_statistics") if key in first}
    return merged | {"commands": [r["command"] for r in reports], "results": results}
