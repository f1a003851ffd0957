"""Nonlinear (learned) deblurring of DPS and DAPS: y = clip(2 G((x + 1) / 2, k) - 1, -1, 1), with G bkse's
KernelWizard ``adaptKernel`` (``operators/kernel_wizard.py``, weights ``GOPRO_wVAE.pth``) and k a random kernel code
~ N(0, 1.2^2) of shape (512, H / 128, W / 128) ((512, 2, 2) at 256 px).

The references (both with Gaussian noise sigma 0.05):

- DPS2022/diffusion-posterior-sampling ``guided_diffusion/measurements.py`` ``NonlinearBlurOperator``,
  ``configs/nonlinear_deblur_config.yaml``: draws a new code ``torch.randn(1, 512, 2, 2) * 1.2`` from the global
  RNG at *every* call, so the measurement and each guidance step see different blurs;
- zhangbingliang2019/DAPS ``forward_operator/__init__.py`` ``NonlinearBlur``, ``configs/task/nonlinear_blur.yaml``:
  one fixed code, ``np.random.seed(0); np.random.randn(1, 512, 2, 2) * 1.2``, shared by every image.

An operator here is a fixed function, so the code is drawn once, at construction: ``convention="dps"`` (default)
draws one code per image from the explicit generators (DPS's distribution, batch-size invariant);
``convention="daps"`` uses DAPS's exact code (numpy's legacy generator seeded 0; at sizes other than 256 px the
same recipe at the code's shape) for every image.

The network needs images whose sides are multiples of 128 (its U-Net halves the 1/4-size features five times).

Weights: the references' only source is a Google Drive link (bkse's README "GOPRO wVAE"; DAPS's ``download.sh`` runs
``gdown https://drive.google.com/uc?id=1vRoDpIsrTRYZKsOMPNbPcMtFDpCT6Foy``). The file is about 461 MB (115,265,475
float32 parameters in the published state-dict format), and Google Drive answers files that large with a
confirmation page instead of the file, so it is not downloaded automatically: without ``weights=`` it is looked for
in torch's checkpoint cache (``default_weights_path``, where ``scripts/fetch_weights.py --list task=nonlinear_deblur``
says to put it), and a missing file is one error naming the link and that path. No SHA-256 is published for it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from .base import NoiseSpec, Operator, WeightsFile
from .kernel_wizard import KernelWizard, KernelWizardOptions
from .phase_retrieval import check_convention
from .random import Generators, parameter_generators

#: where the references point to get the weights: bkse's README ("GOPRO wVAE"), also DAPS's README and download.sh
WEIGHTS_URL = "https://drive.google.com/file/d/1vRoDpIsrTRYZKsOMPNbPcMtFDpCT6Foy"
WEIGHTS_FILE = "GOPRO_wVAE.pth"
#: its size from the state-dict format (115,265,475 float32 parameters); nobody publishes a SHA-256 of it
WEIGHTS_SIZE_MB = 461.0
#: why it is not downloaded automatically (``runner.download.Source.manual``)
WEIGHTS_MANUAL = "Google Drive answers files this large with a confirmation page, not the file"
#: the std of the random kernel code (both references: ``randn(...) * 1.2``)
CODE_STD = 1.2


class BlurWeightsMissing(FileNotFoundError, ValueError):
    """The KernelWizard weights file is not there (a ValueError too, so a runner's set-up check reports it in one
    line like any other bad task setting)."""


def default_weights_path() -> Path:
    """Where the weights are found with no path given: torch's checkpoint cache,
    ``$TORCH_HOME/hub/checkpoints/GOPRO_wVAE.pth`` (read now, so TORCH_HOME may change)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def missing_weights_message(path: Path) -> str:
    """One line: the file, the link to download it from by hand (not automatic: ``WEIGHTS_MANUAL``) and where to
    put it."""
    return (
        f"nonlinear_deblur needs bkse's {WEIGHTS_FILE} (~{WEIGHTS_SIZE_MB:.0f} MB), not found at {path.absolute()}: "
        f"download it by hand from {WEIGHTS_URL} (the 'GOPRO wVAE' link of VinAIResearch/blur-kernel-space-exploring's "
        f"README, also DAPS's download.sh; not downloaded automatically: {WEIGHTS_MANUAL}) and put it at "
        f"{path.absolute()}, or point task.params.weights=<path> to it"
    )


def load_kernel_wizard(path: str | os.PathLike, opt: KernelWizardOptions | None = None) -> KernelWizard:
    """A KernelWizard with the weights at ``path`` loaded strictly (every key present, none extra, same shapes)."""
    path = Path(os.path.expanduser(str(path)))
    if not path.is_file():
        raise BlurWeightsMissing(missing_weights_message(path))
    network = KernelWizard(opt)
    state = torch.load(path, map_location="cpu", weights_only=True)
    network.load_state_dict(state, strict=True)
    return network.eval().requires_grad_(False)


class NonlinearBlur(Operator):
    """A x = clip(2 G((x + 1) / 2, k) - 1, -1, 1) (module notes). ``weights``: the path of ``GOPRO_wVAE.pth``
    (default: ``default_weights_path()``, torch's checkpoint cache), or ``network=``, a KernelWizard already built
    (e.g. with random weights in tests). ``generator``: one per image
    (one code each) or a single one (one code for the batch); not used by ``convention="daps"``."""

    name = "nonlinear_blur"
    is_linear = False
    weights_file = WeightsFile(
        what=f"bkse's {WEIGHTS_FILE} (the learned blur of task=nonlinear_deblur)",
        filename=WEIGHTS_FILE,
        url=WEIGHTS_URL,
        size_mb=WEIGHTS_SIZE_MB,
        manual=WEIGHTS_MANUAL,
    )

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        image_size: int = 256,
        generator: Generators | None = None,
        convention: Literal["dps", "daps"] = "dps",
        network: KernelWizard | None = None,
        noise: NoiseSpec = None,
    ):
        super().__init__(noise)
        check_convention(convention, "nonlinear_blur")
        if weights is not None and network is not None:
            raise ValueError(f"nonlinear_blur: give weights=<path to {WEIGHTS_FILE}> or network=, not both")
        if image_size % KernelWizard.code_stride:
            raise ValueError(
                f"nonlinear_blur needs an image size that is a multiple of {KernelWizard.code_stride} "
                f"(the learned blur's U-Net), got {image_size}"
            )
        if network is None:
            network = load_kernel_wizard(default_weights_path() if weights is None else weights)
        self.network = network.requires_grad_(False)
        self.convention = convention
        shape = self.network.code_shape(image_size, image_size)
        if convention == "daps":
            code = torch.from_numpy(np.random.RandomState(0).randn(1, *shape) * CODE_STD).float()
        else:
            generators = parameter_generators(generator, what="nonlinear_blur's kernel code")
            code = torch.stack(
                [
                    torch.randn(shape, generator=g, device=g.device, dtype=torch.float32).cpu() * CODE_STD
                    for g in generators
                ]
            )
        self.register_buffer("code", code)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_image(x)
        self.check_batch(x, self.code.shape[0], "kernel codes")
        expected = tuple(s * KernelWizard.code_stride for s in self.code.shape[-2:])
        if tuple(x.shape[-2:]) != expected:
            raise ValueError(
                f"nonlinear_blur was built for {expected[0]}x{expected[1]} images, got {tuple(x.shape[-2:])}"
            )
        # the network computes in its own dtype (float16 / bfloat16 images in float32 unless it was cast)
        dtype = self.code.dtype
        code = self.code.expand(x.shape[0], -1, -1, -1)
        blurred = self.network.adapt_kernel((x.to(dtype) + 1.0) / 2.0, code)
        return (blurred * 2.0 - 1.0).clamp(-1.0, 1.0).to(x.dtype)

    def extra_repr(self) -> str:
        return f"convention={self.convention!r}, codes={self.code.shape[0]}"
