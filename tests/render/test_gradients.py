"""Gradients: gradcheck in float64, finite differences through the whole rasteriser, and the
antialiased silhouette against finite differences of supersampled coverage."""

import numpy as np
import pytest
import torch

from stdgen.commands.render_demo import torus_knot
from stdgen.render import (
    antialias,
    antialias_topology,
    barycentrics,
    interpolate,
    perspective_cameras,
    rasterize,
    texture,
    visibility,
)

BACKENDS = ["torch", "numba"]


def _tiny_scene(dtype=torch.float64):
    """Two overlapping triangles with distinct w (a perspective-like view) in a 7 x 9 image."""
    gen = torch.Generator().manual_seed(1)
    ndc = torch.tensor([[-0.9, -0.8, 0.1], [0.7, -0.6, 0.2], [-0.1, 0.85, 0.3],
                        [-0.5, -0.2, -0.2], [0.9, 0.1, 0.5], [0.2, 0.9, 0.0]], dtype=dtype)
    w = 1 + torch.rand(6, generator=gen, dtype=dtype)
    pos = torch.cat([ndc * w[:, None], w[:, None]], -1)[None]
    tri = torch.tensor([[0, 1, 2], [3, 4, 5]])
    return pos, tri, (7, 9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_barycentrics(backend):
    pos, tri, res = _tiny_scene()
    face = visibility(pos, tri, res)
    assert (face >= 0).sum() > 20 and (face == 1).any()
    pos.requires_grad_(True)
    fn = lambda p: barycentrics(p, tri, face, backend=backend)[..., :3]
    assert torch.autograd.gradcheck(fn, (pos,), eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_interpolate(backend):
    pos, tri, res = _tiny_scene()
    rast = rasterize(pos, tri, res)
    gen = torch.Generator().manual_seed(2)
    attr = torch.randn(6, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    uv = rast[..., :2].clone().requires_grad_(True)
    rest = rast[..., 2:]  # z/w and the face id stay fixed: ids are not differentiable

    def fn(a, uv_):
        return interpolate(a, torch.cat([uv_, rest], -1), tri, backend=backend)

    assert torch.autograd.gradcheck(fn, (attr, uv), eps=1e-6, atol=1e-6, rtol=1e-4)
    per_view = torch.randn(1, 6, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (per_view, uv), eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_antialias(backend):
    pos, tri, res = _tiny_scene()
    rast = rasterize(pos, tri, res)
    topo = antialias_topology(tri)
    gen = torch.Generator().manual_seed(3)
    color = torch.rand(1, *res, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    pos.requires_grad_(True)
    fn = lambda c, p: antialias(c, rast, p, tri, topo, backend=backend)
    assert fn(color, pos).sub(color).abs().sum() > 0.1  # there are edges to blend
    assert torch.autograd.gradcheck(fn, (color, pos), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_gradcheck_texture():
    gen = torch.Generator().manual_seed(4)
    tex = torch.rand(5, 6, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    uv = (0.05 + 0.9 * torch.rand(2, 3, 4, 2, generator=gen, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t, u: texture(t, u), (tex, uv), eps=1e-6, atol=1e-6, rtol=1e-4)
    wrapped = lambda t, u: texture(t, u + 1.0, boundary_mode="wrap")
    assert torch.autograd.gradcheck(wrapped, (tex, uv), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_texture_samples_texel_centres_exactly():
    tex = torch.arange(12, dtype=torch.float32).reshape(3, 4, 1)
    i, j = torch.meshgrid(torch.arange(3), torch.arange(4), indexing="ij")
    uv = torch.stack([(j + 0.5) / 4, (i + 0.5) / 3], -1)[None].float()  # (0, 0) is the top-left corner
    torch.testing.assert_close(texture(tex, uv)[0], tex)
    torch.testing.assert_close(texture(tex, uv, filter_mode="nearest")[0], tex)


@pytest.mark.parametrize("backend", BACKENDS)
def test_interpolation_gradient_matches_finite_differences(backend):
    """d/d world vertex of sum(g * interpolate(attr, rasterize(project(v)))) against central
    differences of the full pipeline (where the perturbation leaves every face id in place)."""
    mesh = torus_knot(240)
    cams = perspective_cameras([25.0, 160.0], 15.0, 2.4)
    verts = torch.from_numpy(mesh.vertices).double()
    tri = torch.from_numpy(mesh.faces).long()
    attr = torch.from_numpy(mesh.colors).double()
    res = (32, 32)
    gen = torch.Generator().manual_seed(5)
    g = torch.randn(2, *res, 3, generator=gen, dtype=torch.float64)

    def loss(v):
        rast = rasterize(cams.clip(v), tri, res, backend=backend)
        return (interpolate(attr, rast, tri, backend=backend) * g).sum(), rast[..., 3]

    v = verts.clone().requires_grad_(True)
    value, ids = loss(v)
    value.backward()
    rng = np.random.default_rng(0)
    eps = 1e-5
    checked = 0
    samples = 40 if backend != "torch" else 8  # the reference is slow: fewer samples
    for k in rng.choice(len(verts), samples, replace=False):
        for c in range(3):
            d = torch.zeros_like(verts)
            d[k, c] = eps
            lp, ip = loss(verts + d)
            lm, im = loss(verts - d)
            if not (torch.equal(ip, ids) and torch.equal(im, ids)):
                continue  # a silhouette moved over a pixel centre: not differentiable there
            fd = float(lp - lm) / (2 * eps)
            assert abs(fd - float(v.grad[k, c])) <= 1e-4 * max(1.0, abs(fd)), (k, c, fd, float(v.grad[k, c]))
            checked += abs(fd) > 1e-3
    assert checked >= samples // 2  # enough non-trivial derivatives were compared


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("weights", ["uniform", "smooth"])
def test_antialiased_silhouette_gradient_matches_supersampled_coverage(backend, weights):
    """The gradient of sum(W * antialias(mask)) w.r.t. the corners of a triangle against central
    differences of sum(W * coverage), coverage from 16 x 16 supersampling. Antialiasing blends along
    pixel pairs only, an approximation of the box-filtered coverage: agreement within 15 % (6 % was
    measured), in direction within 1 degree or so (cosine > 0.995)."""
    h = 24
    ss = 16
    tri = torch.tensor([[0, 1, 2]])
    xy0 = torch.tensor([[-0.63, -0.55], [0.71, -0.32], [-0.12, 0.68]], dtype=torch.float64)
    i, j = torch.meshgrid(torch.arange(h), torch.arange(h), indexing="ij")
    w = torch.ones(h, h, dtype=torch.float64)
    if weights == "smooth":
        w = w + 0.5 * torch.sin(i / 5.0) + 0.3 * torch.cos(j / 4.0)

    def clip(xy):
        return torch.cat([xy, torch.zeros(3, 1, dtype=xy.dtype), torch.ones(3, 1, dtype=xy.dtype)], -1)[None]

    def coverage_loss(xy):
        fine = rasterize(clip(xy), tri, (h * ss, h * ss))[0, ..., 3] > 0
        return float((fine.double().reshape(h, ss, h, ss).mean((1, 3)) * w).sum())

    pos = clip(xy0).requires_grad_(True)
    rast = rasterize(pos, tri, (h, h), backend=backend)
    aa = antialias((rast[..., 3:] > 0).double(), rast, pos, tri, backend=backend)
    (grad,) = torch.autograd.grad((aa[0, ..., 0] * w).sum(), pos)
    grad = grad[0, :, :2]
    eps = 1.0 / h  # half a pixel in NDC
    fd = torch.zeros(3, 2, dtype=torch.float64)
    for k in range(3):
        for c in range(2):
            d = torch.zeros(3, 2, dtype=torch.float64)
            d[k, c] = eps
            fd[k, c] = (coverage_loss(xy0 + d) - coverage_loss(xy0 - d)) / (2 * eps)
    rel = float((grad - fd).norm() / fd.norm())
    cos = float(torch.nn.functional.cosine_similarity(grad.flatten(), fd.flatten(), 0))
    assert rel < 0.15 and cos > 0.995, (rel, cos, grad, fd)
