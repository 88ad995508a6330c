"""Tests of the procedural characters' layers: garments are closed thick shells around the body part
they cover, hair sits on the head, and the layer order body < clothes < hair holds in the A-pose.

Layer-order tolerance: a clothes vertex may lie at most ``LAYER_TOL`` (2 mm) inside the body mesh, a
hair vertex at most ``LAYER_TOL`` inside the body or inside a garment's material, in the A-pose;
in the rest pose see ``REST_TOL``. Distances are measured
against the *posed triangle meshes* (``procedural_checks.MeshDistance``), independently of the
SDF the generator builds with. The tolerance covers linear blend skinning to the A-pose: a garment
vertex and the body point under it share skin weights, but at the armpit the blend of two bone
transforms bends the thin gap between them by up to a millimetre or two.
"""

from __future__ import annotations

import numpy as np
import pytest
from procedural_checks import (
    DEFAULT_CASES,
    MeshDistance,
    character,
    components,
    is_closed_oriented,
    ray_crossings,
    signed_volume,
)

from stdgen.data.procedural.garments import GARMENT_KINDS, GARMENT_SLOTS
from stdgen.structures.character import HUMANOID_BONES
from stdgen.structures.semantics import Part

LAYER_TOL = 0.002  # metres
#: In the rest (T-)pose the clothes get a looser bound: the generator keeps garments outside the
#: body in both the rest and the A-pose by alternating corrections, and gives the A-pose (the pose
#: every render uses) the last word. Where the two disagree -- a vertex or two at the crotch, whose
#: blend of hip and thigh transforms moves it differently from the skin beside it -- the rest pose
#: may keep a vertex up to a few millimetres in.
REST_TOL = 0.006


@pytest.fixture(scope="module", params=DEFAULT_CASES, ids=[f"{p}{s}" for s, p in DEFAULT_CASES])
def case(request):
    seed, presentation = request.param
    return character(seed, presentation)


def _posed_pieces(ch, part):
    """Posed meshes of a part, one per piece (garment / hair piece)."""
    from stdgen.structures.character import skin_vertices

    out = []
    for m in ch.rest_meshes(part):
        v = skin_vertices(m.vertices, m.skin_joints, m.skin_weights, ch.skeleton, ch.pose)
        out.append(m.replace(vertices=v))
    return out


def _ray(ch, kind: str):
    """A point inside the body and a direction along which ``kind`` covers it (posed)."""
    sk = ch.skeleton
    j = ch.posed_joints()
    jn = lambda n: j[sk.index(n)].astype(np.float64)
    lift = np.array([0, ch.meta["lift"], 0])
    H = ch.meta["body"]["height"]
    slot = GARMENT_SLOTS[kind]
    if slot in ("top", "outer") or kind == "dress":
        return jn("chest"), (np.array([0, 0, 1.0]) if kind == "sailor_top" else np.array([0, 0, -1.0]))
    if kind in ("pleated_skirt", "flared_skirt"):
        y = ch.meta["body"]["leg_fraction"] * H - 0.03 + lift[1]
        return np.array([jn("leftUpperLeg")[0], y, 0.0]), np.array([0, 0, 1.0])
    if kind in ("shorts", "trousers"):
        return jn("leftUpperLeg") - [0, 0.04, 0], np.array([0, 0, 1.0])
    if kind in ("socks", "stockings"):
        return jn("leftFoot") + [0, 0.005, 0], np.array([1.0, 0, 0])
    if kind in ("shoes", "boots"):
        return jn("leftToes") - [0, 0.005, 0], np.array([0, 0, 1.0])
    if kind == "gloves":
        hand = jn("leftHand")
        along = hand - jn("leftLowerArm")
        return hand + 0.25 * along / np.linalg.norm(along) * 0.1 * H / 1.6, np.array([0, 1.0, 0])
    raise AssertionError(kind)


def test_garments_are_closed_shells(case):
    assert 1 <= len(case.clothes) <= 4
    for m in case.clothes:
        lab = components(m.faces, m.num_vertices)
        for c in np.unique(lab):
            f = m.faces[lab == c]
            assert is_closed_oriented(f), (m.name, c)
            assert signed_volume(m.vertices, f) > 0, (m.name, c)  # outward winding, real material
        assert m.texture is not None and m.uvs is not None


def test_garments_wrap_the_body(case):
    """A ray from inside the body crosses each garment exactly twice (in then out): the garment has
    thickness, is hollow, and really surrounds the body part (in A-pose)."""
    for m in _posed_pieces(case, Part.CLOTHES):
        origin, direction = _ray(case, m.name)
        assert ray_crossings(m.vertices, m.faces, origin, direction) == 2, m.name


def test_layer_order_in_a_pose(case):
    body = case.part(Part.BODY)
    to_body = MeshDistance(body.vertices, body.faces)
    clothes = _posed_pieces(case, Part.CLOTHES)
    for m in clothes:
        d = to_body(m.vertices)
        assert d.min() > -LAYER_TOL, (m.name, d.min())
    hair = case.part(Part.HAIR)
    d = to_body(hair.vertices)
    assert d.min() > -LAYER_TOL, ("hair in body", d.min())
    for m in clothes:
        to_garment = MeshDistance(m.vertices, m.faces)
        # Only hair near the garment can be inside it.
        lo, hi = m.vertices.min(0) - 0.01, m.vertices.max(0) + 0.01
        near = np.all((hair.vertices > lo) & (hair.vertices < hi), axis=1)
        if near.any():
            dg = to_garment(hair.vertices[near])
            assert dg.min() > -LAYER_TOL, ("hair in " + m.name, dg.min())


def test_layer_order_in_rest_pose_for_clothes(case):
    rest = case.with_pose(None)
    body = rest.part(Part.BODY)
    to_body = MeshDistance(body.vertices, body.faces)
    for m in rest.clothes:
        d = to_body(m.vertices)
        assert d.min() > -REST_TOL, (m.name, d.min())
        assert (d < -LAYER_TOL).sum() <= 3, (m.name, (d < -LAYER_TOL).sum())


def test_hair_sits_on_the_head(case):
    """The scalp cap hugs the head; every hair piece touches the head region; the crown of the hair
    is just above the crown of the head."""
    body = case.part(Part.BODY)
    head_top = body.vertices[:, 1].max()
    h = case.meta["body"]["height"] / case.meta["body"]["head_ratio"]
    cap = [m for m in _posed_pieces(case, Part.HAIR) if m.name == "hair_cap"]
    assert cap, "no scalp cap"
    to_body = MeshDistance(body.vertices, body.faces)
    d = to_body(cap[0].vertices)
    assert 0 < d.min() and np.percentile(d, 50) < 0.03
    hair = case.part(Part.HAIR)
    top = hair.vertices[:, 1].max()
    assert head_top < top < head_top + 0.9 * h, ("hair top", top - head_top, h)  # spikes, buns: up to ~0.7 h
    # Every clump (connected piece) starts near the head: no floating hair.
    lab = components(hair.faces, hair.num_vertices)
    head = case.posed_joints()[case.skeleton.index("head")]
    for c in np.unique(lab):
        vid = np.unique(hair.faces[lab == c])
        assert np.linalg.norm(hair.vertices[vid] - head, axis=1).min() < 1.2 * h, c


def test_hair_skin_weights_follow_the_head(case):
    head = HUMANOID_BONES.index("head")
    for m in case.hair:
        top = m.vertices[:, 1] > case.skeleton.joints[case.skeleton.index("head"), 1] + 0.05
        dominant = m.skin_joints[np.arange(m.num_vertices), np.argmax(m.skin_weights, 1)]
        assert (dominant[top] == head).all()


# -- every garment kind ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def kind_context():
    """A body (seed 2, female) and everything garment builders need, in the T-pose rest."""
    from stdgen.data import posing
    from stdgen.data.procedural.body import body_template, make_body_shape
    from stdgen.data.procedural.generator import build_context
    from stdgen.data.procedural.params import sample_body

    template = body_template()
    shape = make_body_shape(sample_body(np.random.default_rng(2), "female"), template)
    sk = shape.anatomy.skeleton()
    return build_context(template, shape, sk, posing.a_pose(sk)), sk


def test_at_least_ten_garment_kinds():
    assert len(GARMENT_KINDS) >= 10
    needed = {"tshirt", "long_shirt", "jacket", "sailor_top", "dress", "pleated_skirt", "flared_skirt", "shorts",
              "trousers", "socks", "shoes", "gloves"}
    assert needed <= set(GARMENT_KINDS)


@pytest.mark.parametrize("kind", GARMENT_KINDS)
def test_every_kind_is_a_closed_shell_around_the_body(kind, kind_context):
    from stdgen.data.procedural.outfit import _palette, _sample_spec, build_garment, stack_ranks
    from stdgen.structures.character import Character, Pose
    from stdgen.structures.mesh import Mesh

    ctx, sk = kind_context
    rng = np.random.default_rng(0)
    spec = _sample_spec(rng, kind, _palette(rng), [kind])
    spec.layer = stack_ranks([kind])[kind]
    res = build_garment(spec, ctx)
    assert res is not None
    lab = components(res.faces, len(res.vertices))
    for c in np.unique(lab):
        assert is_closed_oriented(res.faces[lab == c]), (kind, c)
        assert signed_volume(res.vertices, res.faces[lab == c]) > 0, (kind, c)
    # Rest pose: the T-posed body of the context.
    body = Mesh(ctx.body.vertices, ctx.template.faces)
    ch = Character(body=body, skeleton=sk, pose=Pose.identity(len(sk)), meta={"lift": 0.0,
                   "body": {"height": ctx.body.params.height, "leg_fraction": ctx.body.params.leg_fraction}})
    origin, direction = _ray(ch, kind)
    assert ray_crossings(res.vertices, res.faces, origin, direction) == 2, kind
    d = MeshDistance(body.vertices, body.faces)(res.vertices)
    assert d.min() > -LAYER_TOL, (kind, d.min())
    w = res.weights
    assert (w >= 0).all() and np.allclose(w.sum(1), 1, atol=1e-4)


@pytest.mark.slow
def test_hundred_seeds_layers():
    """100 seeds: closed garments wrapping the body, layer order in A-pose, hair on the head."""
    from stdgen.data.procedural import make_character

    failures = []
    for seed in range(100):
        ch = make_character(seed)
        for check in (test_garments_are_closed_shells, test_garments_wrap_the_body, test_layer_order_in_a_pose,
                      test_layer_order_in_rest_pose_for_clothes, test_hair_sits_on_the_head):
            try:
                check(ch)
            except AssertionError as exc:
                failures.append((seed, check.__name__, (str(exc).splitlines() or ["?"])[0]))
    assert not failures, f"{len(failures)} failures: {failures}"
