#!/usr/bin/env python
"""Fetch the weights (and Hub data) a run needs, ahead of time (e.g. on a cluster's login node), with restore.py's
overrides.

    python scripts/fetch_weights.py prior=adm_ffhq                      # FFHQ ADM + LPIPS / FID weights
    python scripts/fetch_weights.py prior=adm_ffhq data=ffhq            # ... and FFHQ's first 1000 images (no folder)
    python scripts/fetch_weights.py data=hub data.repo=owner/name data.limit=100   # the shards holding those rows
    python scripts/fetch_weights.py task=motion_deblur prior=sd15 pag.scale=5
    python scripts/fetch_weights.py -m prior=adm_ffhq,adm_imagenet      # a sweep: the union over its jobs
    python scripts/fetch_weights.py --list prior=sd15                  # what, from where, to where, already there

Files go where runs look for them: the Hugging Face cache (HF_HOME; Hub data sets too) and
$TORCH_HOME/hub/checkpoints; copy those folders to an offline machine and run there with HF_HUB_OFFLINE=1 (or
offline=true). Exit status: 0 when every file is there afterwards, 1 when a download failed or did not verify,
2 for a configuration error.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import runner  # noqa: E402  (after the path set-up)
from runner import hub_data, weights  # noqa: E402
from runner.download import WeightsError, env_offline, verify_pinned  # noqa: E402
from runner.preflight import compose_job, split_sweep  # noqa: E402


def job_overrides(overrides: list[str], multirun: bool) -> list[list[str]]:
    """One override list per job: a ``-m`` sweep (``task=a,b seed=0,1``) expanded as Hydra's basic sweeper does
    (launcher overrides left out: they do not change weights)."""
    return split_sweep(overrides, multirun)


def needs_of(jobs: list[list[str]]) -> list[weights.Need]:
    """The union of the jobs' needs (each file once)."""
    seen: dict[tuple, weights.Need] = {}
    for job in jobs:
        for need in runner.run_needs(compose_job(job)):
            key = need.source.key() if need.source is not None else (str(need.local),)
            seen.setdefault(key, need)
    return list(seen.values())


def data_needs_of(jobs: list[list[str]]) -> list[hub_data.DataNeed]:
    """The union of the jobs' Hub data (each selection once)."""
    seen: dict[tuple, hub_data.DataNeed] = {}
    for job in jobs:
        need = hub_data.data_need(compose_job(job))
        if need is not None:
            seen.setdefault(need.spec.key(), need)
    return list(seen.values())


def fetch_data(needs: list[hub_data.DataNeed], listing: bool, offline: bool) -> int:
    """List or fetch the data needs; the number that failed."""
    failed = 0
    for need in needs:
        state, path = need.status()
        if listing:
            print(f"{need.what} [{need.setting}]")
            if need.local is not None:
                print(f"  local:  {need.local} ({'there, used' if need.local.is_dir() else 'absent'})")
            print(f"  from:   {need.spec.describe()}\n  to:     {need.spec.destination()}")
            print(f"  state:  {state}" + (f": {path}" if state != "missing" else ""))
            continue
        if state != "missing":
            print(f"{need.what}: already there ({state}): {path}")
            continue
        if offline:
            print(f"error: {need.what}: not cached and HF_HUB_OFFLINE is set; unset it to download", file=sys.stderr)
            failed += 1
            continue
        print(f"{need.what}: {need.spec.describe()} -> {need.spec.destination()}")
        try:
            selection = need.fetch()
        except runner.SetupError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        files, new = len(selection.paths), len(selection.downloaded)
        print(
            f"{need.what}: fetched: {len(selection.rows)} images in {files} file(s) ({new} downloaded now), "
            f"commit {selection.commit}"
        )
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="the overrides of the restore.py command")
    parser.add_argument("-m", "--multirun", action="store_true", help="expand sweeps (a,b) as restore.py -m does")
    parser.add_argument("--list", action="store_true", help="print what would be fetched and what is already there")
    args = parser.parse_args(argv)
    try:
        jobs = job_overrides(args.overrides, args.multirun)
        needs, data_needs = needs_of(jobs), data_needs_of(jobs)
    except runner.SetupError as exc:  # a bad group option, key or override: one line naming the valid ones
        print(runner.error_lines(exc), file=sys.stderr)
        return 2
    except Exception as exc:  # anything else about the config
        print(runner.error_lines(f"{type(exc).__name__}: {exc}"), file=sys.stderr)
        return 2
    if args.list:
        for need in needs:
            state, path = need.status()
            print(f"{need.what} [{need.setting}]")
            if need.local is not None:
                print(f"  local:  {need.local} ({'there, used' if need.local.exists() else 'absent'})")
            if need.source is not None:
                print(f"  from:   {need.source.describe()}\n  to:     {need.source.destination()}")
                print(f"  sha256: {need.source.sha256 or 'none published'}")
            print(f"  state:  {state}" + (f": {path}" if state != "missing" else ""))
        fetch_data(data_needs, listing=True, offline=env_offline())
        return 0
    offline = env_offline()
    failed = fetch_data(data_needs, listing=False, offline=offline)
    for need in needs:
        state, path = need.status()
        if state != "missing":
            try:  # a pinned SHA-256 holds for what is already here too: it is never replaced, only refused
                verify_pinned(need.source, path)
            except WeightsError as exc:
                print(runner.error_lines(exc), file=sys.stderr)
                failed += 1
                continue
            pinned = ", pinned sha256 checked" if need.source is not None and need.source.sha256 else ""
            print(f"{need.what}: already there ({state}{pinned}): {path}")
            continue
        if need.source is None:
            print(f"error: {need.what}: {need.setting}={need.local} does not exist and has no source", file=sys.stderr)
            failed += 1
            continue
        if offline:
            print(f"error: {need.what}: not cached and HF_HUB_OFFLINE is set; unset it to download", file=sys.stderr)
            failed += 1
            continue
        try:  # says what it downloads, from where, to where
            print(f"{need.what}: fetched: {weights.resolve(need, offline=False)}")
        except WeightsError as exc:
            print(runner.error_lines(exc), file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
