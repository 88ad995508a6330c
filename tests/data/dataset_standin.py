"""A small stand-in ``Character`` built from primitives, for the dataset-render tests only.

It exercises what the renderer must handle: a textured body (a painted face), a vertex-coloured
garment, a textured hair piece, a skeleton with rigid skin weights (so it can be posed), and
separate pieces per part. It is *not* a character generator and is never shipped.
"""

from __future__ import annotations

import numpy as np
import trimesh

from stdgen.structures.character import Character, Skeleton
from stdgen.structures.mesh import Mesh, merge_meshes
from stdgen.structures.semantics import Part

BONES = ["hips", "spine", "chest", "neck", "head",
         "leftUpperArm", "leftLowerArm", "rightUpperArm", "rightLowerArm",
         "leftUpperLeg", "leftLowerLeg", "leftFoot", "rightUpperLeg", "rightLowerLeg", "rightFoot"]  # fmt: skip
PARENTS = [-1, 0, 1, 2, 3, 2, 5, 2, 7, 0, 9, 10, 0, 12, 13]
JOINTS = [(0, 0.85, 0), (0, 0.95, 0), (0, 1.1, 0), (0, 1.28, 0), (0, 1.33, 0),
          (0.14, 1.22, 0), (0.38, 1.22, 0), (-0.14, 1.22, 0), (-0.38, 1.22, 0),
          (0.08, 0.82, 0), (0.08, 0.45, 0), (0.08, 0.07, 0), (-0.08, 0.82, 0), (-0.08, 0.45, 0),
          (-0.08, 0.07, 0)]  # fmt: skip


def _capsule(a, b, radius: float, count=(10, 10)) -> trimesh.Trimesh:
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = b - a
    length = float(np.linalg.norm(d))
    cap = trimesh.creation.capsule(height=max(length, 1e-4), radius=radius, count=list(count))
    # trimesh's capsule runs along Z, centred at the origin.
    z = np.array([0.0, 0.0, 1.0])
    axis = d / max(length, 1e-9)
    rot = trimesh.geometry.align_vectors(z, axis) if length > 1e-6 else np.eye(4)
    cap.apply_transform(rot)
    cap.apply_translation((a + b) / 2)
    return cap


def _rigid(tm: trimesh.Trimesh, bone: str, *, colors=None, name="", uvs=None, texture=None) -> Mesh:
    n = len(tm.vertices)
    joints = np.zeros((n, 4), np.int32)
    joints[:, 0] = BONES.index(bone)
    weights = np.zeros((n, 4), np.float32)
    weights[:, 0] = 1
    cols = None if colors is None else np.tile(np.asarray(colors, np.float32), (n, 1))
    return Mesh(np.asarray(tm.vertices), np.asarray(tm.faces), colors=cols, uvs=uvs, texture=texture, name=name,
                skin_joints=joints, skin_weights=weights)


def _face_texture() -> np.ndarray:
    """64 x 64 skin texture with two eyes and a mouth around u = 0.25 (the +Z side under the
    spherical mapping of ``_spherical_uv``)."""
    tex = np.full((64, 64, 3), (250, 215, 190), np.uint8)
    yy, xx = np.mgrid[0:64, 0:64]
    for cx in (13, 19):
        tex[(xx - cx) ** 2 + (yy - 30) ** 2 <= 5] = (40, 60, 160)
    tex[(abs(xx - 16) <= 2) & (yy == 38)] = (180, 60, 60)
    return tex


def _spherical_uv(v: np.ndarray, center) -> np.ndarray:
    p = v - np.asarray(center)
    u = (np.arctan2(p[:, 0], p[:, 2]) / (2 * np.pi) + 0.25) % 1.0
    r = np.linalg.norm(p, axis=1)
    vv = np.arccos(np.clip(p[:, 1] / np.maximum(r, 1e-9), -1, 1)) / np.pi
    return np.stack([u, vv], 1).astype(np.float32)


def _hair_texture() -> np.ndarray:
    """A vertical gradient: dark brown at the top, lighter below."""
    t = np.linspace(0, 1, 32)[:, None]
    col = (1 - t) * np.array([70, 40, 20]) + t * np.array([160, 100, 50])
    return np.repeat(col[:, None, :], 8, axis=1).astype(np.uint8)


def standin_character(seed: int = 0) -> Character:
    """A 1.5 m stand-in in T-pose (rest); colours vary a little with ``seed``."""
    rng = np.random.default_rng(seed)
    shirt = tuple(rng.uniform(0.1, 0.9, 3))
    head_c = (0.0, 1.43, 0.0)
    face_tex = _face_texture()
    head = trimesh.creation.icosphere(subdivisions=3, radius=0.11)
    head.apply_translation(head_c)
    head_mesh = _rigid(head, "head", uvs=_spherical_uv(np.asarray(head.vertices), head_c), texture=face_tex,
                       name="head")
    spec = [((0, 1.28, 0), (0, 1.34, 0), 0.04, "neck"), ((0, 0.9, 0), (0, 1.15, 0), 0.12, "chest"),
            ((0.14, 1.22, 0), (0.38, 1.22, 0), 0.04, "leftUpperArm"),
            ((0.38, 1.22, 0), (0.6, 1.22, 0), 0.035, "leftLowerArm"),
            ((-0.14, 1.22, 0), (-0.38, 1.22, 0), 0.04, "rightUpperArm"),
            ((-0.38, 1.22, 0), (-0.6, 1.22, 0), 0.035, "rightLowerArm"),
            ((0.08, 0.8, 0), (0.08, 0.45, 0), 0.06, "leftUpperLeg"),
            ((0.08, 0.45, 0), (0.08, 0.08, 0), 0.05, "leftLowerLeg"),
            ((-0.08, 0.8, 0), (-0.08, 0.45, 0), 0.06, "rightUpperLeg"),
            ((-0.08, 0.45, 0), (-0.08, 0.08, 0), 0.05, "rightLowerLeg")]  # fmt: skip
    # The whole body is textured with one texture: the limbs map to a plain skin-coloured texel.
    body_parts = []
    for a, b, r, bone in spec:
        tm = _capsule(a, b, r)
        uv = np.tile(np.array([[0.9, 0.1]], np.float32), (len(tm.vertices), 1))
        body_parts.append(_rigid(tm, bone, uvs=uv, texture=face_tex, name=bone))
    merged = merge_meshes([head_mesh, *body_parts], label=Part.BODY, name="body")
    shirt_mesh = _rigid(_capsule((0, 0.92, 0), (0, 1.16, 0), 0.14, (12, 12)), "chest", colors=shirt, name="shirt")
    boots = [_rigid(_capsule((s * 0.08, 0.25, 0), (s * 0.08, 0.06, 0.03), 0.065), f"{side}LowerLeg",
                    colors=(0.2, 0.12, 0.08), name=f"{side}_boot") for s, side in ((1, "left"), (-1, "right"))]
    cap = trimesh.creation.icosphere(subdivisions=3, radius=0.125)
    cap.apply_translation((head_c[0], head_c[1] + 0.012, head_c[2] - 0.015))
    keep = cap.vertices[cap.faces].mean(1)
    # Keep the back and the top so the face stays visible: a hair cap open at the front-bottom.
    rel = keep - np.array(head_c)
    cap.update_faces((rel[:, 1] > 0.02) | (rel[:, 2] < -0.03))
    cap.remove_unreferenced_vertices()
    hv = np.asarray(cap.vertices)
    hair_uv = np.stack([np.full(len(hv), 0.5), np.clip((head_c[1] + 0.14 - hv[:, 1]) / 0.3, 0, 1)], 1)
    hair = _rigid(cap, "head", uvs=hair_uv.astype(np.float32), texture=_hair_texture(), name="hair_cap")
    skeleton = Skeleton(BONES, np.array(PARENTS), np.array(JOINTS, np.float32))
    return Character(merged.replace(label=Part.BODY), [shirt_mesh, *boots], [hair], skeleton, None,
                     {"seed": seed, "source": "standin"})


def standin_a_posed(seed: int = 0) -> Character:
    from stdgen.data.posing import a_pose

    c = standin_character(seed)
    return c.with_pose(a_pose(c.skeleton))
