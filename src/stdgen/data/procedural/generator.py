"""``make_character(seed, config) -> Character``: the procedural generator's entry point.

Steps (all deterministic in the seed): sample sliders (body, face, outfit, hair), deform the body
template, paint the body texture, build the garments and the hair around the body, give every
vertex skin weights (garments inherit them from the body they were cut from), lift everything so
the lowest sole touches y = 0, and pose the character (A-pose by default).
"""

from __future__ import annotations

import numpy as np

from stdgen.data.procedural import hair as hair_mod
from stdgen.data.procedural.body import BodyTemplate, body_template, make_body_shape
from stdgen.data.procedural.face import sample_face
from stdgen.data.procedural.fit import NearestWeights, PosedSurface, correct_in_pose
from stdgen.data.procedural.garments import Frame
from stdgen.data.procedural.outfit import BuildContext, build_garment, sample_outfit
from stdgen.data.procedural.params import CharacterConfig, sample_body
from stdgen.data.procedural.skin import paint_body_texture, sample_skin
from stdgen.structures.character import HUMANOID_BONES, Character, skin_vertices
from stdgen.structures.mesh import Mesh
from stdgen.structures.semantics import Part

GENERATOR_VERSION = 1
#: Garments stay at least this far (metres) outside the skinned body in rest and A-pose.
GARMENT_CLEARANCE = 0.0015
_TORSO_LEG_BONES = ("hips", "spine", "chest", "leftUpperLeg", "leftLowerLeg", "leftFoot", "leftToes",
                    "rightUpperLeg", "rightLowerLeg", "rightFoot", "rightToes")


def top_k_weights(dense: np.ndarray, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Dense (N, J) weights -> the ``k`` largest as (joints (N, k) int32, weights (N, k) float32),
    non-negative and summing to 1."""
    order = np.argsort(-dense, axis=1, kind="stable")[:, :k]
    w = np.clip(np.take_along_axis(dense, order, 1), 0, None).astype(np.float64)
    s = w.sum(1, keepdims=True)
    w = np.where(s > 1e-12, w / np.maximum(s, 1e-12), np.eye(1, k)[0])
    return order.astype(np.int32), w.astype(np.float32)


def build_context(template: BodyTemplate, shape, skeleton, a_pose) -> BuildContext:
    """What garment builders need for one body: the template frame, the body, and its torso and
    leg vertices in rest and in ``a_pose`` (what hanging skirts must clear)."""
    bone_index = {n: i for i, n in enumerate(HUMANOID_BONES)}
    tl = np.isin(template.bone, [bone_index[n] for n in _TORSO_LEG_BONES])
    rest_pts = shape.vertices[tl]
    posed_pts = skin_vertices(shape.vertices[tl].astype(np.float32), template.skin_joints[tl],
                              template.skin_weights[tl], skeleton, a_pose).astype(np.float64)
    from stdgen.data.procedural.hair import posed_primitives
    from stdgen.data.procedural.sdf import select

    lower = select(shape.prims, [i for i, b in enumerate(shape.prims.bones) if b in _TORSO_LEG_BONES])
    rot, trans = skeleton.world_transforms(a_pose)
    fields = [lower, posed_primitives(lower, rot, trans, bone_index)]
    return BuildContext(template=template, body=shape, frame=Frame(template.anatomy),
                        leg_points=[rest_pts, posed_pts], bone_index=bone_index, fields=fields)


def make_character(seed: int, config: CharacterConfig | None = None, *, template: BodyTemplate | None = None
                   ) -> Character:
    """A random anime character, the same for the same ``seed`` and ``config``.

    Meshes are in the rest pose (a T-pose, soles at y = 0); ``character.pose`` holds the pose
    asked for by ``config.pose`` (the canonical A-pose by default).
    """
    from stdgen.data import posing

    config = config or CharacterConfig()
    rng = np.random.default_rng([int(seed), GENERATOR_VERSION])
    template = template or body_template()
    body_p = sample_body(rng, config.presentation)
    hair_p = hair_mod.sample_hair(rng, body_p.presentation, config.hair_styles)
    face_p = sample_face(rng, body_p.presentation, hair_p.color)
    skin_p = sample_skin(rng, body_p.presentation)
    outfit = sample_outfit(rng, body_p.presentation, config.max_garments, config.garment_kinds)

    shape = make_body_shape(body_p, template)
    skeleton = shape.anatomy.skeleton()
    a_pose = posing.a_pose(skeleton)

    ctx = build_context(template, shape, skeleton, a_pose)

    body_tex = paint_body_texture(template, body_p.skin_tone, face_p, skin_p)
    body = Mesh(shape.vertices, template.faces, uvs=template.uvs, uv_faces=template.uv_faces, texture=body_tex,
                label=Part.BODY, name="body", skin_joints=template.skin_joints, skin_weights=template.skin_weights)

    clothes: list[Mesh] = []
    upper_offset = 0.0
    built = []
    solids: list = []  # accessories' ellipsoids (bows) that hair must also avoid
    # The body in rest and A-pose, to keep garments outside it in both (see fit.py).
    posed_body = skin_vertices(shape.vertices.astype(np.float32), template.skin_joints, template.skin_weights,
                               skeleton, a_pose)
    surfaces = [(skeleton.identity_pose(), PosedSurface(shape.vertices, template.faces)),
                (a_pose, PosedSurface(posed_body, template.faces))]
    body_weights = NearestWeights(shape.vertices, template.skin_joints, template.skin_weights)
    for spec in outfit:
        res = build_garment(spec, ctx)
        if res is None:
            continue
        built.append(spec)
        if res.covers_back:
            upper_offset = max(upper_offset, res.outer_offset)
        solids += res.extras.get("solids", [])
        dense = res.weights
        follows = res.extras.get("follows")
        if follows is not None and follows.any():
            dense = dense.copy()
            dense[follows] = body_weights.near(res.vertices[follows])
        joints, weights = top_k_weights(dense)
        verts = res.vertices
        # Garments were built outside the rest body, so look at every vertex in the A-pose; then
        # alternate rest and A-pose corrections on the vertices that moved (where the two poses
        # disagree), the A-pose going last.
        verts, only = correct_in_pose(verts, joints, weights, skeleton, surfaces[1][0], surfaces[1][1],
                                      GARMENT_CLEARANCE)
        for _ in range(3):
            if len(only) == 0:
                break
            moved = []
            for pose_k, surface in surfaces:
                verts, m = correct_in_pose(verts, joints, weights, skeleton, pose_k, surface, GARMENT_CLEARANCE,
                                           only=only)
                moved.append(m)
            only = np.unique(np.concatenate(moved))
        clothes.append(Mesh(verts, res.faces, uvs=res.uvs, uv_faces=res.uv_faces, texture=res.texture,
                            label=Part.CLOTHES, name=res.name, skin_joints=joints, skin_weights=weights))

    hanging = {"pleated_skirt", "flared_skirt", "dress", "coat"} & {s.kind for s in built}
    lm = shape.anatomy.landmarks
    min_y = lm["y_waist"] + 0.1 * shape.anatomy.T if hanging else -1.0
    hair_meshes = hair_mod.build_hair(hair_p, shape, template, clearance=upper_offset, rng=rng,
                                      a_pose_transforms=skeleton.world_transforms(a_pose), min_y=min_y,
                                      solids=solids)
    hair = []
    for m in hair_meshes:
        joints, weights = top_k_weights(m.extras.pop("dense_weights"))
        hair.append(m.replace(skin_joints=joints, skin_weights=weights, label=Part.HAIR))

    # Stand on the floor: the lowest point of any part (a shoe sole) at y = 0.
    low = min(float(m.vertices[:, 1].min()) for m in [body, *clothes, *hair])
    lift = np.array([0.0, -low, 0.0], np.float32)
    body = body.replace(vertices=body.vertices + lift)
    clothes = [m.replace(vertices=m.vertices + lift) for m in clothes]
    hair = [m.replace(vertices=m.vertices + lift) for m in hair]
    skeleton.joints = skeleton.joints + lift

    if config.pose == "a":
        pose = posing.a_pose(skeleton)
    elif config.pose == "augmented":
        pose = posing.augmented_a_pose(skeleton, rng)
    elif config.pose == "random":
        pose = posing.random_pose(skeleton, rng)
    else:
        pose = None
    meta = {
        "generator": "stdgen.procedural",
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "presentation": body_p.presentation,
        "body": body_p.to_dict(),
        "face": face_p.to_dict(),
        "underwear": skin_p.to_dict(),
        "hair": hair_p.to_dict(),
        "garments": [s.to_dict() for s in built],
        "lift": float(lift[1]),
    }
    return Character(body=body, clothes=clothes, hair=hair, skeleton=skeleton, pose=pose, meta=meta)
