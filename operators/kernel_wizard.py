"""bkse's KernelWizard (Tran et al., "Explore Image Deblurring via Encoded Blur Kernel Space", CVPR 2021), the
learned blur of DPS's and DAPS's nonlinear deblurring, written so that the published ``GOPRO_wVAE.pth`` loads
strictly (``load_state_dict(strict=True)``: the same module names and shapes).

Architecture (VinAIResearch/blur-kernel-space-exploring ``models/kernel_encoding/kernel_wizard.py``,
``models/backbones/{resnet,unet_parts}.py``, ``models/arch_util.py``; options ``options/generate_blur/default.yml``:
nf 64, front_RBs 10, back_RBs 20, kernel_dim 512, use_vae true, norm "none", reflect padding, 4 ResNet blocks; DPS
clones that repository as ``bkse/``, DAPS vendors it as ``forward_operator/bkse/``):

- ``feature_extractor``: conv 3->nf, two stride-2 convs (LeakyReLU 0.1), ``front_RBs`` residual blocks (no norm);
- ``adapter`` (G in the paper): a 5-level U-Net (pix2pix's UnetSkipConnectionBlock) whose innermost level
  concatenates the kernel code (B, 8 nf, H / 128, W / 128) to its features;
- ``recon_trunk``: ``back_RBs`` residual blocks, two PixelShuffle x2 upsamplings, convs back to 3 channels;
- ``kernel_extractor`` (F in the paper, the encoder of blur kernels): not used to blur, present for the weights.

``adapt_kernel(x_sharp, code)`` (bkse's ``adaptKernel``) blurs an image in [0, 1] with the kernel ``code``.
Norm "none" makes every norm layer an identity and every conv bias-free except those bkse builds with bias (the
feature extractor, the reconstruction trunk, the outermost transposed conv).

The reference's U-Net blocks below the outermost start with an in-place LeakyReLU(0.2), which also changes the
skip connection they concatenate; the next layer is always a ReLU, and relu(leaky_relu(x)) = relu(x), so the
output is the same either way. We apply it without in-place ops (autograd through the operator stays safe).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class KernelWizardOptions:
    """bkse ``options/generate_blur/default.yml`` ``KernelWizard`` (the settings of ``GOPRO_wVAE.pth``)."""

    input_nc: int = 3
    nf: int = 64
    front_RBs: int = 10
    back_RBs: int = 20
    kernel_dim: int = 512
    use_vae: bool = True
    extractor_blocks: int = 4  # KernelExtractor.n_blocks
    use_sharp: bool = True  # KernelExtractor.use_sharp


class ResidualBlockNoBN(nn.Module):
    """x + conv2(relu(conv1(x))), 3x3 convs with bias (bkse ``ResidualBlock_noBN``)."""

    def __init__(self, nf: int):
        super().__init__()
        self.conv1 = nn.Conv2d(nf, nf, 3, 1, 1, bias=True)
        self.conv2 = nn.Conv2d(nf, nf, 3, 1, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class ResnetBlock(nn.Module):
    """x + [pad, conv, ReLU, pad, conv](x) with reflect padding and no bias (bkse ``ResnetBlock``, norm "none":
    the identity norms sit at indices 2 and 6 of ``conv_block``)."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3, bias=False),
            nn.Identity(),
            nn.ReLU(),
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3, bias=False),
            nn.Identity(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class KernelExtractor(nn.Module):
    """F: (sharp features, blurred features) -> kernel code (mean and log-variance with the VAE), bkse layout."""

    def __init__(self, opt: KernelWizardOptions):
        super().__init__()
        nf, self.kernel_dim, self.use_vae = opt.nf, opt.kernel_dim, opt.use_vae
        input_nc = 2 * nf if opt.use_sharp else nf
        output_nc = 2 * opt.kernel_dim if opt.use_vae else opt.kernel_dim
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(input_nc, nf, 7, bias=False),
            nn.Identity(),
            nn.ReLU(),
        ]
        for i in range(5):  # five stride-2 convs, channels nf * 2^i -> nf * 2^(i+1), capped at output_nc
            inc, ouc = min(nf * 2**i, output_nc), min(nf * 2 ** (i + 1), output_nc)
            layers += [nn.Conv2d(inc, ouc, 3, stride=2, padding=1, bias=False), nn.Identity(), nn.ReLU()]
        layers += [ResnetBlock(output_nc) for _ in range(opt.extractor_blocks)]
        self.model = nn.Sequential(*layers)

    def forward(self, sharp: torch.Tensor, blur: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        code = self.model(torch.cat((sharp, blur), dim=1))
        if self.use_vae:
            return code[:, : self.kernel_dim], code[:, self.kernel_dim :]
        return code, torch.zeros_like(code)


class UnetLevel(nn.Module):
    """One level of pix2pix's U-Net (bkse ``UnetSkipConnectionBlock`` with norm "none"), keeping its module names:
    ``down`` / ``up`` Sequentials and the next level as ``submodule`` (absent at the innermost level, which instead
    concatenates the kernel code to its features)."""

    def __init__(
        self,
        outer_nc: int,
        inner_nc: int,
        input_nc: int | None = None,
        submodule: UnetLevel | None = None,
        outermost: bool = False,
    ):
        super().__init__()
        self.outermost, self.innermost = outermost, submodule is None
        input_nc = outer_nc if input_nc is None else input_nc
        down_conv = nn.Conv2d(input_nc, inner_nc, 4, stride=2, padding=1, bias=False)
        if outermost:
            self.down = nn.Sequential(down_conv)
            self.up = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(2 * inner_nc, outer_nc, 4, 2, 1), nn.Tanh())
        else:
            # index 0 is the LeakyReLU(0.2) applied in forward (also to the skip connection, see the module notes)
            down = [nn.LeakyReLU(0.2), down_conv] + ([] if self.innermost else [nn.Identity()])
            self.down = nn.Sequential(*down)
            self.up = nn.Sequential(
                nn.ReLU(), nn.ConvTranspose2d(2 * inner_nc, outer_nc, 4, 2, 1, bias=False), nn.Identity()
            )
        if submodule is not None:
            self.submodule = submodule

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.up(self.submodule(self.down(x), code))
        x = F.leaky_relu(x, 0.2)  # in place in the reference: the skip carries it (the next ReLU makes it moot)
        h = self.down[1:](x)
        inner = torch.cat((h, code), dim=1) if self.innermost else self.submodule(h, code)
        return torch.cat((self.up(inner), x), dim=1)


class KernelAdapter(nn.Module):
    """G: image features and a kernel code -> blurred features (a 5-level U-Net, nf -> 8 nf)."""

    def __init__(self, opt: KernelWizardOptions):
        super().__init__()
        ngf = opt.nf
        level = UnetLevel(8 * ngf, 8 * ngf)  # innermost
        level = UnetLevel(4 * ngf, 8 * ngf, submodule=level)
        level = UnetLevel(2 * ngf, 4 * ngf, submodule=level)
        level = UnetLevel(ngf, 2 * ngf, submodule=level)
        self.model = UnetLevel(ngf, ngf, input_nc=ngf, submodule=level, outermost=True)

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return self.model(x, code)


class KernelWizard(nn.Module):
    """bkse's KernelWizard with the state-dict layout of ``GOPRO_wVAE.pth``; ``adapt_kernel`` blurs."""

    #: the spatial reduction between the image and the kernel code (4 in the feature extractor, 32 in the U-Net)
    code_stride = 128

    def __init__(self, opt: KernelWizardOptions | None = None):
        super().__init__()
        opt = opt or KernelWizardOptions()
        self.opt = opt
        nf = opt.nf
        lrelu = nn.LeakyReLU(0.1)
        self.feature_extractor = nn.Sequential(
            nn.Conv2d(opt.input_nc, nf, 3, 1, 1),
            lrelu,
            nn.Conv2d(nf, nf, 3, 2, 1),
            lrelu,
            nn.Conv2d(nf, nf, 3, 2, 1),
            lrelu,
            *[ResidualBlockNoBN(nf) for _ in range(opt.front_RBs)],
        )
        self.kernel_extractor = KernelExtractor(opt)
        self.adapter = KernelAdapter(opt)
        self.recon_trunk = nn.Sequential(
            *[ResidualBlockNoBN(nf) for _ in range(opt.back_RBs)],
            nn.Conv2d(nf, 4 * nf, 3, 1, 1),
            nn.PixelShuffle(2),
            lrelu,
            nn.Conv2d(nf, 4 * 64, 3, 1, 1),
            nn.PixelShuffle(2),
            lrelu,
            nn.Conv2d(64, 64, 3, 1, 1),
            lrelu,
            nn.Conv2d(64, opt.input_nc, 3, 1, 1),
        )

    def code_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """The kernel code's (channels, h, w) for an image of (height, width): (512, 2, 2) at 256 px."""
        return 8 * self.opt.nf, height // self.code_stride, width // self.code_stride

    def adapt_kernel(self, x_sharp: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """The sharp image (B, 3, H, W) in [0, 1] blurred by the kernel ``code`` (B, 8 nf, H / 128, W / 128)
        (bkse ``adaptKernel``: the reconstruction of the adapted features plus the input)."""
        features = self.feature_extractor(x_sharp)
        return self.recon_trunk(self.adapter(features, code)) + x_sharp

    def forward(self, x_sharp: torch.Tensor, x_blur: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The kernel code of a (sharp, blurred) pair (bkse ``forward``): mean and log-variance."""
        return self.kernel_extractor(self.feature_extractor(x_sharp), self.feature_extractor(x_blur))
