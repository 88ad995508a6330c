"""Voxelising layered meshes: signs, distances, classes in layer order."""

import numpy as np
import pytest
import trimesh
from geometry_standin import standin_character, standin_sdfs

from stdgen.geometry.grid import Grid
from stdgen.geometry.voxelize import character_grid, mesh_distance, mesh_sdf, voxelize_character, voxelize_parts
from stdgen.structures.mesh import Mesh, merge_meshes
from stdgen.structures.semantics import Part


def _sphere(r, inverted=False):
    s = trimesh.creation.icosphere(4, radius=r)
    return Mesh(s.vertices, s.faces[:, ::-1] if inverted else s.faces)


def test_mesh_sdf_matches_the_analytic_sphere():
    grid = Grid.cube(33, 1.0)
    d = mesh_sdf(_sphere(0.6), grid, band=3.0)
    r = np.linalg.norm(grid.points_numpy(), axis=-1)
    h = grid.spacing[0]
    exact = r - 0.6
    near = np.abs(exact) < 2.5 * h
    # Within the band: exact distance to the icosphere, which is within 0.002 of the sphere.
    assert np.abs(d[near] - exact[near]).max() < 0.002
    # Beyond it: clamped to the band with the right sign.
    far = np.abs(exact) > 3.5 * h
    assert np.allclose(np.abs(d[far]), 3.0 * h) and np.array_equal(d[far] < 0, exact[far] < 0)


def test_nested_layers_fill_the_gap_under_clothes():
    grid = Grid.cube(41, 1.0)
    cap = trimesh.creation.icosphere(4, radius=1.0)
    cap.vertices = cap.vertices * [0.35, 0.12, 0.35] + [0.0, 0.62, 0.0]  # a hair blob on top
    parts = {Part.BODY: _sphere(0.4), Part.CLOTHES: merge_meshes([_sphere(0.55), _sphere(0.42, inverted=True)]),
             Part.HAIR: Mesh(cap.vertices, cap.faces)}
    fld = voxelize_parts(parts, grid, far_field="edt")
    p = grid.points_numpy()
    r = np.linalg.norm(p, axis=-1)
    h = grid.spacing[0]
    hair_d = np.linalg.norm((p - [0.0, 0.62, 0.0]) / [0.35, 0.12, 0.35], axis=-1)
    clear = np.all([np.abs(r - x) > h for x in (0.4, 0.42, 0.55)], axis=0) & (np.abs(hair_d - 1) > 0.3)
    assert np.allclose(fld.probs.sum(-1), 1, atol=1e-5)
    lab = fld.labels
    # Innermost containing solid: body inside 0.4; clothes from there to 0.55, the 2 cm air gap
    # under the garment included (renders cannot see it); hair in the blob outside the clothes.
    assert np.all(lab[clear & (r < 0.4)] == Part.BODY)
    gap = (r > 0.403) & (r < 0.417)
    assert gap.sum() > 10 and np.all(lab[gap] == Part.CLOTHES)
    assert np.all(lab[clear & (r > 0.42) & (r < 0.55)] == Part.CLOTHES)
    assert np.all(lab[clear & (hair_d < 1) & (r > 0.55)] == Part.HAIR)
    solid = fld.sdf < 0
    assert np.all(solid[clear & (r < 0.55)]) and not np.any(solid[clear & (r > 0.55) & (hair_d > 1)])
    # The union field is exact near the outer sphere (where no inner surface is nearer: the magnitude
    # is the distance to the nearest surface of any layer), and the layer solids nest.
    band = (np.abs(r - 0.55) < 2 * h) & (r > 0.49) & (p[..., 1] < 0.3)  # away from the hair blob
    assert np.abs(fld.sdf[band] - (r[band] - 0.55)).max() < 0.003
    solids = fld.layer_sdf < 0
    assert np.all(solids[1][solids[0]]) and np.all(solids[2][solids[1]])  # the layer solids nest
    # Far outside: the distance transform's estimate is within a cell and a half.
    far = (r > 0.55 + 4 * h) & (p[..., 1] < -0.2)  # below: the sphere is the nearest surface
    assert np.abs(fld.sdf[far] - (r[far] - 0.55)).max() < 1.5 * h
    onehot = voxelize_parts(parts, grid, temperature=0.0).probs
    assert set(np.unique(onehot)) == {0.0, 1.0} and np.array_equal(onehot.argmax(-1), lab)
    clamped = voxelize_parts(parts, grid).sdf
    assert np.array_equal(clamped < 0, solid) and np.abs(clamped).max() <= 3 * h + 1e-6


def test_fill_stays_near_its_layer():
    # Two slabs of body with a 1 cm slit between them, and a garment far away: the slit is not clothes.
    grid = Grid.cube(41, 1.0)
    a = trimesh.creation.box((0.3, 0.6, 0.6))
    a.vertices += [-0.16, 0.0, 0.0]
    b = trimesh.creation.box((0.3, 0.6, 0.6))
    b.vertices += [0.16, 0.0, 0.0]
    body = merge_meshes([Mesh(a.vertices, a.faces), Mesh(b.vertices, b.faces)])
    far = trimesh.creation.icosphere(2, radius=0.1)
    far.vertices += [0.0, 0.8, 0.0]
    fld = voxelize_parts({Part.BODY: body, Part.CLOTHES: Mesh(far.vertices, far.faces)}, grid)
    slit = fld.sdf[20, 15:26, 15:26]  # x = 0, between the slabs
    assert np.all(slit > 0)


def test_character_grid_has_cubic_cells_and_a_margin():
    b = np.array([[-0.3, 0.0, -0.2], [0.3, 1.6, 0.2]])
    g = character_grid(b, (100, 150, 100), margin=0.03)
    assert g.shape == (100, 150, 100) and len(set(g.spacing)) == 1
    assert np.all(g.lo <= b[0] - 0.03 * 1.6 + 1e-9) and np.all(g.hi >= b[1] + 0.03 * 1.6 - 1e-9)
    assert np.allclose((g.lo + g.hi) / 2, b.mean(0))
    with pytest.raises(ValueError, match="resolution"):
        character_grid(b, 2)


def test_voxelize_standin_character_follows_its_analytic_parts():
    ch = standin_character(step=0.012)
    fld = voxelize_character(ch, 48)
    pts = fld.grid.points_numpy()
    true = standin_sdfs(pts)
    h = fld.grid.spacing[0]
    # Away from every surface (more than the meshing error + a cell), the classes are the analytic ones.
    clear = np.all([np.abs(d) > 1.5 * h for d in true.values()], axis=0)
    inside = {p: true[p] < 0 for p in Part}
    want = np.full(pts.shape[:3], 255)
    for p in (Part.HAIR, Part.CLOTHES, Part.BODY):  # innermost wins: write outer ones first
        want[inside[p]] = int(p)
    lab = fld.labels
    sel = clear & (want != 255)
    assert np.array_equal(lab[sel], want[sel])
    assert np.array_equal((fld.sdf < 0)[clear], (want != 255)[clear])


def test_distance_to_degenerate_triangles():
    # A triangle with two equal corners (a segment) and one with all three equal (a point).
    grid = Grid.cube(9, 1.0)
    seg = Mesh(np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.5, 0.0, 0.0]]), np.array([[0, 1, 2]]))
    d, near = mesh_distance(seg, grid, 10.0)
    p = grid.points_numpy()
    t = np.clip(p[..., 0] / 0.5, 0, 1)
    want = np.linalg.norm(p - np.stack([0.5 * t, 0 * t, 0 * t], -1), axis=-1)
    assert np.allclose(d, want) and np.all(near == 0)
    dot = Mesh(np.array([[0.25, 0.25, 0.25]] * 3), np.array([[0, 1, 2]]))
    d, _ = mesh_distance(dot, grid, 10.0)
    assert np.allclose(d, np.linalg.norm(p - 0.25, axis=-1))
