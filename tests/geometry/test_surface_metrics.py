"""Point-to-surface metrics: known answers on spheres, and no sampling floor."""

import numpy as np
import trimesh

from stdgen.geometry.metrics import point_metrics, sample_surface
from stdgen.geometry.surface_metrics import surface_metrics
from stdgen.structures.mesh import Mesh


def _sphere(radius=1.0, subdivisions=4):
    s = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return Mesh(np.asarray(s.vertices), np.asarray(s.faces))


def test_identical_surfaces_measure_zero_unlike_point_to_point():
    m = _sphere()
    surf = surface_metrics(m, m, count=20000, thresholds=(0.01,))
    # Point-to-point compares two samplings of the mesh: about half their spacing even for one surface.
    floor = point_metrics(sample_surface(m, 20000, 1), sample_surface(m, 20000, 0), ())["chamfer"]
    assert floor > 0.005
    # Point-to-surface: a point near an edge may be matched to the neighbouring facet, off by
    # a hair's breadth (measured 1e-5), 500x below the floor.
    assert surf["chamfer"] < 1e-4 and surf["normal_consistency"] > 0.999


def test_concentric_spheres_measure_the_gap():
    """Spheres of radii 1 and 1.05 (icospheres: flat facets sit a little inside the radius)."""
    a, b = _sphere(1.0, 5), _sphere(1.05, 5)
    m = surface_metrics(a, b, count=40000, thresholds=(0.04, 0.06))
    assert abs(m["chamfer"] - 0.05) < 0.002, m
    assert m["fscore@0.04"] < 0.05 and m["fscore@0.06"] > 0.95
    assert m["normal_consistency"] > 0.999


def test_nearest_triangle_is_exact_for_coarse_meshes():
    """Points far from a coarse mesh's samples still get the exact distance (a big octahedron vs a
    small one: every point's nearest triangle is the parallel face)."""
    big = trimesh.creation.icosphere(subdivisions=0, radius=2.0)
    small = trimesh.creation.icosphere(subdivisions=0, radius=1.0)
    m = surface_metrics(Mesh(np.asarray(small.vertices), np.asarray(small.faces)),
                        Mesh(np.asarray(big.vertices), np.asarray(big.faces)), count=5000, thresholds=())
    pts = np.asarray(trimesh.sample.sample_surface(small, 5000, seed=0)[0])
    exact = np.abs(trimesh.proximity.signed_distance(big, pts)).mean()
    assert abs(m["accuracy"] - exact) < 0.02 * exact, (m, exact)
