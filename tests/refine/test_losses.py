"""Refinement losses: known values, finite-difference gradients, penetration depth."""

import numpy as np
import torch
import trimesh

from stdgen.refine.losses import (
    collision_loss,
    laplacian_loss,
    mask_loss,
    masked_normal_loss,
    penetration_depth,
    surface_samples,
)


def test_mask_and_normal_losses_known_values():
    pred = torch.zeros(2, 4, 4, 1)
    target = torch.zeros(2, 4, 4, 1)
    target[0, :2] = 1.0  # half of view 0 differs by 1
    # sum over views of the per-view mean: 0.5 + 0
    assert torch.isclose(mask_loss(pred, target), torch.tensor(0.5))
    # With a full-frame pixel count of 32 (the images are crops of a 32-pixel frame): 8 / 32.
    assert torch.isclose(mask_loss(pred, target, pixels=32), torch.tensor(0.25))
    n_pred = torch.zeros(1, 2, 2, 3)
    n_true = torch.ones(1, 2, 2, 3)
    w = torch.tensor([1.0, 0.0, 0.0, 0.0]).reshape(1, 2, 2, 1)
    # Only one pixel is weighted: its squared error is 3; mean over the 4 pixels.
    assert torch.isclose(masked_normal_loss(n_pred, n_true, w), torch.tensor(0.75))


def _plane(n=5):
    xs = np.linspace(-1, 1, n)
    gx, gz = np.meshgrid(xs, xs)
    v = np.stack([gx.ravel(), np.zeros(n * n), gz.ravel()], 1)
    return v, np.tile([0.0, 1.0, 0.0], (n * n, 1))


def test_collision_loss_is_eq13():
    iv, inn = _plane()
    outer = torch.tensor([[0.0, -0.1, 0.0], [0.5, 0.2, 0.5], [-0.5, -0.3, 0.5]], dtype=torch.float64)
    # Depths behind the plane along its normal: 0.1, 0 (in front), 0.3; scaled by 1/2.
    expected = ((0.1 / 2) ** 3 + 0 + (0.3 / 2) ** 3) / 3
    got = collision_loss(outer, iv, inn, scale=2.0)
    assert abs(float(got) - expected) < 1e-12
    # Nothing behind the plane: zero loss and zero gradient.
    front = torch.tensor([[0.0, 0.05, 0.0]], dtype=torch.float64, requires_grad=True)
    loss = collision_loss(front, iv, inn)
    loss.backward()
    assert float(loss.detach()) == 0.0 and float(front.grad.abs().sum()) == 0.0


def test_collision_loss_gradient_matches_finite_differences():
    iv, inn = _plane()
    x = torch.tensor([[0.1, -0.2, 0.05], [0.3, -0.05, -0.2]], dtype=torch.float64, requires_grad=True)
    loss = collision_loss(x, iv, inn, scale=0.5)
    (g,) = torch.autograd.grad(loss, x)
    eps = 1e-6
    num = torch.zeros_like(x)
    for i in range(2):
        for k in range(3):
            d = torch.zeros_like(x)
            d[i, k] = eps
            hi = collision_loss(x + d, iv, inn, scale=0.5)
            lo = collision_loss(x - d, iv, inn, scale=0.5)
            num[i, k] = (hi - lo) / (2 * eps)
    assert torch.allclose(g, num, rtol=1e-5, atol=1e-9)
    # The gradient pushes the points out along the plane normal (+y).
    assert (g[:, 1] < 0).all() and torch.allclose(g[:, [0, 2]], torch.zeros(2, 2, dtype=torch.float64))


def test_laplacian_loss_zero_on_flat_regular_grid_interior_and_positive_on_a_spike():
    v, _ = _plane(3)  # 3x3 grid, centre vertex 4
    edges = torch.tensor([[0, 1], [1, 2], [3, 4], [4, 5], [6, 7], [7, 8], [0, 3], [3, 6], [1, 4], [4, 7],
                          [2, 5], [5, 8]])
    x = torch.tensor(v)
    ell = torch.ones(9, dtype=torch.float64)
    lap = laplacian_loss(x, edges, ell)
    x2 = x.clone()
    x2[4, 1] = 0.5
    assert float(laplacian_loss(x2, edges, ell)) > float(lap)


def test_penetration_depth_on_a_sphere():
    s = trimesh.creation.icosphere(4)
    pts = np.array([[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.9, 0.0], [0.0, 0.0, 1.2]])
    d = penetration_depth(pts, s.vertices, s.faces)
    # The icosphere's faces lie up to ~0.1 % inside the unit sphere; dense sampling of them.
    assert np.allclose(d, [1.0, 0.5, 0.1, 0.0], atol=0.004)


def test_surface_samples_cover_the_surface_and_point_outward():
    s = trimesh.creation.icosphere(3)
    p, n = surface_samples(s.vertices, s.faces, spacing=0.02)
    assert len(p) > 10000
    assert np.allclose(np.linalg.norm(p, axis=1), 1.0, atol=0.01)
    assert ((p * n).sum(1) > 0.95).all()
