"""Coarse meshes: welding, Taubin smoothing, the thickened outer-layer field, reading --coarse dirs."""

import numpy as np
import pytest
import trimesh

from stdgen.errors import InputError
from stdgen.refine.coarse import read_coarse_dir, taubin_smooth, thickened_layer_field, weld
from stdgen.refine.remesh import manifold_report
from stdgen.structures.mesh import Mesh
from stdgen.structures.semantics import Part


def test_weld_closes_a_mesh_split_at_seams():
    s = trimesh.creation.icosphere(2)
    f = np.asarray(s.faces)
    v = np.asarray(s.vertices)[f.reshape(-1)]  # every face has its own three vertices
    split = Mesh(v, np.arange(len(v)).reshape(-1, 3))
    assert not manifold_report(split.faces, split.num_vertices).watertight
    welded = weld(split)
    assert welded.num_vertices == len(s.vertices)
    assert manifold_report(welded.faces, welded.num_vertices).watertight


def test_taubin_smoothing_removes_noise_without_shrinking():
    s = trimesh.creation.icosphere(3)
    rng = np.random.default_rng(0)
    v = np.asarray(s.vertices) * (1 + rng.normal(0, 0.02, (len(s.vertices), 1)))
    out = taubin_smooth(Mesh(v, s.faces), 10)
    r0, r1 = np.linalg.norm(v, axis=1), np.linalg.norm(out.vertices, axis=1)
    assert r1.std() < 0.5 * r0.std()
    assert abs(r1.mean() - 1.0) < 0.01  # plain Laplacian smoothing would shrink it by several %


def test_thickened_field_of_nested_spheres():
    r = np.linspace(0.5, 1.5, 201)
    body = r - 1.0
    clothes = r - 1.02  # a 2 cm layer over the body
    field = thickened_layer_field(np.stack([body, np.minimum(body, clothes), clothes]), Part.CLOTHES, 0.05, 0.003)
    inside = r[field < 0]
    # From the body surface out to 5 cm beyond the clothes surface.
    assert np.isclose(inside.min(), 1.005, atol=0.006) and np.isclose(inside.max(), 1.07, atol=0.006)
    # No clothes where the layer adds nothing over the body (same surface).
    field = thickened_layer_field(np.stack([body, body, body]), Part.CLOTHES, 0.05, 0.003)
    assert (field >= 0).all()
    with pytest.raises(ValueError):
        thickened_layer_field(np.stack([body, body, body]), Part.BODY, 0.05, 0.003)


def test_read_coarse_dir(tmp_path):
    with pytest.raises(InputError, match="no such directory"):
        read_coarse_dir(tmp_path / "missing")
    with pytest.raises(InputError, match="no coarse meshes"):
        read_coarse_dir(tmp_path)
    s = trimesh.creation.icosphere(1)
    s.export(tmp_path / "body.obj")
    s.apply_scale(1.1)
    s.export(tmp_path / "hair.ply")
    parts = read_coarse_dir(tmp_path)
    assert parts[Part.BODY].num_faces == 80 and parts[Part.HAIR].num_faces == 80
    assert parts[Part.CLOTHES].is_empty and parts[Part.HAIR].label == Part.HAIR
    (tmp_path / "body.obj").write_text("this is not a mesh")
    with pytest.raises(InputError):
        read_coarse_dir(tmp_path)


def test_coarse_layers_of_the_standin_are_closed_and_complete(standin):
    from stdgen.geometry.metrics import mesh_metrics
    from stdgen.refine.coarse import CoarseConfig, coarse_layers
    from stdgen.structures.semantics import PARTS

    true, _ = standin
    coarse = coarse_layers(true, CoarseConfig(resolution=40))
    for p in PARTS:
        m = coarse[p]
        assert not m.is_empty and m.label == p
        assert manifold_report(m.faces, m.num_vertices).manifold
    # The outer layers are complete shells: every true clothes / hair point is near the coarse one.
    for p in (Part.CLOTHES, Part.HAIR):
        m = mesh_metrics(coarse[p], true[p], count=20000, thresholds=(0.05,))
        assert m["recall@0.05"] > 0.95, (p, m)
