"""Blur at 512 px with a 121x121 kernel (PSLD's size) in reduced precision: float16 / bfloat16 inputs and
autocast give the float32 FFT result within the precision's tolerance, with bounded memory."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from operators import make_operator
from operators.random import generators_from_seeds

REPO = Path(__file__).resolve().parents[2]
#: rounding of the input and the output to the precision: |x| <= 1, so a few units in the last place
TOLERANCE = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


@pytest.fixture(scope="module")
def blur():
    return make_operator("motion_blur", kernel_size=121, generator=generators_from_seeds([0]))


@pytest.fixture(scope="module")
def image():
    return torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(1)) * 2 - 1


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_give_the_float32_fft_result(blur, image, dtype):
    x = image.to(dtype)
    want = blur(x.float())  # float32 input: the FFT path
    got = blur(x)
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), want, rtol=0, atol=TOLERANCE[dtype])
    back = blur.adjoint(got)
    assert back.dtype == dtype
    torch.testing.assert_close(back.float(), blur.adjoint(got.float()), rtol=0, atol=4 * TOLERANCE[dtype])


def test_under_autocast_the_blur_stays_float32(blur, image):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = blur(image)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, blur(image), rtol=0, atol=1e-6)


MEMORY_SCRIPT = textwrap.dedent(
    """
    import resource, torch
    from operators import make_operator
    from operators.random import generators_from_seeds
    torch.set_num_threads(1)
    op = make_operator("motion_blur", kernel_size=121, generator=generators_from_seeds([0]))
    x = (torch.rand(1, 3, 512, 512) * 2 - 1).half()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    y = op(x)
    op.adjoint(y)
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)  # KiB -> MiB (Linux)
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux")
def test_float16_peak_memory_is_bounded():
    """Bound: 256 MiB over the process's peak before the call. The float32 FFT holds a few (3, 632, 632) spectra
    (~5 MB each); the float16 grouped convolution it replaces unfolded 121^2 values per pixel (> 8 GB)."""
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=120, check=True
    )
    assert float(out.stdout.strip().splitlines()[-1]) < 256
