"""The project-wide ``Character``: body, clothes and hair meshes on a humanoid skeleton.

A character keeps its meshes in the skeleton's **rest pose** (for procedural and VRM characters,
usually a T-pose) together with the **pose** it is shown in. ``character.part(Part.BODY)``
returns the posed, merged mesh of a part; that is what renderers, voxelisers and evaluators use.
Exporters use the rest meshes, the skeleton and the skin weights.

Skeleton convention (VRM 1.0 "normalised" bones): every bone's rest frame is aligned with the
world axes, so a pose is just one local rotation per bone, applied about the bone's rest joint
position in world-aligned axes; the identity pose is the rest pose, exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from stdgen.structures.mesh import Mesh, merge_meshes
from stdgen.structures.semantics import LAYER_SETS, Part

#: VRM humanoid bone names this project uses, in a parent-before-child order. ``HUMANOID_PARENTS``
#: gives each bone's parent in the standard humanoid hierarchy (fingers and eyes are optional in
#: VRM and not generated here; imported files may carry more bones).
HUMANOID_BONES: tuple[str, ...] = (
    "hips", "spine", "chest", "upperChest", "neck", "head",
    "leftShoulder", "leftUpperArm", "leftLowerArm", "leftHand",
    "rightShoulder", "rightUpperArm", "rightLowerArm", "rightHand",
    "leftUpperLeg", "leftLowerLeg", "leftFoot", "leftToes",
    "rightUpperLeg", "rightLowerLeg", "rightFoot", "rightToes",
)  # fmt: skip

HUMANOID_PARENTS: dict[str, str | None] = {
    "hips": None, "spine": "hips", "chest": "spine", "upperChest": "chest", "neck": "upperChest",
    "head": "neck",
    "leftShoulder": "upperChest", "leftUpperArm": "leftShoulder", "leftLowerArm": "leftUpperArm",
    "leftHand": "leftLowerArm",
    "rightShoulder": "upperChest", "rightUpperArm": "rightShoulder", "rightLowerArm": "rightUpperArm",
    "rightHand": "rightLowerArm",
    "leftUpperLeg": "hips", "leftLowerLeg": "leftUpperLeg", "leftFoot": "leftLowerLeg", "leftToes": "leftFoot",
    "rightUpperLeg": "hips", "rightLowerLeg": "rightUpperLeg", "rightFoot": "rightLowerLeg",
    "rightToes": "rightFoot",
}  # fmt: skip


@dataclass
class Skeleton:
    """A joint hierarchy in its rest pose.

    ``names`` (J,) bone names (VRM humanoid names where the bone is one); ``parents`` (J,) int32,
    -1 for the root, every parent listed before its children; ``joints`` (J, 3) float32 rest-pose
    joint (bone head) positions in world coordinates.
    """

    names: list[str]
    parents: np.ndarray
    joints: np.ndarray

    def __post_init__(self) -> None:
        self.names = list(self.names)
        self.parents = np.asarray(self.parents, np.int32).reshape(-1)
        self.joints = np.asarray(self.joints, np.float32).reshape(-1, 3)
        j = len(self.names)
        if len(self.parents) != j or len(self.joints) != j:
            raise ValueError(f"Skeleton: {j} names, {len(self.parents)} parents, {len(self.joints)} joints")
        for i, p in enumerate(self.parents):
            if p >= i:
                raise ValueError(f"Skeleton: parent of {self.names[i]!r} must come before it")
        if len(set(self.names)) != j:
            raise ValueError("Skeleton: bone names must be unique")

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"skeleton has no bone {name!r}") from None

    def identity_pose(self) -> Pose:
        return Pose.identity(len(self))

    def world_transforms(self, pose: Pose | None) -> tuple[np.ndarray, np.ndarray]:
        """Forward kinematics. Returns (R (J, 3, 3), t (J, 3)) such that a point ``x`` rigidly
        attached to bone j in the rest pose goes to ``R[j] @ x + t[j]`` in ``pose``."""
        n = len(self)
        if pose is None:
            return np.tile(np.eye(3, dtype=np.float64), (n, 1, 1)), np.zeros((n, 3))
        if pose.rotations.shape != (n, 3, 3):
            raise ValueError(f"pose has {pose.rotations.shape[0]} rotations for {n} bones")
        rest = self.joints.astype(np.float64)
        rot = np.empty((n, 3, 3))
        posed_joint = np.empty((n, 3))
        for j in range(n):
            p = self.parents[j]
            local = pose.rotations[j].astype(np.float64)
            if p < 0:
                rot[j] = local
                posed_joint[j] = rest[j] + pose.translation
            else:
                rot[j] = rot[p] @ local
                posed_joint[j] = rot[p] @ (rest[j] - rest[p]) + posed_joint[p]
        trans = posed_joint - np.einsum("jab,jb->ja", rot, rest)
        return rot, trans

    def posed_joints(self, pose: Pose | None) -> np.ndarray:
        """(J, 3) joint positions in ``pose``."""
        rot, trans = self.world_transforms(pose)
        return (np.einsum("jab,jb->ja", rot, self.joints.astype(np.float64)) + trans).astype(np.float32)


@dataclass
class Pose:
    """Local rotations (J, 3, 3) of each bone about its rest joint, in world-aligned axes, and a
    root translation (3,). The identity pose is the rest pose."""

    rotations: np.ndarray
    translation: np.ndarray = field(default_factory=lambda: np.zeros(3, np.float32))

    def __post_init__(self) -> None:
        self.rotations = np.asarray(self.rotations, np.float32).reshape(-1, 3, 3)
        self.translation = np.asarray(self.translation, np.float32).reshape(3)

    @classmethod
    def identity(cls, num_bones: int) -> Pose:
        return cls(np.tile(np.eye(3, dtype=np.float32), (num_bones, 1, 1)))

    def is_identity(self) -> bool:
        return bool(np.all(self.rotations == np.eye(3, dtype=np.float32)) and np.all(self.translation == 0))


def skin_vertices(vertices: np.ndarray, joints: np.ndarray, weights: np.ndarray, skeleton: Skeleton,
                  pose: Pose | None) -> np.ndarray:
    """Linear blend skinning: (N, 3) rest vertices -> (N, 3) posed vertices.

    ``joints`` (N, K) int bone indices, ``weights`` (N, K) non-negative, summing to 1 per vertex.
    The identity pose returns ``vertices`` unchanged (bit for bit).
    """
    if pose is None or pose.is_identity():
        return vertices.copy()
    rot, trans = skeleton.world_transforms(pose)
    v = vertices.astype(np.float64)
    out = np.zeros_like(v)
    for k in range(joints.shape[1]):
        w = weights[:, k : k + 1].astype(np.float64)
        j = joints[:, k]
        out += w * (np.einsum("nab,nb->na", rot[j], v) + trans[j])
    return out.astype(np.float32)


def _pose_mesh(mesh: Mesh, skeleton: Skeleton | None, pose: Pose | None) -> Mesh:
    if pose is None or skeleton is None or pose.is_identity():
        return mesh
    if mesh.skin_joints is None:
        raise ValueError(f"mesh {mesh.name!r} has no skin weights, so it cannot be posed")
    v = skin_vertices(mesh.vertices, mesh.skin_joints, mesh.skin_weights, skeleton, pose)
    return mesh.replace(vertices=v, normals=None)


@dataclass
class Character:
    """A layered character: rest-pose meshes per part, a skeleton, and the pose it is shown in.

    ``clothes`` and ``hair`` may hold several meshes (one per garment or hair piece); ``part()``
    merges them. ``pose=None`` means the rest pose. ``meta`` holds provenance (seed, generator
    configuration, source file) as plain JSON-able data.
    """

    body: Mesh
    clothes: list[Mesh] = field(default_factory=list)
    hair: list[Mesh] = field(default_factory=list)
    skeleton: Skeleton | None = None
    pose: Pose | None = None
    meta: dict = field(default_factory=dict)
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def from_parts(cls, parts: Mapping[Part, Mesh | None], **fields) -> Character:
        """A character of one mesh per part (the inverse of :meth:`parts` for a posed character):
        ``parts`` maps :class:`Part` to its mesh; a missing or empty clothes / hair part is absent,
        a missing or empty body an empty mesh (the renderer draws nothing for it). ``fields``:
        ``skeleton``, ``pose``, ``meta``."""
        keep = lambda p: [parts[p]] if parts.get(p) is not None and not parts[p].is_empty else []
        body = parts.get(Part.BODY)
        if body is None or body.is_empty:
            body = Mesh(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32))
        return cls(body=body, clothes=keep(Part.CLOTHES), hair=keep(Part.HAIR), **fields)

    def rest_meshes(self, part: Part | str) -> list[Mesh]:
        """The rest-pose meshes of one part (a list: garments / hair pieces stay separate)."""
        part = Part.parse(part)
        return {Part.BODY: [self.body], Part.CLOTHES: list(self.clothes), Part.HAIR: list(self.hair)}[part]

    def part(self, part: Part | str) -> Mesh:
        """The posed mesh of one part, its pieces merged, labelled with the part."""
        part = Part.parse(part)
        key = ("part", part)
        if key not in self._cache:
            posed = [_pose_mesh(m, self.skeleton, self.pose) for m in self.rest_meshes(part)]
            self._cache[key] = merge_meshes(posed, label=part, name=part.key)
        return self._cache[key]

    def parts(self) -> dict[Part, Mesh]:
        """All three posed part meshes (a part may be empty)."""
        return {p: self.part(p) for p in Part}

    def layer_mesh(self, layer_set: str) -> Mesh:
        """The merged mesh of a layer set (``"body"``, ``"body_clothes"``, ``"full"``); each face keeps
        its part in ``extras["face_labels"]`` (F,) uint8."""
        parts = [self.part(p) for p in LAYER_SETS[layer_set]]
        merged = merge_meshes(parts, name=layer_set)
        merged.extras["face_labels"] = np.concatenate(
            [np.full(m.num_faces, int(m.label), np.uint8) for m in parts]
        )
        return merged

    def with_pose(self, pose: Pose | None) -> Character:
        """The same character shown in another pose (meshes shared, not copied)."""
        return Character(self.body, list(self.clothes), list(self.hair), self.skeleton, pose, dict(self.meta))

    def scaled(self, scale: float, offset) -> Character:
        """The same character (and pose) uniformly scaled by ``scale`` about the origin, then moved by
        ``offset`` (3,): every rest mesh, the skeleton's joints and the pose's root translation (so
        the posed character is the posed original mapped by ``p -> scale * p + offset``)."""
        scale = float(scale)
        if not (np.isfinite(scale) and scale > 0):
            raise ValueError(f"scale: expected a finite number > 0, got {scale}")
        off = np.asarray(offset, np.float32).reshape(3)
        move = lambda m: m.replace(vertices=(m.vertices * scale + off).astype(np.float32))
        skel = None if self.skeleton is None else Skeleton(self.skeleton.names, self.skeleton.parents,
                                                           self.skeleton.joints * scale + off)
        pose = None if self.pose is None else Pose(self.pose.rotations, self.pose.translation * scale)
        return Character(move(self.body), [move(m) for m in self.clothes], [move(m) for m in self.hair], skel, pose,
                         dict(self.meta))

    def posed_joints(self) -> np.ndarray:
        """(J, 3) joint positions in the current pose."""
        if self.skeleton is None:
            raise ValueError("character has no skeleton")
        return self.skeleton.posed_joints(self.pose)

    def bounds(self) -> np.ndarray:
        """(2, 3) bounds of all posed parts."""
        b = [self.part(p).bounds() for p in Part if not self.part(p).is_empty]
        return np.stack([np.min([x[0] for x in b], 0), np.max([x[1] for x in b], 0)])

    @property
    def height(self) -> float:
        """Height of the posed character (top of the highest part minus the lowest point)."""
        b = self.bounds()
        return float(b[1, 1] - b[0, 1])
