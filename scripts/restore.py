#!/usr/bin/env python
"""Restore a data set with a diffusion prior: one command per experiment (Hydra).

    python scripts/restore.py                                            # demo: tiny prior, shapes, box inpainting
    python scripts/restore.py task=sr4 solver.num_steps=100 pag.enabled=true
    python scripts/restore.py task=motion_deblur prior=sd15 pag.scale=5
    python scripts/restore.py prior=adm_ffhq data=ffhq solver=dps
    python scripts/restore.py -m task=box_inpaint,sr4 seed=0,1           # one output folder per job
    python scripts/restore.py task=sr4 pag.enabled=true dry_run=true     # resolved settings, nothing run
    python scripts/restore.py --help                                     # config groups and examples

Rerunning the same command resumes: images with results are skipped. See conf/config.yaml for every setting.
A bad setting, group option or key stops the run before anything is written (one line ``error: <key>=<value>:
<allowed>``, exit status 2; ``runner.preflight`` checks the command before Hydra starts);
Ctrl-C prints what finished and the command that resumes (exit status 130). In a sweep (-m) a job that cannot
start is reported and the others go on; the exit status is 2 if any job could not start.
Real weights are downloaded on first use; for an offline machine, fetch them first with the same overrides:
``python scripts/fetch_weights.py <overrides>``, then run with HF_HUB_OFFLINE=1 (or offline=true).
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

# Run from a checkout without installing; PYTHONPATH too, for launcher workers (joblib, submitit) in new processes.
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)

import runner  # noqa: E402  (after the path set-up; registers the config resolvers before Hydra composes)


def _resume_command() -> str:
    return " ".join(["python", *(shlex.quote(a) for a in sys.argv)])


def _remove_empty_job_folder(cfg: DictConfig) -> None:
    """Hydra creates the job's folder before the job starts; a job that stops at start-up leaves it empty:
    remove it and its empty parents up to ``results_root`` (``rmdir`` never removes anything that holds files)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    folder = Path(HydraConfig.get().runtime.output_dir).resolve()
    root = Path(str(cfg.results_root)).resolve()
    while folder == root or root in folder.parents:
        try:
            folder.rmdir()
        except OSError:  # not empty (or not there): stop
            return
        folder = folder.parent


def _multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


#: jobs of this process's sweep that could not start (only for the exit status: each job reports its own error)
FAILED_JOBS: list[str] = []


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        runner.run(cfg)
    except runner.SetupError as exc:
        print(runner.error_lines(exc), file=sys.stderr, flush=True)
        if not _multirun():
            sys.exit(2)
        FAILED_JOBS.append(str(exc))  # a sweep goes on with its other jobs
    except runner.Interrupted as exc:
        print(f"{exc}; resume with: {_resume_command()}", file=sys.stderr, flush=True)
        sys.exit(130)
    except KeyboardInterrupt:
        print(f"interrupted at start-up, no image finished; rerun with: {_resume_command()}", file=sys.stderr)
        sys.exit(130)
    finally:  # a dry run, or a start that failed, leaves Hydra's job folder empty
        _remove_empty_job_folder(cfg)


if __name__ == "__main__":
    # before Hydra: it would write the job folder / multirun.yaml first and report a bad config in several lines
    checked = runner.preflight(sys.argv[1:])
    if checked is not None:
        status, lines = checked
        print("\n".join(lines), file=sys.stderr if status else sys.stdout, flush=True)
        sys.exit(status)
    main()
    if FAILED_JOBS:
        print(f"error: {len(FAILED_JOBS)} job(s) of the sweep could not start (see above)", file=sys.stderr)
        sys.exit(2)
