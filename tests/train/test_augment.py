"""Conditioning-image augmentations: shapes, ranges, and analytic cases."""

from __future__ import annotations

import torch

from stdgen.train.augment import (
    affine_jitter,
    blur_sharpen,
    color_shift,
    dilate,
    edge_map,
    hue_saturation_matrices,
    jpeg_like,
    posterize,
    style_augment,
)


def _images(b: int = 3, res: int = 20, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    alpha = torch.zeros(b, 1, res, res)
    alpha[..., 4:16, 6:14] = 1.0
    rgb = torch.rand(b, 3, res, res, generator=g) * alpha + (1 - alpha)
    normal = torch.nn.functional.normalize(torch.randn(b, 3, res, res, generator=g), dim=1) * alpha
    return rgb, alpha, normal


def test_style_augment_keeps_shape_range_and_is_seeded():
    rgb, alpha, normal = _images()
    out = style_augment(rgb, alpha, normal, alpha * 2.0, probability=1.0, generator=torch.Generator().manual_seed(1))
    assert out.shape == rgb.shape and out.min() >= 0 and out.max() <= 1
    again = style_augment(rgb, alpha, normal, probability=1.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, again)
    assert torch.equal(style_augment(rgb, alpha, normal, probability=0.0), rgb)


def test_affine_identity_and_shift():
    rgb, _, _ = _images(res=16)
    same = affine_jitter(rgb, torch.ones(3), torch.zeros(3, 2))
    torch.testing.assert_close(same, rgb, atol=1e-5, rtol=0)
    # Shift by a quarter of the side: pixel (y, x) moves to (y, x + 4).
    moved = affine_jitter(rgb, torch.ones(3), torch.tensor([[0.25, 0.0]] * 3))
    torch.testing.assert_close(moved[..., 4:], rgb[..., :12], atol=1e-5, rtol=0)


def test_color_maps_identity_and_grey_invariance():
    b = 4
    m = hue_saturation_matrices(torch.zeros(b), torch.ones(b), torch.ones(b))
    torch.testing.assert_close(m, torch.eye(3).expand(b, 3, 3))
    m = hue_saturation_matrices(torch.full((b,), 73.0), torch.full((b,), 0.5), torch.ones(b))
    torch.testing.assert_close(m @ torch.ones(3), torch.ones(b, 3))  # grey stays grey
    rgb, alpha, _ = _images()
    out = color_shift(rgb, alpha, torch.full((3,), 90.0), torch.ones(3), torch.ones(3))
    assert torch.equal(out[alpha.expand_as(out) == 0], rgb[alpha.expand_as(rgb) == 0])  # background kept


def test_posterize_bands_and_background():
    rgb = torch.full((1, 3, 4, 4), 0.3)  # grey: luminance 0.3
    alpha = torch.ones(1, 1, 4, 4)
    alpha[..., 0, 0] = 0
    out = posterize(rgb, alpha, torch.tensor([2.0]))
    # Two bands: luminance 0.3 falls in [0, 0.5) -> 0.25.
    torch.testing.assert_close(out[0, :, 1, 1], torch.full((3,), 0.25))
    torch.testing.assert_close(out[0, :, 0, 0], torch.full((3,), 0.3))


def test_edges_and_dilation():
    _, alpha, normal = _images(b=1)
    e = edge_map(alpha, normal * 0)
    assert e[0, 0, 10, 5] == 1 or e[0, 0, 10, 6] == 1  # left silhouette edge
    assert e[0, 0, 10, 10] == 0 and e[0, 0, 0, 0] == 0
    # A step of 10 cm inside the silhouette (an arm in front of the body) is a contour; 1 cm is not.
    depth = alpha * 2.0
    depth[..., :, 10:] += 0.1 * alpha[..., :, 10:]
    e = edge_map(alpha, normal * 0, depth)
    assert e[0, 0, 10, 9] == 1 and e[0, 0, 10, 8] == 0
    depth[..., :, 10:] -= 0.09 * alpha[..., :, 10:]
    assert edge_map(alpha, normal * 0, depth)[0, 0, 10, 9] == 0
    one = torch.zeros(2, 1, 9, 9)
    one[:, :, 4, 4] = 1
    d = dilate(one, torch.tensor([0, 2]), max_width=3)
    assert d[0].sum() == 1 and d[1].sum() == 25


def test_blur_sharpen_and_jpeg():
    flat = torch.full((2, 3, 16, 16), 0.4)
    torch.testing.assert_close(blur_sharpen(flat, torch.tensor([-1.0, 1.0])), flat)
    torch.testing.assert_close(jpeg_like(flat, torch.tensor([30.0, 90.0])), flat, atol=2 / 255, rtol=0)
    rgb, _, _ = _images(b=2, res=20)
    low, high = jpeg_like(rgb, torch.tensor([10.0, 10.0])), jpeg_like(rgb, torch.tensor([95.0, 95.0]))
    assert low.shape == rgb.shape
    assert (high - rgb).abs().mean() < (low - rgb).abs().mean()
