"""Tests of stdgen.data.procedural: the body, skeleton, skin weights, face texture, determinism.

Layer tests (garments, hair, layer order) are in test_procedural_layers.py. The default run builds
three characters (one per presentation, shared with the layer tests); ``-m slow`` sweeps 100 seeds.
"""

from __future__ import annotations

import numpy as np
import pytest
from procedural_checks import DEFAULT_CASES, character, is_closed_oriented, signed_volume, vertex_manifold

from stdgen.data import posing
from stdgen.data.procedural import CharacterConfig, make_character
from stdgen.data.procedural.body import body_template
from stdgen.data.procedural.sdf import evaluate
from stdgen.structures.character import HUMANOID_BONES
from stdgen.structures.semantics import Part


@pytest.fixture(scope="module", params=DEFAULT_CASES, ids=[f"{p}{s}" for s, p in DEFAULT_CASES])
def case(request):
    seed, presentation = request.param
    return character(seed, presentation)


def test_template_is_watertight_manifold():
    t = body_template()
    assert is_closed_oriented(t.faces)
    assert vertex_manifold(t.faces, len(t.vertices))
    assert signed_volume(t.vertices, t.faces) > 0  # outward winding
    # Euler characteristic of a sphere: one closed genus-0 surface.
    e = len(t.faces) * 3 // 2
    assert len(t.vertices) - e + len(t.faces) == 2


def test_body_watertight_manifold(case):
    body = case.body
    assert is_closed_oriented(body.faces)
    assert vertex_manifold(body.faces, body.num_vertices)
    assert signed_volume(body.vertices, body.faces) > 0
    # No collapsed triangles after deforming the template to this body.
    v = body.vertices.astype(np.float64)
    area = 0.5 * np.linalg.norm(np.cross(v[body.faces[:, 1]] - v[body.faces[:, 0]],
                                         v[body.faces[:, 2]] - v[body.faces[:, 0]]), axis=1)
    assert area.min() > 1e-10


def test_body_lies_on_its_sdf(case):
    """The deformed template really is the character's SDF surface (the Newton projection worked)."""
    from stdgen.data.procedural.body import make_body_shape
    from stdgen.data.procedural.params import BodyParams

    p = BodyParams(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in case.meta["body"].items()})
    shape = make_body_shape(p)
    f, _ = evaluate(shape.prims, shape.vertices, body_template().subsets)
    assert np.abs(f).max() < 1e-3  # metres
    lift = case.meta["lift"]
    np.testing.assert_allclose(shape.vertices + [0, lift, 0], case.body.vertices, atol=1e-5)


def test_anime_proportions(case):
    """Head height 1/5 .. 1/7.5 of the body; feet on the floor; facing +Z; arms in T-pose at rest."""
    rest = case.with_pose(None)
    sk = rest.skeleton
    height = rest.height
    body = rest.body.vertices
    y_chin = case.meta["body"]["height"] * (1 - 1 / case.meta["body"]["head_ratio"]) + case.meta["lift"]
    head_h = body[:, 1].max() - y_chin
    assert 5.0 - 0.2 <= (body[:, 1].max() - body[:, 1].min()) / head_h <= 7.5 + 0.2
    assert abs(rest.bounds()[0, 1]) < 1e-5  # lowest point (a sole) on the floor
    nose_z = body[np.argmax(body[:, 2] * (body[:, 1] > y_chin))][2]
    assert nose_z > sk.joints[sk.index("head"), 2]  # the face is on the +Z side
    for side in ("left", "right"):
        assert abs(posing.upper_arm_angle(sk, None, side)) < 3.0  # T-pose rest
    assert 1.0 < height < 2.0


def test_skeleton_is_humanoid(case):
    sk = case.skeleton
    assert sk.names == list(HUMANOID_BONES)
    j = sk.joints
    assert j[sk.index("head"), 1] > j[sk.index("neck"), 1] > j[sk.index("chest"), 1] > j[sk.index("hips"), 1]
    assert j[sk.index("leftHand"), 0] > 0 > j[sk.index("rightHand"), 0]  # character's left on +X


def test_a_pose_arm_angle(case):
    """The character comes in the canonical A-pose: upper arms 45 degrees below horizontal (+-2)."""
    for side in ("left", "right"):
        assert abs(posing.upper_arm_angle(case.skeleton, case.pose, side) - 45.0) < 2.0


def test_identity_pose_returns_rest_mesh_exactly(case):
    rest = case.with_pose(case.skeleton.identity_pose())
    for part in Part:
        merged = np.concatenate([m.vertices for m in case.rest_meshes(part)]) if case.rest_meshes(part) else None
        if merged is not None:
            assert np.array_equal(rest.part(part).vertices, merged)


def test_skin_weights(case):
    for part in Part:
        for m in case.rest_meshes(part):
            assert m.skin_joints.shape == (m.num_vertices, 4) and m.skin_weights.shape == (m.num_vertices, 4)
            assert (m.skin_weights >= 0).all(), m.name
            np.testing.assert_allclose(m.skin_weights.sum(1), 1.0, atol=1e-5, err_msg=m.name)
            assert m.skin_joints.min() >= 0 and m.skin_joints.max() < len(HUMANOID_BONES)


def test_skin_weights_follow_bones(case):
    """Hand vertices follow the hand, feet the feet, the head the head (weights are not smeared)."""
    t = body_template()
    sk = case.skeleton
    v = case.body.vertices
    dominant = case.body.skin_joints[np.arange(len(v)), np.argmax(case.body.skin_weights, 1)]
    top = v[np.argmax(v[:, 1])]  # crown of the head
    tip = v[np.argmax(v[:, 0])]  # left fingertips in the T-pose rest
    heel = v[np.argmin(np.where((v[:, 0] < 0) & (v[:, 1] < 0.1), v[:, 2], np.inf))]  # right heel
    for bone, point in (("head", top), ("leftHand", tip), ("rightFoot", heel)):
        near = np.linalg.norm(v - point, axis=1) < 0.02
        assert near.any()
        assert (dominant[near] == sk.index(bone)).mean() > 0.9, bone
    assert t.skin_joints.shape[1] == 4


def test_face_is_painted(case):
    """The eyes are in the texture: where the face chart's eyes sit, the texture is not skin, and
    the iris colour is there."""
    from stdgen.data.procedural.skin import face_chart_coordinates

    tex = case.body.texture.astype(np.float32) / 255
    X, Y = face_chart_coordinates(body_template())
    face = case.meta["face"]
    skin = np.asarray(case.meta["body"]["skin_tone"])
    for side in (-1, 1):
        eye = (np.abs(X - side * face["eye_spacing"]) < 0.3 * face["eye_width"]) & (np.abs(Y - face["eye_y"]) < 0.05)
        chart = tex[:, : tex.shape[1] // 2][eye]
        assert chart.size
        far_from_skin = np.linalg.norm(chart - skin, axis=1) > 0.25
        assert far_from_skin.mean() > 0.4  # iris, pupil, lashes, highlights
    cheek = (np.abs(X - 0.3) < 0.02) & (np.abs(Y - 0.12) < 0.02)
    np.testing.assert_allclose(tex[:, : tex.shape[1] // 2][cheek].mean(0), skin, atol=0.08)


def test_same_seed_same_character():
    a = make_character(12, CharacterConfig(presentation="female"))
    b = make_character(12, CharacterConfig(presentation="female"))
    for part in Part:
        ma, mb = a.part(part), b.part(part)
        assert np.array_equal(ma.vertices, mb.vertices) and np.array_equal(ma.faces, mb.faces)
        assert (ma.texture is None) == (mb.texture is None)
        if ma.texture is not None:
            assert np.array_equal(ma.texture, mb.texture)
    assert a.meta == b.meta
    c = character(4, "female")
    assert c.meta["body"] != a.meta["body"]


def test_config_pose_and_validation():
    rest = make_character(4, CharacterConfig(presentation="female", pose="rest"))
    assert rest.pose is None
    aug = make_character(4, CharacterConfig(presentation="female", pose="augmented"))
    angle = posing.upper_arm_angle(aug.skeleton, aug.pose, "left")
    assert 30 - 1e-3 <= angle <= 60 + 1e-3
    with pytest.raises(ValueError):
        CharacterConfig(presentation="robot")
    with pytest.raises(ValueError):
        CharacterConfig(max_garments=5)


@pytest.mark.slow
def test_hundred_seeds_bodies():
    """Every one of 100 seeds gives a watertight manifold body in A-pose at 45 degrees."""
    for seed in range(100):
        ch = make_character(seed)
        assert is_closed_oriented(ch.body.faces), seed
        assert signed_volume(ch.body.vertices, ch.body.faces) > 0, seed
        assert abs(posing.upper_arm_angle(ch.skeleton, ch.pose, "left") - 45) < 2, seed
        for part in Part:
            for m in ch.rest_meshes(part):
                np.testing.assert_allclose(m.skin_weights.sum(1), 1.0, atol=1e-5)


def test_sample_cli(tmp_path):
    """``stdgen data sample`` writes the sheet and a textured, A-posed GLB per character."""
    import json

    from stdgen.cli import main
    from stdgen.io.glb import read_glb
    from stdgen.utils.io import load_png

    out = tmp_path / "samples"
    assert main(["data", "sample", "--count", "1", "--seed", "4", "-o", str(out), "--resolution", "48",
                 "--quiet"]) == 0
    sheet = load_png(out / "sheet.png")
    assert sheet.ndim == 3 and sheet.shape[1] >= 5 * 48  # five pictures in the strip
    assert (sheet < 200).any()  # something drawn on the white
    parts = read_glb(out / "0000" / "character.glb")
    assert set(parts) == {"body", "clothes", "hair"}
    assert all(m.texture is not None and m.num_faces > 0 for m in parts.values())
    meta = json.loads((out / "0000" / "meta.json").read_text())
    assert meta["seed"] == 4
    ch = make_character(4)
    np.testing.assert_allclose(parts["body"].bounds(), ch.part(Part.BODY).bounds(), atol=1e-4)  # A-posed
    assert main(["data", "sample", "--count", "0", "-o", str(out)]) == 2
    assert not any(p.name.startswith(".tmp-") for p in out.iterdir())
