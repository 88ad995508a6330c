"""Layer extraction on nested analytic shapes: a body sphere inside a clothes shell inside a hair cap."""

import numpy as np
import pytest
import trimesh

from stdgen.geometry.grid import Grid
from stdgen.geometry.inside import contains
from stdgen.geometry.layers import LayerConfig, decimate, extract_layers, remove_small_components
from stdgen.geometry.metrics import chamfer_distance
from stdgen.structures.mesh import Mesh, merge_meshes
from stdgen.structures.semantics import LAYER_SETS, Part

R_BODY, R_CLOTHES, R_HAIR_IN, R_HAIR_OUT, HAIR_Y = 0.5, 0.65, 0.6, 0.8, 0.2


def nested_field(res: int):
    """One SDF (negative inside the union) and soft class probabilities of the nested shapes."""
    grid = Grid.cube(res, 1.0)
    p = grid.points_numpy()
    r = np.linalg.norm(p, axis=-1)
    d_body = r - R_BODY
    d_clothes = r - R_CLOTHES  # a solid layer from the body out to R_CLOTHES
    d_hair = np.maximum(np.maximum(r - R_HAIR_OUT, R_HAIR_IN - r), HAIR_Y - p[..., 1])
    f = np.minimum(d_clothes, d_hair)
    h = grid.spacing[0]
    # Innermost containing part wins; soft over about a cell (as the voxeliser does).
    scores = np.stack([-d_body, np.minimum(d_body, -d_clothes), np.minimum(np.minimum(d_body, d_clothes), -d_hair)], -1)
    e = np.exp((scores - scores.max(-1, keepdims=True)) / h)
    return grid, f, e / e.sum(-1, keepdims=True)


@pytest.fixture(scope="module")
def layers128():
    grid, f, probs = nested_field(128)
    out = extract_layers(f, probs, grid, LayerConfig(method="flexicubes", layers=False))
    # P = everything is the plain field (Eq. 10 with nothing dropped): extract it once more.
    out.layers["full"] = _full_layer(f, probs, grid)
    return out


def _full_layer(f, probs, grid):
    from stdgen.geometry.layers import clean_mesh, extract_surface
    from stdgen.geometry.semantic_sdf import layer_sdf

    values = layer_sdf(f, probs, LAYER_SETS["full"])
    assert values is f  # nothing dropped: the original field itself
    return clean_mesh(extract_surface(values, grid).to_mesh(name="full"), 0.002)


def _ray_hits(mesh: Mesh, origin, direction) -> int:
    """Brute-force count of ray-triangle hits (Moller-Trumbore) with t > 0."""
    v = mesh.vertices.astype(np.float64)[mesh.faces]
    e1, e2 = v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]
    d = np.asarray(direction, float)
    pv = np.cross(d, e2)
    det = (e1 * pv).sum(1)
    ok = np.abs(det) > 1e-12
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    tv = np.asarray(origin, float) - v[:, 0]
    u = (tv * pv).sum(1) * inv
    qv = np.cross(tv, e1)
    w = (qv @ d) * inv
    t = (qv * e2).sum(1) * inv
    return int((ok & (u >= 0) & (w >= 0) & (u + w <= 1) & (t > 0)).sum())


def test_body_matches_the_inner_sphere(layers128):
    body = layers128.parts[Part.BODY]
    assert body.to_trimesh().is_watertight
    sphere = trimesh.creation.icosphere(6, radius=R_BODY)
    cd = chamfer_distance(body, Mesh(sphere.vertices, sphere.faces), count=200_000)
    assert cd < 0.01 * R_BODY  # includes a sampling floor of about 0.002
    assert np.abs(np.linalg.norm(body.vertices, axis=1) - R_BODY).mean() < 0.001 * R_BODY


def test_clothes_are_hollow_and_do_not_contain_the_body(layers128):
    clothes = layers128.parts[Part.CLOTHES]
    assert clothes.to_trimesh().is_watertight
    rng = np.random.default_rng(0)
    for d in rng.normal(size=(6, 3)):
        d /= np.linalg.norm(d)
        assert _ray_hits(clothes, [0.0, 0.0, 0.0], d) == 2
    pts = rng.normal(size=(3000, 3))
    pts /= np.linalg.norm(pts, axis=1, keepdims=True)
    body_pts = pts * rng.uniform(0, R_BODY - 0.02, (3000, 1))
    shell_pts = pts * rng.uniform(R_BODY + 0.02, R_CLOTHES - 0.02, (3000, 1))
    assert not contains(clothes, body_pts).any()
    assert contains(clothes, shell_pts).all()


def test_hair_and_the_union(layers128):
    hair = layers128.parts[Part.HAIR]
    assert hair.to_trimesh().is_watertight and hair.vertices[:, 1].min() > HAIR_Y - 0.02
    full = layers128.layers["full"]
    rng = np.random.default_rng(1)
    pts = rng.uniform(-0.9, 0.9, (20000, 3))
    r = np.linalg.norm(pts, axis=1)
    clear = np.all([np.abs(r - x) > 0.02 for x in (R_BODY, R_CLOTHES, R_HAIR_IN, R_HAIR_OUT)], axis=0)
    clear &= np.abs(pts[:, 1] - HAIR_Y) > 0.02
    pts = pts[clear]
    in_parts = np.zeros(len(pts), bool)
    for p in Part:
        in_parts |= contains(layers128.parts[p], pts)
    # The union of the parts is the region of the original field, which the full layer bounds.
    assert np.array_equal(in_parts, contains(full, pts))
    truth = (np.linalg.norm(pts, axis=1) < R_CLOTHES) | (
        (np.linalg.norm(pts, axis=1) < R_HAIR_OUT) & (np.linalg.norm(pts, axis=1) > R_HAIR_IN) & (pts[:, 1] > HAIR_Y))
    assert np.array_equal(in_parts, truth)
    # The body lies inside the full layer.
    assert contains(full, layers128.parts[Part.BODY].vertices * 0.98).all()


def test_marching_path_gives_the_same_layers_and_layers_nest():
    grid, f, probs = nested_field(48)
    a = extract_layers(f, probs, grid, LayerConfig(method="marching"))
    b = extract_layers(f, probs, grid, LayerConfig(method="flexicubes"))
    for p in Part:
        va, vb = a.parts[p].to_trimesh().volume, b.parts[p].to_trimesh().volume
        assert abs(va - vb) < 0.02 * abs(vb)
    assert set(b.layers) == set(LAYER_SETS)
    assert b.layers["body"].num_faces == b.parts[Part.BODY].num_faces  # P = {body} is Eq. 3 for body
    for inner, outer in (("body", "body_clothes"), ("body_clothes", "full")):
        v = b.layers[inner].vertices
        assert contains(b.layers[outer], v * 0.97).mean() > 0.99


def test_small_components_removed_and_decimation():
    big = trimesh.creation.icosphere(4, radius=1.0)
    speck = trimesh.creation.icosphere(1, radius=0.02)
    speck.vertices += [2.0, 0.0, 0.0]
    m = merge_meshes([Mesh(big.vertices, big.faces), Mesh(speck.vertices, speck.faces)], label=Part.HAIR)
    kept = remove_small_components(m, 0.002)
    assert kept.num_faces == len(big.faces) and kept.label == Part.HAIR
    assert kept.vertices[:, 0].max() < 1.01
    small = decimate(kept, 1000)
    assert small.num_faces <= 1000 * 1.02
    tm = small.to_trimesh()
    assert tm.is_watertight and abs(tm.volume / (4 / 3 * np.pi) - 1) < 0.03


def thin_garment_field(res: int):
    """A skin sphere (radius 0.5) whose lower half wears a garment a third of a cell thick. Under the
    garment the field is unsure (body 0.55 / clothes 0.45 down to two cells deep, as an S-LRM's
    probabilities are at a garment thinner than a cell); the upper half is bare skin (body 1)."""
    grid = Grid.cube(res, 1.0)
    h = grid.spacing[0]
    p = grid.points_numpy()
    r = np.linalg.norm(p, axis=-1)
    lower = p[..., 1] < 0
    f = r - np.where(lower, 0.5 + h / 3, 0.5)
    probs = np.zeros((*f.shape, 3), np.float32)
    probs[..., 0] = 1.0
    unsure = lower & (r > 0.5 - 2 * h)
    probs[unsure] = (0.55, 0.45, 0.0)
    return grid, f, probs, h


def test_body_margin_keeps_the_body_under_a_thin_garment():
    grid, f, probs, h = thin_garment_field(48)
    outer = 0.5 + h / 3

    def body_radii(margin):
        out = extract_layers(f, probs, grid, LayerConfig(method="flexicubes", layers=False, body_margin=margin))
        v = out.parts[Part.BODY].vertices
        return np.linalg.norm(v, axis=1), v[:, 1], out.parts[Part.CLOTHES]

    # The plain argmax: under the garment the body reaches the outer surface (the failure).
    r, y, clothes = body_radii(0.0)
    assert (r[y < -0.1] > outer - 0.3 * h).mean() > 0.5
    # With a margin the body stays a cell or more beneath it, and the garment covers it from below...
    r, y, clothes = body_radii(0.2)
    assert r[y < -0.1].max() < outer - h
    assert _ray_hits(clothes, (0.0, -0.9, 0.0), (0.0, 1.0, 0.0)) >= 1
    # ... while the bare skin above keeps its surface.
    assert np.abs(r[y > 0.1] - 0.5).max() < 0.3 * h


def test_small_exposed_body_patches_go_to_the_garment():
    """A body sphere under a clothes shell, with two places where the body wins up to the surface: a
    big cap on top (bare skin) and a small speck on the side (a garment thinner than a cell)."""
    from stdgen.geometry.layers import absorb_body_specks

    grid = Grid.cube(48, 1.0)
    h = grid.spacing[0]
    p = grid.points_numpy()
    r = np.linalg.norm(p, axis=-1)
    f = r - 0.6
    probs = np.zeros((*f.shape, 3), np.float32)
    probs[..., 0] = np.where(r < 0.5, 0.9, 0.2)
    probs[..., 1] = 1.0 - probs[..., 0]
    cap = p[..., 1] > 0.45
    speck = np.linalg.norm(p - np.array([0.6, 0.0, 0.0]), axis=-1) < 1.6 * h
    probs[cap | speck] = (0.9, 0.1, 0.0)
    out = absorb_body_specks(f, probs, grid, max_size=60)
    shell = (f <= 0) & (f > -1.5 * h)
    assert (out[speck & shell].argmax(-1) == 1).all()  # the speck is the garment's now
    assert (out[cap & shell].argmax(-1) == 0).all()  # the bare cap keeps its skin
    assert np.array_equal(out[~(speck & shell)], probs[~(speck & shell)])  # nothing else moved
    # Through extraction: the body surface no longer reaches the outer surface at the speck.
    for size, reaches in ((0, True), (60, False)):
        body = extract_layers(f, probs, grid, LayerConfig(layers=False, max_body_speck=size)).parts[Part.BODY]
        near_speck = np.linalg.norm(body.vertices - np.array([0.6, 0.0, 0.0]), axis=1) < 3 * h
        assert (np.linalg.norm(body.vertices[near_speck], axis=1).max() > 0.6 - 0.3 * h) == reaches


def test_bad_config():
    with pytest.raises(ValueError, match="method"):
        LayerConfig(method="dual")
    with pytest.raises(ValueError, match="face_budget"):
        LayerConfig(face_budget=2)
    with pytest.raises(ValueError, match="body_margin"):
        LayerConfig(body_margin=1.0)
    with pytest.raises(ValueError, match="max_body_speck"):
        LayerConfig(max_body_speck=-1)
