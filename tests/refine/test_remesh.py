"""Continuous remeshing: manifoldness and closure under many random operations, known counts per
operation, attribute transport, convergence toward the target edge length."""

import numpy as np
import pytest
import trimesh

from stdgen.refine.remesh import (
    RemeshConfig,
    collapse_edges,
    connectivity,
    flip_edges,
    manifold_report,
    remesh,
    split_edges,
)


def _sphere(subdivisions=2):
    m = trimesh.creation.icosphere(subdivisions)
    return np.asarray(m.vertices, np.float64), np.asarray(m.faces, np.int64)


def _torus():
    m = trimesh.creation.torus(1.0, 0.35, major_sections=24, minor_sections=12)
    return np.asarray(m.vertices, np.float64), np.asarray(m.faces, np.int64)


def _edge_lengths(v, f):
    e = np.unique(np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), 1), axis=0)
    return np.linalg.norm(v[e[:, 0]] - v[e[:, 1]], axis=1)


def test_report_of_known_meshes():
    v, f = _sphere(1)
    r = manifold_report(f, len(v))
    assert r.watertight and r.euler == 2
    v, f = _torus()
    r = manifold_report(f, len(v))
    assert r.watertight and r.euler == 0
    # Remove a face: a boundary appears, no longer watertight but still manifold.
    r = manifold_report(f[1:], len(v))
    assert r.manifold and not r.watertight and r.boundary_edges == 3
    # Flip one face: orientation inconsistent.
    bad = f.copy()
    bad[0] = bad[0, ::-1]
    assert not manifold_report(bad, len(v)).manifold
    # A fourth face on an edge: non-manifold edge.
    extra = np.concatenate([f, [[f[0, 0], f[0, 1], len(v)]]])
    r = manifold_report(extra, len(v) + 1)
    assert r.nonmanifold_edges == 1 and not r.manifold


def test_two_cones_touching_at_a_vertex_are_not_vertex_manifold():
    # Two closed tetrahedra sharing one vertex: every edge is fine, the shared vertex is not.
    tet = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    faces = np.concatenate([tet, np.where(tet == 0, 0, tet + 3)])
    r = manifold_report(faces, 7)
    assert r.nonmanifold_edges == 0 and r.nonmanifold_vertices == 1 and not r.manifold


def test_single_operations_change_counts_as_expected():
    v, f = _sphere(1)
    n, nf = len(v), len(f)
    conn = connectivity(f, n)
    v2, f2, _, k = split_edges(v, f, {}, conn, np.array([0]))
    assert k == 1 and len(v2) == n + 1 and len(f2) == nf + 2
    assert manifold_report(f2, len(v2)).watertight
    conn = connectivity(f, n)
    lengths = np.full(len(conn.edges), 10.0)
    v3, f3, _, k = collapse_edges(v, f, {}, conn, np.array([0]), max_len=lengths)
    assert k == 1 and len(v3) == n - 1 and len(f3) == nf - 2
    assert manifold_report(f3, len(v3)).watertight


def test_flip_only_when_valence_improves():
    v, f = _sphere(1)  # valences 5 and 6: no flip can improve a regular icosphere much
    conn = connectivity(f, len(v))
    f2, k = flip_edges(v, f, conn, np.arange(len(conn.edges)))
    assert manifold_report(f2, len(v)).watertight
    # Valence deviation never increases.
    def deviation(faces):
        e = np.unique(np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), 1), axis=0)
        val = np.bincount(e.reshape(-1), minlength=len(v))
        return ((val - 6) ** 2).sum()
    assert deviation(f2) <= deviation(f)


@pytest.mark.parametrize("shape", ["sphere", "torus"])
def test_manifold_and_watertight_over_1000_random_operations(shape):
    v, f = _sphere(2) if shape == "sphere" else _torus()
    euler = manifold_report(f, len(v)).euler
    rng = np.random.default_rng(7)
    done = {"split": 0, "collapse": 0, "flip": 0}
    for _ in range(1000):
        conn = connectivity(f, len(v))
        e = rng.integers(len(conn.edges), size=1)
        op = rng.choice(["split", "collapse", "flip"], p=[0.35, 0.45, 0.2])
        if op == "split":
            v, f, _, k = split_edges(v, f, {}, conn, e)
        elif op == "collapse":
            v, f, _, k = collapse_edges(v, f, {}, conn, e, max_len=np.full(len(conn.edges), np.inf), min_cos=-1.0)
        else:
            f, k = flip_edges(v, f, conn, e, min_cos=-1.0, require_improvement=False)
        done[op] += k
        v = v + rng.normal(0, 1e-3, v.shape)
        r = manifold_report(f, len(v))
        assert r.watertight, (op, r)
        assert r.euler == euler
        assert r.unreferenced_vertices == 0
    # The walk really exercised every operation.
    assert min(done.values()) > 100, done


def test_linear_attributes_are_carried_exactly():
    # Splits and collapses place vertices at edge midpoints and mix attributes by the same means,
    # so an attribute that is an affine function of position stays that function (no relaxation).
    v, f = _sphere(2)
    attr = {"a": 2.0 * v + 1.0, "b": v[:, :1] * 3.0}
    rng = np.random.default_rng(0)
    target = rng.uniform(0.1, 0.5, len(v))
    v2, f2, _, a2, stats = remesh(v, f, target, attr, RemeshConfig(relax=0.0, rounds=2))
    assert stats.splits > 0 and stats.collapses > 0
    assert np.allclose(a2["a"], 2.0 * v2 + 1.0, atol=1e-9)
    assert np.allclose(a2["b"], v2[:, :1] * 3.0, atol=1e-9)


def test_remesh_reaches_target_edge_length():
    v, f = _sphere(2)  # edges ~0.3
    target = np.full(len(v), 0.1)
    for _ in range(6):
        v, f, target, _, _ = remesh(v, f, target)
        v = v / np.linalg.norm(v, axis=1, keepdims=True)  # stay on the sphere
    lengths = _edge_lengths(v, f)
    assert 0.8 * 0.1 < np.median(lengths) < 4 / 3 * 0.1
    # Relaxation and flips after the split pass may stretch a few edges past the split threshold.
    assert np.quantile(lengths, 0.99) < 1.5 * 0.1 and lengths.max() < 2 * 0.1
    assert manifold_report(f, len(v)).watertight
    # And coarsening: a larger target brings the edges back up.
    target = np.full(len(v), 0.25)
    for _ in range(8):
        v, f, target, _, _ = remesh(v, f, target)
        v = v / np.linalg.norm(v, axis=1, keepdims=True)
    assert 0.8 * 0.25 * 0.8 < np.median(_edge_lengths(v, f)) < 4 / 3 * 0.25
    assert manifold_report(f, len(v)).watertight


def test_locked_vertices_do_not_move_and_open_meshes_stay_manifold():
    v, f = _sphere(2)
    keep = v[:, 1] < 0.3  # cut a cap off: an open mesh with a boundary loop
    fk = f[keep[f].all(1)]
    used = np.unique(fk)
    remap = -np.ones(len(v), int)
    remap[used] = np.arange(len(used))
    v, f = v[used], remap[fk]
    boundary_before = manifold_report(f, len(v)).boundary_edges
    locked = np.zeros(len(v), bool)
    locked[:5] = True
    pos = v[:5].copy()
    target = np.full(len(v), 0.12)
    v2, f2, _, _, _ = remesh(v, f, target, locked=locked)
    r = manifold_report(f2, len(v2))
    assert r.manifold and r.boundary_edges >= boundary_before
    # Locked vertices survive (they are neither collapsed nor relaxed) at their places.
    d = np.linalg.norm(v2[:, None, :] - pos[None], axis=2).min(0)
    assert d.max() < 1e-12


def test_unique_edges_match_numpy_unique():
    from stdgen.refine.remesh import _counting_order, _unique_edges

    rng = np.random.default_rng(3)
    n = 50
    lo = rng.integers(0, n, 2000)
    hi = rng.integers(0, n, 2000)
    lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    edges, inv, counts = _unique_edges(lo, hi, n)
    uniq, inv_ref, counts_ref = np.unique(lo * n + hi, return_inverse=True, return_counts=True)
    assert np.array_equal(edges, np.stack([uniq // n, uniq % n], 1))
    assert np.array_equal(inv, inv_ref.reshape(-1)) and np.array_equal(counts, counts_ref)
    order, ptr = _counting_order(lo, n)
    assert np.array_equal(order, np.argsort(lo, kind="stable"))
    assert np.array_equal(ptr, np.concatenate([[0], np.cumsum(np.bincount(lo, minlength=n))]))


def test_mesh_edges_and_adaptive_lengths_match_numpy():
    import trimesh

    from stdgen.refine.remesh import adaptive_edge_length, mesh_edges
    from stdgen.structures.mesh import vertex_normals

    tm = trimesh.creation.icosphere(3)
    v = np.asarray(tm.vertices) * [1.0, 0.4, 0.7]  # an ellipsoid: curvature varies over it
    f = np.asarray(tm.faces)
    e_ref = np.unique(np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), 1), axis=0)
    e = mesh_edges(f)
    assert np.array_equal(e, e_ref) and mesh_edges(np.zeros((0, 3), int)).shape == (0, 2)
    # The adaptive target against a plain numpy statement of it (np.maximum.at / np.minimum.at).
    n = vertex_normals(v, f)
    length = np.linalg.norm(v[e[:, 0]] - v[e[:, 1]], axis=1)
    k_edge = np.arccos(np.clip((n[e[:, 0]] * n[e[:, 1]]).sum(1), -1, 1)) / length
    kappa = np.zeros(len(v))
    np.maximum.at(kappa, e[:, 0], k_edge)
    np.maximum.at(kappa, e[:, 1], k_edge)
    want = np.clip(0.25 / np.maximum(kappa, 1e-12), 0.02, 0.2)
    for _ in range(2):
        nb = np.full(len(v), np.inf)
        np.minimum.at(nb, e[:, 0], want[e[:, 1]])
        np.minimum.at(nb, e[:, 1], want[e[:, 0]])
        want = np.minimum(want, 1.5 * nb)
    got = adaptive_edge_length(v, f, 0.02, 0.2, 0.25)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got.min() < got.max()  # the ellipsoid's ends want shorter edges than its flanks
