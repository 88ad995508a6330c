import math

import numpy as np
import pytest
import trimesh

from stdgen.geometry import metrics as geo
from stdgen.structures.mesh import Mesh
from stdgen.structures.semantics import Part


def _sphere(radius=0.5, center=(0.0, 0.5, 0.0), subdivisions=5) -> Mesh:
    s = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return Mesh(np.asarray(s.vertices) + center, np.asarray(s.faces))


def _scaled(m: Mesh, s: float, about) -> Mesh:
    about = np.asarray(about, np.float32)
    return m.replace(vertices=(m.vertices - about) * s + about)


def test_sampling_is_uniform_by_area_and_on_the_surface():
    # Two triangles of areas 0.5 and 1.5 (and a degenerate one that must never be picked).
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [3, 0, 1], [0, 1, 1], [5, 5, 5]], np.float32)
    f = np.array([[0, 1, 2], [3, 4, 5], [6, 6, 6]])
    s = geo.sample_surface(Mesh(v, f), 40000, seed=1)
    share = np.bincount(s.faces, minlength=3) / len(s)
    assert share[2] == 0
    assert share[0] == pytest.approx(0.25, abs=0.01)
    on_first = s.faces == 0
    assert np.allclose(s.points[on_first, 2], 0) and (s.points[on_first, :2].sum(1) <= 1 + 1e-9).all()
    assert np.allclose(s.points[~on_first, 2], 1)
    assert np.allclose(np.abs(s.normals[:, 2]), 1)
    # Uniform within a triangle: the mean is the centroid.
    assert np.allclose(s.points[on_first].mean(0), [1 / 3, 1 / 3, 0], atol=0.01)
    # Deterministic per seed.
    assert np.array_equal(geo.sample_surface(Mesh(v, f), 100, seed=3).points,
                          geo.sample_surface(Mesh(v, f), 100, seed=3).points)


def test_identity_scores_zero_chamfer_and_full_fscore():
    m = _sphere()
    r = geo.mesh_metrics(m, m, count=5000)
    assert r["chamfer"] == 0 and r["fscore@0.01"] == 1 and r["fscore@0.02"] == 1
    assert r["normal_consistency"] == pytest.approx(1.0)


@pytest.mark.parametrize("factor", [1.1, 0.9])
def test_scaled_sphere_gives_the_chamfer_geometry_predicts(factor):
    # Concentric spheres of radii r and s r are |s - 1| r apart everywhere, in both directions.
    r = 0.5
    m = _sphere(r)
    scaled = _scaled(m, factor, (0, 0.5, 0))
    res = geo.mesh_metrics(scaled, m, count=50_000, thresholds=(0.04, 0.06))
    expected = abs(factor - 1) * r  # 0.05
    # Sampling adds a little (the nearest sample is beside the closest surface point) and the
    # icosphere's flat facets a little: within 2 %.
    assert res["chamfer"] == pytest.approx(expected, rel=0.02)
    assert res["accuracy"] == pytest.approx(expected, rel=0.02)
    assert res["fscore@0.04"] < 0.01 and res["fscore@0.06"] > 0.99
    assert res["normal_consistency"] > 0.99


def test_character_metrics_normalise_by_the_true_height_and_split_parts():
    # A "character" 2 units tall: a body sphere and a hair sphere on top.
    body = _sphere(0.5, (0, 0.5, 0))
    hair = _sphere(0.5, (0, 1.5, 0))
    true = {Part.BODY: body, Part.HAIR: hair}
    # The prediction's hair is 3 % of the height (0.06 units) larger in radius; the body is exact.
    pred = {Part.BODY: body, Part.HAIR: _scaled(hair, 1.12, (0, 1.5, 0))}
    res = geo.character_geometry_metrics(pred, true, count=50_000)
    assert geo.character_height(true) == pytest.approx(2.0)
    # The body is exact, but the two characters are sampled differently (their hair differs), so
    # it sits at the sampling floor, far below the hair's error.
    assert res["body/chamfer"] < 4e-3
    assert res["hair/chamfer"] == pytest.approx(0.06 / 2.0, rel=0.03)
    assert res["hair/fscore@0.02"] < 0.01 and res["body/fscore@0.01"] > 0.9
    # Clothes absent on both sides: undefined, not a score.
    assert math.isnan(res["clothes/chamfer"]) and math.isnan(res["clothes/fscore@0.01"])
    # A part missing from the prediction scores F = 0.
    res2 = geo.character_geometry_metrics({Part.BODY: body}, true, count=20_000)
    assert res2["hair/fscore@0.01"] == 0 and math.isnan(res2["hair/chamfer"])


def test_identical_surfaces_sampled_independently_are_near_zero():
    # The sampling floor: two independent samplings of one surface.
    m = _sphere(0.5)
    a = geo.sample_surface(m, 50_000, seed=0)
    b = geo.sample_surface(m, 50_000, seed=7)
    res = geo.point_metrics(a, b)
    assert 0 < res["chamfer"] < 4e-3 and res["fscore@0.01"] > 0.99


def test_normal_consistency_is_orientation_agnostic():
    plane = Mesh(np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float32), np.array([[0, 1, 2], [0, 2, 3]]))
    flipped = plane.replace(faces=plane.faces[:, ::-1].copy())
    assert geo.mesh_metrics(flipped, plane, count=2000)["normal_consistency"] == pytest.approx(1.0)
    # A plane at 90 degrees through the same points' neighbourhood: consistency 0.
    wall = Mesh(np.array([[0, 0, 0], [1, 0, 0], [1, 0, 1], [0, 0, 1]], np.float32), np.array([[0, 1, 2], [0, 2, 3]]))
    assert geo.mesh_metrics(wall, plane, count=2000)["normal_consistency"] == pytest.approx(0.0, abs=1e-6)
