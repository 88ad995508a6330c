import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from stdgen.eval import image as im


@pytest.mark.parametrize("shape", [(48, 40, 3), (33, 57, 1), (11, 11, 3), (64, 64, 4)])
@pytest.mark.parametrize("noise", [0.02, 0.3])
def test_ssim_matches_scikit_image(shape, noise):
    rng = np.random.default_rng(hash((shape, noise)) % 2**32)
    a = rng.random(shape)
    b = np.clip(a + noise * rng.standard_normal(shape), 0, 1)
    ref = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                data_range=1, channel_axis=-1)
    ours = im.ssim(torch.tensor(a, dtype=torch.float32)[None], torch.tensor(b, dtype=torch.float32)[None])
    assert abs(float(ours[0]) - ref) < 1e-4


def test_ssim_matches_scikit_image_on_flat_render_like_images():
    # Large flat regions (a white background) are where float32 variance cancellation bites.
    a = np.ones((96, 96, 3))
    yy, xx = np.mgrid[:96, :96]
    blob = (yy - 48) ** 2 / 30**2 + (xx - 48) ** 2 / 15**2 < 1
    a[blob] = (0.9, 0.6, 0.5)
    b = np.roll(a, 2, axis=1)
    ref = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                data_range=1, channel_axis=-1)
    ours = float(im.ssim(torch.tensor(a, dtype=torch.float32)[None], torch.tensor(b, dtype=torch.float32)[None])[0])
    assert abs(ours - ref) < 1e-5


def test_ssim_batch_identity_and_symmetry():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 32, 32, 3, generator=g)
    b = (a + 0.1 * torch.randn(3, 32, 32, 3, generator=g)).clamp(0, 1)
    assert torch.allclose(im.ssim(a, a), torch.ones(3, dtype=torch.float64), atol=1e-6)
    s_ab, s_ba = im.ssim(a, b), im.ssim(b, a)
    assert torch.allclose(s_ab, s_ba, atol=1e-6)
    assert (s_ab < 0.99).all()
    # Batched = one by one.
    single = torch.cat([im.ssim(a[i:i + 1], b[i:i + 1]) for i in range(3)])
    assert torch.allclose(s_ab, single, atol=1e-7)


def test_masked_ssim_ignores_pixels_outside_the_mask():
    g = torch.Generator().manual_seed(1)
    a = torch.rand(1, 40, 60, 3, generator=g)
    b = a.clone()
    b[:, :, 40:] = torch.rand(1, 40, 20, 3, generator=g)  # differ only on the right third
    left = torch.zeros(1, 40, 60, dtype=torch.bool)
    left[:, :, :25] = True  # windows of these pixels (radius 5) never reach column 40
    assert float(im.ssim(a, b, left)[0]) == pytest.approx(1.0, abs=1e-6)
    assert float(im.ssim(a, b)[0]) < 0.9
    full = torch.ones(1, 40, 60, dtype=torch.bool)
    assert torch.allclose(im.ssim(a, b, full), im.ssim(a, b))
    assert math.isnan(float(im.ssim(a, b, torch.zeros_like(full))[0]))


def test_psnr_known_values():
    a = torch.full((2, 16, 16, 3), 0.5)
    b = a + 0.1  # MSE 0.01 -> 20 dB
    assert torch.allclose(im.psnr(a, b), torch.full((2,), 20.0, dtype=torch.float64))
    assert float(im.psnr(a, a)[0]) == im.PSNR_CAP_DB
    # Masked: an error outside the mask does not count; inside it does.
    c = a.clone()
    c[:, :8] += 0.2
    mask = torch.zeros(2, 16, 16, dtype=torch.bool)
    mask[:, 8:] = True
    assert float(im.psnr(a, c, mask)[0]) == im.PSNR_CAP_DB
    assert float(im.psnr(a, c, ~mask)[0]) == pytest.approx(10 * math.log10(1 / 0.04))


def test_normal_angle_error_known_angle():
    n = torch.zeros(1, 4, 4, 3)
    n[..., 2] = 1
    for deg in (0.5, 30.0, 90.0, 150.0):
        r = math.radians(deg)
        m = torch.zeros(1, 4, 4, 3)
        m[..., 0], m[..., 2] = math.sin(r), math.cos(r)
        err = im.normal_angle_error(m, n, torch.ones(1, 4, 4, dtype=torch.bool))
        assert float(err[0]) == pytest.approx(deg, abs=1e-5)  # float32 inputs
    # Only masked pixels count.
    m = n.clone()
    m[0, 0, 0] = torch.tensor([1.0, 0, 0])
    mask = torch.ones(1, 4, 4, dtype=torch.bool)
    assert float(im.normal_angle_error(m, n, mask)[0]) == pytest.approx(90 / 16)
    mask[0, 0, 0] = False
    assert float(im.normal_angle_error(m, n, mask)[0]) == 0


def test_mask_iou_known_rectangles():
    a = torch.zeros(1, 10, 10)
    b = torch.zeros(1, 10, 10)
    a[0, :, :6] = 1  # 60 pixels
    b[0, :, 4:] = 1  # 60 pixels, overlap 20
    assert float(im.mask_iou(a, b)[0]) == pytest.approx(20 / 100)
    assert float(im.mask_iou(a, a)[0]) == 1
    assert math.isnan(float(im.mask_iou(torch.zeros(1, 3, 3), torch.zeros(1, 3, 3))[0]))


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="shape"):
        im.ssim(torch.rand(1, 20, 20, 3), torch.rand(1, 20, 21, 3))
    with pytest.raises(ValueError, match="window"):
        im.ssim(torch.rand(1, 8, 8, 3), torch.rand(1, 8, 8, 3))


def test_background_shortcut_gives_the_same_ssim():
    # Renders over a plain background: computing only around the non-background pixels must not
    # change the map (outside, both images are flat and SSIM is exactly 1).
    g = torch.Generator().manual_seed(5)
    a = torch.ones(3, 64, 80, 3)
    b = torch.ones(3, 64, 80, 3)
    a[0, 10:30, 20:40] = torch.rand(20, 20, 3, generator=g)
    b[0, 12:33, 25:41] = torch.rand(21, 16, 3, generator=g)
    a[1, 0:5, 70:80] = 0.2  # touching the border
    # image 2 is all background
    full = im.ssim_map(a, b)
    fast = im.ssim_map(a, b, background=1.0)
    assert torch.allclose(full, fast, atol=1e-6)
    assert (fast[2] == 1).all()
