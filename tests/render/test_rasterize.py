"""Rasterisation against analytic answers, for the reference and the CPU fast path."""

import math

import numpy as np
import pytest
import torch
import trimesh

from stdgen.render import (
    VISIBILITY_BACKENDS,
    interpolate,
    orthographic_cameras,
    perspective_cameras,
    rasterize,
    render_mesh,
    visibility,
)
from stdgen.render.shade import linear_depth
from stdgen.structures.mesh import Mesh

BACKENDS = ["torch", "numba"]


def _clip2d(xy, z=0.0) -> torch.Tensor:
    """(N, 2) NDC points -> (1, N, 4) clip positions with w = 1 (an orthographic view)."""
    xy = torch.as_tensor(xy, dtype=torch.float32).reshape(-1, 2)
    zz = torch.as_tensor(z, dtype=torch.float32).expand(xy.shape[0])
    return torch.cat([xy, zz[:, None], torch.ones(xy.shape[0], 1)], -1)[None]


@pytest.mark.parametrize("backend", BACKENDS)
def test_axis_aligned_quad_covers_its_pixel_block_exactly(backend):
    # Corners on pixel boundaries: the centres inside are exactly the block (the diagonal passes
    # through centres, which both halves cover; the union is still the block).
    h, w = 20, 32
    x0, x1, r0, r1 = 5, 23, 3, 15  # columns [5, 23), rows [3, 15)
    xs = [2 * x0 / w - 1, 2 * x1 / w - 1]
    ys = [1 - 2 * r1 / h, 1 - 2 * r0 / h]
    pos = _clip2d([[xs[0], ys[0]], [xs[1], ys[0]], [xs[1], ys[1]], [xs[0], ys[1]]])
    tri = torch.tensor([[0, 1, 2], [0, 2, 3]])
    cov = rasterize(pos, tri, (h, w), backend=backend)[0, ..., 3] > 0
    expect = torch.zeros(h, w, dtype=torch.bool)
    expect[r0:r1, x0:x1] = True
    assert torch.equal(cov, expect)


@pytest.mark.parametrize("backend", BACKENDS)
def test_coverage_of_random_triangles_matches_their_area(backend):
    rng = np.random.default_rng(0)
    h = w = 256
    errors = []
    for _ in range(20):
        px = rng.uniform(0, w, size=(3, 2))  # corners in pixel units
        (ax, ay), (bx, by) = px[1] - px[0], px[2] - px[0]
        area = 0.5 * abs(ax * by - ay * bx)
        perim = sum(np.linalg.norm(px[k] - px[(k + 1) % 3]) for k in range(3))
        ndc = np.stack([2 * px[:, 0] / w - 1, 1 - 2 * px[:, 1] / h], -1)
        count = int((rasterize(_clip2d(ndc), torch.tensor([[0, 1, 2]]), (h, w), backend=backend)[..., 3] > 0).sum())
        assert abs(count - area) <= 0.5 * perim + 1, (count, area, perim)
        errors.append((count - area) / max(perim, 1))
    assert abs(float(np.mean(errors))) < 0.1  # no systematic bias (e.g. a half-pixel offset)


def _cube() -> Mesh:
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    return Mesh(box.vertices, box.faces)


@pytest.mark.parametrize("backend", BACKENDS)
def test_cube_from_known_cameras_gives_known_depth_normals_and_coverage(backend):
    cube = _cube()
    res = 64
    cams = orthographic_cameras([0.0, 90.0, -90.0, 180.0], 0.0, half_size=1.0, distance=10.0)
    out = render_mesh(cube, cams, res, shading="flat", smooth_normals=False, antialiasing=False, backend=backend)
    mask = out.rast[..., 3] > 0
    expect = torch.zeros(res, res, dtype=torch.bool)
    expect[16:48, 16:48] = True  # the cube spans NDC [-0.5, 0.5]: exactly the central half
    for v, normal in enumerate([(0, 0, 1), (1, 0, 0), (-1, 0, 0), (0, 0, -1)]):
        assert torch.equal(mask[v], expect)
        torch.testing.assert_close(out.depth[v][mask[v]], torch.full((32 * 32, 1), 9.5), atol=1e-4, rtol=0)
        torch.testing.assert_close(out.normal[v][mask[v]], torch.tensor(normal, dtype=torch.float32).expand(1024, 3))
    # Perspective, straight on from 3 m: only the front face shows, at depth 2.5, within the
    # projected half-width f * 0.5 / 2.5.
    fov = 40.0
    cams = perspective_cameras([0.0], 0.0, 3.0, fov_y_deg=fov, near=0.1, far=10.0)
    out = render_mesh(cube, cams, res, shading="flat", smooth_normals=False, antialiasing=False, backend=backend)
    mask = out.rast[0, ..., 3] > 0
    half = 0.5 / 2.5 / math.tan(math.radians(fov / 2))  # NDC half-extent of the front face
    centres = (2 * torch.arange(res) + 1) / res - 1
    inside = centres.abs() <= half
    assert torch.equal(mask, inside[:, None] & inside[None, :])
    torch.testing.assert_close(out.depth[0][mask], torch.full((int(mask.sum()), 1), 2.5), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.normal[0][mask], torch.tensor([0.0, 0.0, 1.0]).expand(int(mask.sum()), 3))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_overlapping_triangles_come_out_in_depth_order(backend, order):
    near = [[-0.8, -0.8], [0.6, -0.8], [-0.1, 0.7]]
    far = [[-0.6, -0.6], [0.8, -0.6], [0.1, 0.9]]
    tris = [(near, -0.2), (far, 0.4)]
    pos = torch.cat([_clip2d(tris[k][0], tris[k][1]) for k in order], 1)
    tri = torch.tensor([[0, 1, 2], [3, 4, 5]])
    rast = rasterize(pos, tri, (48, 48), backend=backend)
    near_id = order.index(0) + 1
    near_only = rasterize(_clip2d(near, -0.2), tri[:1], (48, 48), backend=backend)[..., 3] > 0
    # Wherever the near triangle covers a pixel it wins, with its own depth.
    assert bool((rast[..., 3][near_only] == near_id).all())
    torch.testing.assert_close(rast[..., 2][near_only], torch.full((int(near_only.sum()),), -0.2))
    # The far one shows elsewhere.
    assert bool(((rast[..., 3] == 3 - near_id) | ~(rast[..., 3] > 0) | near_only).all())
    assert bool((rast[..., 3] == 3 - near_id).any())


@pytest.mark.parametrize("backend", BACKENDS)
def test_depth_ties_go_to_the_lower_face_index(backend):
    pos = _clip2d([[-0.9, -0.9], [0.9, -0.9], [0.0, 0.9]], 0.1)
    tri = torch.tensor([[0, 1, 2], [0, 1, 2], [1, 2, 0]])
    rast = rasterize(pos, tri, (32, 32), backend=backend)
    ids = rast[..., 3][rast[..., 3] > 0]
    assert ids.numel() > 100 and bool((ids == 1).all())


@pytest.mark.parametrize("backend", BACKENDS)
def test_floor_crossing_the_near_plane_is_cut_per_pixel(backend):
    # A floor at y = -0.5 under a camera at the origin looking down -Z, with vertices behind the
    # eye. Each pixel below the horizon sees the floor at camera depth 0.5 / (-y_cam slope) if that
    # lies in [near, far], and nothing above it.
    fov, near, far, h, w = 60.0, 0.1, 8.0, 48, 40
    cams = perspective_cameras([0.0], 0.0, 1e-6, fov_y_deg=fov, near=near, far=far, aspect=w / h)
    floor = torch.tensor([[0.0, -0.5, 5.0], [40.0, -0.5, -40.0], [-40.0, -0.5, -40.0]])
    pos = cams.clip(floor)
    assert float(pos[0, 0, 3]) < 0  # a corner behind the eye
    tri = torch.tensor([[0, 1, 2]])
    rast = rasterize(pos, tri, (h, w), backend=backend)
    t = math.tan(math.radians(fov / 2))
    y_ndc = 1 - (2 * torch.arange(h) + 1) / h
    slope = -y_ndc * t  # how fast a ray through the row drops per metre of depth
    depth_row = torch.where(slope > 0, 0.5 / slope.clamp_min(1e-9), torch.full_like(slope, float("inf")))
    # Depth along the axis; the clip-space depth test bounds it to [near, far] (far only in the tail).
    expect_row = (depth_row >= near) & (depth_row <= far)
    cov = rast[0, ..., 3] > 0
    assert torch.equal(cov, expect_row[:, None].expand(h, w))
    depth = linear_depth(floor, tri, rast, cams)[0, ..., 0]
    torch.testing.assert_close(depth[cov], depth_row[:, None].expand(h, w)[cov], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_backface_culling(backend):
    ccw = [[-0.5, -0.5], [0.5, -0.5], [0.0, 0.5]]
    pos = torch.cat([_clip2d(ccw, 0.0), _clip2d(ccw, 0.5)], 1)
    tri = torch.tensor([[1, 0, 2], [3, 4, 5]])  # clockwise in front, counter-clockwise behind
    shown = rasterize(pos, tri, (32, 32), backend=backend)[..., 3]
    culled = rasterize(pos, tri, (32, 32), cull_backfaces=True, backend=backend)[..., 3]
    assert bool((shown[shown > 0] == 1).all())
    assert bool((culled[culled > 0] == 2).all())
    assert torch.equal(shown > 0, culled > 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_range_mode_draws_each_mesh_into_its_own_image(backend):
    a = _clip2d([[-0.8, -0.8], [0.2, -0.8], [-0.3, 0.4]])[0]
    b = _clip2d([[-0.1, -0.3], [0.9, -0.2], [0.5, 0.9], [-0.2, 0.8]], 0.3)[0]
    pos = torch.cat([a, b])
    tri = torch.tensor([[0, 1, 2], [3, 4, 5], [3, 5, 6]])
    ranges = torch.tensor([[0, 1], [1, 2], [0, 3], [3, 0]])
    rast = rasterize(pos, tri, (24, 24), ranges=ranges, backend=backend)
    alone_a = rasterize(pos[None], tri[:1], (24, 24), backend=backend)
    both = rasterize(pos[None], tri, (24, 24), backend=backend)
    torch.testing.assert_close(rast[0], alone_a[0])
    assert rast[0].any() and rast[1].any()
    only_b = rasterize(pos[None], tri[1:], (24, 24), backend=backend)[0]
    assert torch.equal(rast[1][..., 3] > 0, only_b[..., 3] > 0)
    assert torch.equal(rast[1][..., 3][rast[1][..., 3] > 0], only_b[..., 3][only_b[..., 3] > 0] + 1)
    torch.testing.assert_close(rast[2], both[0])
    assert not rast[3].any()


def test_bad_inputs_raise_clear_errors():
    pos = _clip2d([[0, 0], [1, 0], [0, 1]])
    with pytest.raises(ValueError, match="indices"):
        rasterize(pos, torch.tensor([[0, 1, 3]]), (8, 8))
    with pytest.raises(ValueError, match="resolution"):
        rasterize(pos, torch.tensor([[0, 1, 2]]), (0, 8))
    with pytest.raises(ValueError, match="unknown rasteriser backend"):
        rasterize(pos, torch.tensor([[0, 1, 2]]), (8, 8), backend="opengl")
    with pytest.raises(ValueError, match="pos"):
        rasterize(pos[0], torch.tensor([[0, 1, 2]]), (8, 8))
    with pytest.raises(ValueError, match="rast refers to face"):
        rast = rasterize(pos, torch.tensor([[0, 1, 2], [0, 1, 2]]), (8, 8))
        shifted = rast + torch.tensor([0.0, 0, 0, 5]) * (rast[..., 3:] > 0)
        interpolate(torch.zeros(3, 2), shifted, torch.tensor([[0, 1, 2]]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_mesh_and_views_outside(backend):
    pos = _clip2d([[0, 0], [1, 0], [0, 1]])
    empty = rasterize(pos, torch.zeros(0, 3, dtype=torch.long), (8, 8), backend=backend)
    assert empty.shape == (1, 8, 8, 4) and not empty.any()
    behind = pos.clone()
    behind[..., 3] = -1.0
    assert not rasterize(behind, torch.tensor([[0, 1, 2]]), (8, 8), backend=backend).any()


def test_auto_backend_on_cpu_is_the_numba_fast_path():
    from stdgen.render import _backend, _numba

    visibility(_clip2d([[0, 0], [1, 0], [0, 1]]), torch.tensor([[0, 1, 2]]), (4, 4))  # loads the fast paths
    assert VISIBILITY_BACKENDS["numba"] is _numba.visibility_numba
    assert _backend.pick("interpolate", "auto", torch.device("cpu")) is _numba.interpolate_numba
    assert _backend.pick("antialias", "auto", torch.device("cpu")) is _numba.antialias_numba
    assert _backend.pick("interpolate", "torch", torch.device("cpu")) is None


def test_triton_backend_on_cpu_tensors_says_what_it_needs():
    pytest.importorskip("triton")
    from stdgen.render import _triton

    if _triton._INTERPRET:
        pytest.skip("the interpreter runs Triton kernels on CPU tensors")
    with pytest.raises(ValueError, match="CUDA"):
        rasterize(_clip2d([[0, 0], [1, 0], [0, 1]]), torch.tensor([[0, 1, 2]]), (8, 8), backend="triton")
