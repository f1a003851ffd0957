#!/usr/bin/env python
"""Restore a data set with a diffusion prior: one command per experiment (Hydra).

    python scripts/restore.py                                            # demo: tiny prior, shapes, box inpainting
    python scripts/restore.py task=sr4 solver.num_steps=100 pag.enabled=true
    python scripts/restore.py task=motion_deblur prior=sd15 pag.scale=5
    python scripts/restore.py prior=adm_ffhq data=ffhq solver=dps
    python scripts/restore.py -m task=box_inpaint,sr4 seed=0,1           # one output folder per job
    python scripts/restore.py --cfg job                                  # print the composed config

Rerunning the same command resumes: images with results are skipped. See conf/config.yaml for every setting.
Real weights are downloaded on first use; for an offline machine, fetch them first with the same overrides:
``python scripts/fetch_weights.py <overrides>``, then run with HF_HUB_OFFLINE=1 (or offline=true).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

# Run from a checkout without installing; PYTHONPATH too, for launcher workers (joblib, submitit) in new processes.
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)

import runner  # noqa: E402  (after the path set-up; registers the config resolvers before Hydra composes)


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        runner.run(cfg)
    except runner.SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
