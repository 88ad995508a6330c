"""Dilation: the flow field's cutoff is exact, contact points follow fully, penetrations are pushed out."""

import numpy as np
import trimesh

from stdgen.refine.dilation import DilationConfig, falloff, flow_field, post_dilate, pre_dilate


def test_falloff_shape():
    d = np.array([0.0, 0.01, 0.05, 0.1, 0.2])
    phi = falloff(d, sigma=0.03, cutoff=0.1)
    assert phi[0] == 1.0 and phi[3] == 0.0 and phi[4] == 0.0
    assert np.all(np.diff(phi) <= 0)


def test_vertices_beyond_the_cutoff_do_not_move():
    rng = np.random.default_rng(0)
    sources = rng.uniform(-0.1, 0.1, (200, 3))
    disp = rng.normal(0, 0.02, (200, 3))
    queries = rng.uniform(-0.6, 0.6, (5000, 3))
    cutoff = 0.15
    moved = flow_field(sources, disp, queries, sigma=0.03, cutoff=cutoff)
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(sources).query(queries)
    far = dist >= cutoff
    assert far.sum() > 1000 and (~far).sum() > 100
    assert np.all(moved[far] == 0.0)
    assert np.abs(moved[~far]).sum(1).max() > 0
    # pre_dilate is the same field added to the positions.
    out = pre_dilate(queries, sources, sources + disp, DilationConfig(sigma=0.03, cutoff=cutoff))
    assert np.array_equal(out[far], queries[far])


def test_points_on_a_uniformly_moving_layer_move_with_it_and_decay_outward():
    s = trimesh.creation.icosphere(3)
    inner0 = np.asarray(s.vertices)
    inner1 = inner0 * 1.02  # the inner layer grows by 2 cm
    outer = np.asarray(s.vertices) * np.array([[1.0], [1.05], [1.5]])[np.arange(len(inner0)) % 3]
    cfg = DilationConfig(sigma=0.03, cutoff=0.2)
    moved = pre_dilate(outer, inner0, inner1, cfg) - outer
    r = np.linalg.norm(outer, axis=1)
    on = np.isclose(r, 1.0)
    # Contact: the full displacement (averaged over the 8 nearest inner vertices, ~1 % off).
    assert np.allclose(moved[on], outer[on] * 0.02, atol=5e-4)
    mid = np.isclose(r, 1.05)
    far = np.isclose(r, 1.5)
    assert 0 < np.linalg.norm(moved[mid], axis=1).mean() < 0.02
    assert np.all(moved[far] == 0)


def test_post_dilation_pushes_penetrating_vertices_out():
    body = trimesh.creation.icosphere(4)
    rng = np.random.default_rng(1)
    d = rng.normal(size=(400, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    r = np.where(np.arange(400) % 4 == 0, 0.97, 1.03)  # every fourth point 3 cm inside
    outer = d * r[:, None]
    cfg = DilationConfig(margin=0.002)
    out, first = post_dilate(outer, body.vertices, body.faces, cfg)
    assert first == 100
    rr = np.linalg.norm(out, axis=1)
    assert rr.min() > 1.0 - 1e-3
    # Points already outside moved at most by the spread of the pushes, and stay outside.
    assert (rr[r > 1] >= 1.0).all()


def test_flow_field_is_the_same_with_the_brute_force_search():
    # The GPU path searches neighbours by brute force (NearestPoints); the field must not change.
    from stdgen.geometry.nearest import NearestPoints

    rng = np.random.default_rng(4)
    sources = rng.uniform(-0.1, 0.1, (300, 3))
    disp = rng.normal(0, 0.02, (300, 3))
    queries = rng.uniform(-0.3, 0.3, (2000, 3))
    kw = dict(sigma=0.03, cutoff=0.1, neighbours=8)
    ref = flow_field(sources, disp, queries, **kw)
    got = flow_field(sources, disp, queries, tree=NearestPoints(sources, backend="brute"), **kw)
    assert np.abs(ref).max() > 0 and (ref == 0).all(1).sum() > 100
    np.testing.assert_allclose(got, ref, atol=1e-12)
