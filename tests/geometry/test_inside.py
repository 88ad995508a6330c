"""Point-in-mesh tests: analytic answers, the solid-angle reference, and the degenerate rays."""

import numpy as np
import pytest
import trimesh

from stdgen.geometry.inside import contains, contains_grid, ray_winding_numbers, winding_numbers
from stdgen.structures.mesh import Mesh


def _mesh(tm: trimesh.Trimesh) -> Mesh:
    return Mesh(tm.vertices, tm.faces)


@pytest.fixture(scope="module")
def sphere():
    return _mesh(trimesh.creation.icosphere(3, radius=1.0))


def test_sphere_matches_analytic_and_reference(sphere):
    rng = np.random.default_rng(0)
    pts = rng.uniform(-1.3, 1.3, (4000, 3))
    r = np.linalg.norm(pts, axis=1)
    # The icosphere's inscribed radius is > 0.98: stay clear of the faceted band.
    clear = (r < 0.97) | (r > 1.01)
    got = contains(sphere, pts)
    assert np.array_equal(got[clear], r[clear] < 1.0)
    assert np.array_equal(got[:800], winding_numbers(sphere, pts[:800]) > 0.5)


def test_rays_through_vertices_and_edges_count_once():
    # A unit cube has edges and vertices exactly on the query lines of this grid: every ray of
    # contains_grid and contains passes through shared edges or vertices somewhere.
    cube = _mesh(trimesh.creation.box((1.0, 1.0, 1.0)))
    axis = np.linspace(-1.0, 1.0, 21)  # contains +-0.5 exactly
    grid = contains_grid(cube, axis, axis, axis)
    pts = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    assert np.array_equal(grid.reshape(-1), contains(cube, pts))
    strictly_in = (np.abs(pts) < 0.5 - 1e-9).all(1)
    strictly_out = (np.abs(pts) > 0.5 + 1e-9).any(1)
    flat = grid.reshape(-1)
    assert flat[strictly_in].all()
    assert not flat[strictly_out].any()
    # Winding numbers are only ever 0 or 1 for one closed surface: no ray was counted twice.
    assert set(np.unique(ray_winding_numbers(cube, pts))) <= {0, 1}


def test_query_through_a_vertex_of_a_fan():
    # Octahedron: the +X ray from the origin-line points passes exactly through vertex (0, 0, 1)'s
    # neighbourhood edges; points on the z axis at different x go through the apex fan.
    octa = _mesh(trimesh.Trimesh(
        vertices=[[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]],
        faces=[[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]]))
    pts = np.array([[-2.0, 0, 0], [-0.5, 0, 0], [0.0, 0, 0], [0.5, 0, 0], [2.0, 0, 0],
                    [-2.0, 0.0, 0.5], [0.0, 0.0, 0.5], [0.2, 0.0, 0.5]])
    expected = np.abs(pts).sum(1) < 1.0
    assert np.array_equal(contains(octa, pts), expected)


def test_overlapping_union_is_inside():
    a = trimesh.creation.icosphere(3, radius=1.0)
    b = a.copy()
    b.vertices += [0.8, 0.0, 0.0]
    union = _mesh(trimesh.util.concatenate([a, b]))
    pts = np.array([[0.4, 0.0, 0.0], [-0.5, 0.0, 0.0], [1.3, 0.0, 0.0], [2.5, 0.0, 0.0]])
    # Parity would call the overlap (first point, winding 2) outside.
    assert list(contains(union, pts)) == [True, True, True, False]
    assert ray_winding_numbers(union, pts)[0] == 2


def test_inside_out_and_unwelded_meshes(sphere):
    rng = np.random.default_rng(1)
    pts = rng.uniform(-1.2, 1.2, (2000, 3))
    want = contains(sphere, pts)
    flipped = Mesh(sphere.vertices, sphere.faces[:, ::-1])
    assert np.array_equal(contains(flipped, pts), want)
    # Every face with its own three vertices: shared edges are found by coordinates.
    soup = Mesh(sphere.vertices[sphere.faces.reshape(-1)], np.arange(sphere.num_faces * 3).reshape(-1, 3))
    assert np.array_equal(contains(soup, pts), want)


def test_grid_matches_points_on_a_torus():
    torus = _mesh(trimesh.creation.torus(1.0, 0.35, major_sections=24, minor_sections=12))
    xs = np.linspace(-1.5, 1.5, 23)
    ys = np.linspace(-0.5, 0.5, 9)
    zs = np.linspace(-1.5, 1.5, 19)
    grid = contains_grid(torus, xs, ys, zs)
    pts = np.stack(np.meshgrid(xs, ys, zs, indexing="ij"), -1).reshape(-1, 3)
    assert np.array_equal(grid.reshape(-1), contains(torus, pts))
    assert np.array_equal(grid.reshape(-1)[::3], winding_numbers(torus, pts[::3]) > 0.5)
    assert grid.any() and not grid.all()


def test_empty_inputs(sphere):
    empty = Mesh(np.zeros((0, 3)), np.zeros((0, 3), np.int32))
    assert contains(empty, np.zeros((5, 3))).tolist() == [False] * 5
    assert contains(sphere, np.zeros((0, 3))).shape == (0,)
    assert contains_grid(empty, [0.0], [0.0, 1.0], [0.0]).shape == (1, 2, 1)
    with pytest.raises(ValueError, match="increasing"):
        contains_grid(sphere, [1.0, 0.0], [0.0], [0.0])
