"""Triplane lookup against hand-written bilinear interpolation."""

import pytest
import torch

from stdgen.geometry.triplane import PLANE_AXES, sample_triplane


def _bilinear(plane, u, v):
    """plane (C, H, W); u, v in [-1, 1] with align_corners=False; zeros outside."""
    c, h, w = plane.shape
    x = (u + 1) * w / 2 - 0.5
    y = (v + 1) * h / 2 - 0.5
    x0, y0 = int(torch.floor(x)), int(torch.floor(y))
    out = torch.zeros(c, dtype=plane.dtype)
    for dx in (0, 1):
        for dy in (0, 1):
            xi, yi = x0 + dx, y0 + dy
            wt = (1 - abs(x - xi)) * (1 - abs(y - yi))
            if 0 <= xi < w and 0 <= yi < h:
                out = out + wt * plane[:, yi, xi]
    return out


def test_matches_manual_bilinear():
    g = torch.Generator().manual_seed(0)
    planes = torch.randn(2, 3, 4, 6, 5, generator=g, dtype=torch.float64)
    pts = (torch.rand(2, 10, 3, generator=g, dtype=torch.float64) * 2 - 1) * 0.7
    out = sample_triplane(planes, pts, bound=0.7)
    assert out.shape == (2, 10, 12)
    for b in range(2):
        for n in range(10):
            want = torch.cat([_bilinear(planes[b, k], pts[b, n, a0] / 0.7, pts[b, n, a1] / 0.7)
                              for k, (a0, a1) in enumerate(PLANE_AXES)])
            torch.testing.assert_close(out[b, n], want)
    s = sample_triplane(planes, pts, bound=0.7, reduce="sum")
    torch.testing.assert_close(s, out[..., :4] + out[..., 4:8] + out[..., 8:])
    torch.testing.assert_close(sample_triplane(planes, pts, bound=0.7, reduce="mean"), s / 3)


def test_outside_reads_zero_and_gradients():
    planes = torch.randn(1, 3, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    far = torch.tensor([[[5.0, 5.0, 5.0]]], dtype=torch.float64)
    assert sample_triplane(planes, far).abs().max() == 0
    pts = (torch.rand(1, 6, 3, dtype=torch.float64) * 1.6 - 0.8).requires_grad_()
    assert torch.autograd.gradcheck(lambda p, q: sample_triplane(p, q), [planes, pts])


def test_bad_inputs():
    with pytest.raises(ValueError, match="planes"):
        sample_triplane(torch.zeros(1, 2, 4, 4, 4), torch.zeros(1, 3, 3))
    with pytest.raises(ValueError, match="reduce"):
        sample_triplane(torch.zeros(1, 3, 4, 4, 4), torch.zeros(1, 3, 3), reduce="max")
