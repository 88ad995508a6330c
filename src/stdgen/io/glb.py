"""GLB (binary glTF 2.0) in and out for layered characters.

``write_glb`` writes one scene whose root nodes are ``body``, ``clothes`` and ``hair`` (a part
without geometry is an empty node, so the three names are always there), each with one mesh
holding one primitive per piece (the body, each garment, each hair piece) with its own material:
textured (baseColorTexture, sRGB PNG) or vertex-coloured (COLOR_0, linear as glTF requires), with
normals. Vertices are split along UV seams only in the file; ``read_glb`` welds nothing back, so
a round trip keeps positions and triangles but may have more vertices.

``skinned=True`` (a :class:`~stdgen.structures.character.Character` with a skeleton) writes the rest
meshes with a skin over joint nodes named after the skeleton's bones (world-aligned rest
frames, inverse bind matrices = translate(-rest joint)), and the character's pose as the joints'
rotations, so viewers show the posed character and tools can re-pose it;
:func:`read_character_glb` reads such a file back as a Character (rest meshes, skeleton, weights,
pose). :mod:`stdgen.export.vrm` builds VRM files on the same scene builder.

``read_glb`` returns ``{node name: Mesh}`` for the named nodes, each merging the meshes of the
node and its descendants in world coordinates (skinned meshes are skinned with the joints'
current transforms); :func:`read_parts` gives every part (``{Part: Mesh}``, labelled, a missing
node an empty mesh), the one way from a character GLB to per-part meshes. Malformed files raise
:class:`~stdgen.errors.InputError` naming the file. Reading goes through :mod:`stdgen.io.vrm`'s
primitives (the same code that imports VRM files).
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from stdgen.errors import InputError
from stdgen.structures.mesh import Mesh, merge_meshes
from stdgen.structures.semantics import PARTS, Part
from stdgen.utils.color import srgb_to_linear

PART_NODES: tuple[str, ...] = tuple(p.key for p in PARTS)

_DTYPE_COMPONENT = {np.dtype(np.int8): 5120, np.dtype(np.uint8): 5121, np.dtype(np.int16): 5122,
                    np.dtype(np.uint16): 5123, np.dtype(np.uint32): 5125, np.dtype(np.float32): 5126}


def uniform_color(mesh: Mesh, tol: float = 1.0 / 512) -> np.ndarray | None:
    """The (3,) sRGB colour of a vertex-coloured mesh whose vertices all share one colour (within
    ``tol``), else None."""
    if mesh.colors is None or mesh.num_vertices == 0:
        return None
    c = mesh.colors
    if np.abs(c - c[0]).max() <= tol:
        return c.mean(0).astype(np.float32)
    return None


# -- the builder -------------------------------------------------------------------------------------
class GlbBuilder:
    """Accumulates the binary buffer, buffer views, accessors, images and materials of one GLB."""

    def __init__(self, generator: str = "stdgen") -> None:
        import pygltflib as g

        from stdgen import __version__

        self.g = g
        self.gltf = g.GLTF2(asset=g.Asset(generator=f"{generator} {__version__}", version="2.0"))
        self.blob = bytearray()
        self._textures: dict[int, tuple[int, np.ndarray]] = {}  # id(array) -> (texture index, array)

    def use_extension(self, name: str) -> None:
        if name not in self.gltf.extensionsUsed:
            self.gltf.extensionsUsed.append(name)

    def view(self, data: bytes, target: int | None = None, stride: int | None = None) -> int:
        while len(self.blob) % 4:
            self.blob.append(0)
        bv = self.g.BufferView(buffer=0, byteOffset=len(self.blob), byteLength=len(data), target=target,
                               byteStride=stride)
        self.blob.extend(data)
        self.gltf.bufferViews.append(bv)
        return len(self.gltf.bufferViews) - 1

    def accessor(self, array: np.ndarray, kind: str, *, target: int | None = None, minmax: bool = False,
                 normalized: bool = False) -> int:
        array = np.ascontiguousarray(array)
        ctype = _DTYPE_COMPONENT[array.dtype]
        bv = self.view(array.tobytes(), target)
        acc = self.g.Accessor(bufferView=bv, componentType=ctype, count=int(array.shape[0]), type=kind,
                              normalized=normalized or None)
        if minmax:
            flat = array.reshape(array.shape[0], -1)
            acc.min = [float(x) for x in flat.min(0)]
            acc.max = [float(x) for x in flat.max(0)]
        self.gltf.accessors.append(acc)
        return len(self.gltf.accessors) - 1

    def png_texture(self, image: np.ndarray) -> int:
        """A texture (sampler: linear, clamp) for ``image`` (H, W, 3|4) uint8; the same array object
        is stored once."""
        if id(image) in self._textures:
            return self._textures[id(image)][0]
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG")
        bv = self.view(buf.getvalue())
        g = self.g
        self.gltf.images.append(g.Image(bufferView=bv, mimeType="image/png"))
        if not self.gltf.samplers:
            self.gltf.samplers.append(g.Sampler(magFilter=g.LINEAR, minFilter=g.LINEAR_MIPMAP_LINEAR,
                                                wrapS=g.CLAMP_TO_EDGE, wrapT=g.CLAMP_TO_EDGE))
        self.gltf.textures.append(g.Texture(source=len(self.gltf.images) - 1, sampler=0))
        # Keep the array alive with its index, so its id cannot be reused by another array.
        self._textures[id(image)] = (len(self.gltf.textures) - 1, image)
        return self._textures[id(image)][0]

    def finish(self) -> bytes:
        while len(self.blob) % 4:
            self.blob.append(0)
        self.gltf.buffers = [self.g.Buffer(byteLength=len(self.blob))]
        self.gltf.set_binary_blob(bytes(self.blob))
        return b"".join(self.gltf.save_to_bytes())


def split_seams(mesh: Mesh) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """glTF needs one UV per vertex: return (vertex index per new vertex (M,), new faces (F, 3),
    uvs per new vertex (M, 2) or None), splitting vertices only where UVs differ."""
    if mesh.uvs is None or mesh.uv_faces is None:
        return np.arange(mesh.num_vertices), mesh.faces, mesh.uvs
    pairs = np.stack([mesh.faces.reshape(-1), mesh.uv_faces.reshape(-1)], 1)
    uniq, inverse = np.unique(pairs, axis=0, return_inverse=True)
    return uniq[:, 0], inverse.reshape(-1, 3).astype(np.int32), mesh.uvs[uniq[:, 1]]


def normalized_weights(joints: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, K) influences -> (N, 4) uint16 joints and float32 weights as glTF wants them: the four
    largest, renormalised so the float32 sum is 1 to rounding, unused slots joint 0 weight 0."""
    joints = np.asarray(joints, np.int64)
    weights = np.clip(np.asarray(weights, np.float64), 0, None)
    k = joints.shape[1]
    if k < 4:
        joints = np.pad(joints, ((0, 0), (0, 4 - k)))
        weights = np.pad(weights, ((0, 0), (0, 4 - k)))
    order = np.argsort(-weights, axis=1, kind="stable")[:, :4]
    joints = np.take_along_axis(joints, order, 1)
    weights = np.take_along_axis(weights, order, 1)
    # Equal joints in one vertex add up (the validator rejects duplicates with weight).
    for a in range(4):
        for b in range(a + 1, 4):
            same = (joints[:, a] == joints[:, b]) & (weights[:, b] > 0)
            weights[same, a] += weights[same, b]
            weights[same, b] = 0
    total = weights.sum(1, keepdims=True)
    empty = total[:, 0] <= 0
    weights = np.where(empty[:, None], np.array([1.0, 0, 0, 0]), weights / np.maximum(total, 1e-30))
    joints = np.where(weights > 0, joints, 0)
    w32 = weights.astype(np.float32)
    # Put the float32 rounding error on the largest weight so the stored sum is 1.
    top = np.argmax(w32, axis=1)
    rows = np.arange(len(w32))
    w32[rows, top] += (1.0 - w32.astype(np.float64).sum(1)).astype(np.float32)
    return joints.astype(np.uint16), w32


# -- the scene ---------------------------------------------------------------------------------------
@dataclass
class SceneSpec:
    """What goes into a character GLB / VRM scene.

    ``parts`` {part key: [Mesh, ...]} (one primitive per mesh); ``material_names`` the same shape
    (None: ``"Body"``, ``"Clothes_1"``...); ``skeleton`` and ``pose`` (None: no skin / rest);
    ``material`` ``"pbr"`` (metallic 0, roughness 1), ``"unlit"`` (KHR_materials_unlit) or
    ``"mtoon"`` (VRMC_materials_mtoon 1.0); ``rotation`` (3, 3) applied to every position, normal
    and joint (VRM 0.x turns the character to face -Z).
    """

    parts: dict[str, list[Mesh]]
    material_names: dict[str, list[str]] | None = None
    skeleton: object | None = None
    pose: object | None = None
    material: str = "pbr"
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))


@dataclass
class BuiltScene:
    """Node indices of what :func:`build_scene` made: ``joints[j]`` the node of skeleton bone j,
    ``parts`` {part key: node}, ``materials`` {part key: [material index per mesh]}."""

    joints: list[int]
    parts: dict[str, int]
    materials: dict[str, list[int]]


def _material(b: GlbBuilder, mesh: Mesh, name: str, style: str, textured: bool) -> int:
    g = b.g
    pbr = g.PbrMetallicRoughness(baseColorFactor=[1.0, 1.0, 1.0, 1.0], metallicFactor=0.0, roughnessFactor=1.0)
    one_color = None if textured else uniform_color(mesh)
    if one_color is not None:  # one colour: the material's, not per vertex (every viewer shows it)
        pbr.baseColorFactor = [float(x) for x in srgb_to_linear(one_color)] + [1.0]
    tex_index = None
    if textured:
        tex_index = b.png_texture(mesh.texture)
        pbr.baseColorTexture = g.TextureInfo(index=tex_index)
    mat = g.Material(name=name, pbrMetallicRoughness=pbr, doubleSided=False)
    if textured and mesh.texture.shape[2] == 4 and int(mesh.texture[..., 3].min()) < 255:
        mat.alphaMode, mat.alphaCutoff = "MASK", 0.5
    if style == "unlit":
        mat.extensions = {"KHR_materials_unlit": {}}
        b.use_extension("KHR_materials_unlit")
    elif style == "mtoon":
        # MToon 1.0: the lit colour is glTF's base colour; the shade colour a darker tint of it
        # (the same texture), giving the two-tone anime look. No outline, no rim, no matcap.
        mtoon = {"specVersion": "1.0", "transparentWithZWrite": False, "renderQueueOffsetNumber": 0,
                 "shadeColorFactor": [0.78, 0.72, 0.80], "shadingShiftFactor": -0.05, "shadingToonyFactor": 0.9,
                 "giEqualizationFactor": 0.9, "matcapFactor": [0.0, 0.0, 0.0],
                 "parametricRimColorFactor": [0.0, 0.0, 0.0], "rimLightingMixFactor": 1.0,
                 "outlineWidthMode": "none", "outlineWidthFactor": 0.0, "outlineColorFactor": [0.0, 0.0, 0.0],
                 "outlineLightingMixFactor": 1.0}
        if tex_index is not None:
            mtoon["shadeMultiplyTexture"] = {"index": tex_index}
        else:  # no texture to multiply: the shade is the tinted base colour itself
            base = np.asarray(pbr.baseColorFactor[:3])
            mtoon["shadeColorFactor"] = [float(x) for x in base * np.asarray(mtoon["shadeColorFactor"])]
        mat.extensions = {"VRMC_materials_mtoon": mtoon}
        b.use_extension("VRMC_materials_mtoon")
    elif style != "pbr":
        raise ValueError(f"material style must be pbr, unlit or mtoon, got {style!r}")
    b.gltf.materials.append(mat)
    return len(b.gltf.materials) - 1


def _primitive(b: GlbBuilder, mesh: Mesh, material: int, rotation: np.ndarray, skinned: bool):
    g = b.g
    src, faces, uvs = split_seams(mesh)
    textured = mesh.texture is not None and mesh.uvs is not None
    positions = (mesh.vertices[src].astype(np.float64) @ rotation.T).astype(np.float32)
    normals = mesh.vertex_normals()[src].astype(np.float64) @ rotation.T
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = np.where(length > 1e-6, normals / np.maximum(length, 1e-12), [0.0, 1.0, 0.0]).astype(np.float32)
    attrs = g.Attributes(
        POSITION=b.accessor(positions, "VEC3", target=g.ARRAY_BUFFER, minmax=True),
        NORMAL=b.accessor(normals, "VEC3", target=g.ARRAY_BUFFER),
    )
    if textured:
        attrs.TEXCOORD_0 = b.accessor(uvs.astype(np.float32), "VEC2", target=g.ARRAY_BUFFER)
    elif mesh.colors is not None and uniform_color(mesh) is None:
        attrs.COLOR_0 = b.accessor(srgb_to_linear(mesh.colors[src]).astype(np.float32), "VEC3", target=g.ARRAY_BUFFER)
    if skinned:
        if mesh.skin_joints is None:
            raise ValueError(f"mesh {mesh.name!r} has no skin weights; a skinned export needs them on every piece")
        joints, weights = normalized_weights(mesh.skin_joints[src], mesh.skin_weights[src])
        attrs.JOINTS_0 = b.accessor(joints, "VEC4", target=g.ARRAY_BUFFER)
        attrs.WEIGHTS_0 = b.accessor(weights, "VEC4", target=g.ARRAY_BUFFER)
    index_type = np.uint16 if len(src) < 65535 else np.uint32
    indices = b.accessor(faces.reshape(-1).astype(index_type), "SCALAR", target=g.ELEMENT_ARRAY_BUFFER)
    return g.Primitive(attributes=attrs, indices=indices, material=material, mode=g.TRIANGLES)


def _rotation_to_quaternion(m: np.ndarray) -> list[float]:
    """3x3 rotation -> glTF quaternion [x, y, z, w] (unit, w >= 0)."""
    from scipy.spatial.transform import Rotation

    q = Rotation.from_matrix(np.asarray(m, np.float64)).as_quat()
    if q[3] < 0:
        q = -q
    return [float(x) for x in q]


def build_scene(b: GlbBuilder, spec: SceneSpec) -> BuiltScene:
    """Add the joint hierarchy (if any), the part nodes and their meshes to ``b``'s glTF and make
    them the default scene."""
    g = b.g
    rot = np.asarray(spec.rotation, np.float64)
    roots: list[int] = []
    joint_nodes: list[int] = []
    skin_index = None
    skel = spec.skeleton
    if skel is not None:
        first = len(b.gltf.nodes)
        rest = skel.joints.astype(np.float64) @ rot.T
        pose = spec.pose
        for j, name in enumerate(skel.names):
            p = int(skel.parents[j])
            t = rest[j] - (rest[p] if p >= 0 else 0.0)
            node = g.Node(name=name, translation=[float(x) for x in t])
            if pose is not None:
                local = rot @ pose.rotations[j].astype(np.float64) @ rot.T
                if not np.allclose(local, np.eye(3), atol=1e-7):
                    node.rotation = _rotation_to_quaternion(local)
                if p < 0 and np.any(pose.translation != 0):
                    node.translation = [float(x) for x in t + rot @ pose.translation.astype(np.float64)]
            b.gltf.nodes.append(node)
            joint_nodes.append(first + j)
        for j, p in enumerate(skel.parents):
            if p >= 0:
                parent = b.gltf.nodes[first + int(p)]
                parent.children = (parent.children or []) + [first + j]
        ibm = np.tile(np.eye(4, dtype=np.float32), (len(skel), 1, 1))
        ibm[:, :3, 3] = -rest
        ibm_acc = b.accessor(ibm.transpose(0, 2, 1).reshape(len(skel), 16).astype(np.float32), "MAT4")
        b.gltf.skins.append(g.Skin(name="skeleton", joints=joint_nodes, inverseBindMatrices=ibm_acc,
                                   skeleton=first))
        skin_index = len(b.gltf.skins) - 1
        roots.extend(first + j for j in range(len(skel)) if skel.parents[j] < 0)
    part_nodes: dict[str, int] = {}
    materials: dict[str, list[int]] = {}
    for key in PART_NODES:
        meshes = [m for m in spec.parts.get(key, []) if m is not None and not m.is_empty]
        node = g.Node(name=key)
        materials[key] = []
        if meshes:
            names = (spec.material_names or {}).get(key) or _default_material_names(key, len(meshes))
            prims = []
            for m, mname in zip(meshes, names):
                textured = m.texture is not None and m.uvs is not None
                mi = _material(b, m, mname, spec.material, textured)
                materials[key].append(mi)
                prims.append(_primitive(b, m, mi, rot, skin_index is not None))
            b.gltf.meshes.append(g.Mesh(name=key.capitalize(), primitives=prims))
            node.mesh = len(b.gltf.meshes) - 1
            if skin_index is not None:
                node.skin = skin_index
        b.gltf.nodes.append(node)
        part_nodes[key] = len(b.gltf.nodes) - 1
        roots.append(part_nodes[key])
    b.gltf.scenes = [g.Scene(name="character", nodes=roots)]
    b.gltf.scene = 0
    return BuiltScene(joint_nodes, part_nodes, materials)


def _default_material_names(key: str, n: int) -> list[str]:
    base = key.capitalize()
    return [base] if n == 1 else [f"{base}_{i + 1}" for i in range(n)]


def posed_pieces(character, part: Part) -> list[Mesh]:
    """The pieces of one part in the character's pose (each piece its own mesh)."""
    from stdgen.structures.character import skin_vertices

    out = []
    for m in character.rest_meshes(part):
        pose = character.pose
        if pose is None or character.skeleton is None or pose.is_identity():
            out.append(m)
        elif m.skin_joints is None:
            raise ValueError(f"mesh {m.name!r} has no skin weights, so it cannot be posed")
        else:
            v = skin_vertices(m.vertices, m.skin_joints, m.skin_weights, character.skeleton, pose)
            out.append(m.replace(vertices=v, normals=None))
    return out


def scene_spec(parts, *, skinned: bool = False) -> SceneSpec:
    """The :class:`SceneSpec` of ``write_glb``'s arguments."""
    from stdgen.structures.character import Character

    if isinstance(parts, Character):
        if skinned:
            if parts.skeleton is None:
                raise ValueError("skinned=True needs a character with a skeleton")
            return SceneSpec({p.key: list(parts.rest_meshes(p)) for p in PARTS}, skeleton=parts.skeleton,
                             pose=parts.pose)
        return SceneSpec({p.key: posed_pieces(parts, p) for p in PARTS})
    if skinned:
        raise ValueError("skinned=True needs a Character (with its skeleton), not a dict of meshes")
    out: dict[str, list[Mesh]] = {}
    for key, m in parts.items():
        out.setdefault(Part.parse(key).key, []).extend(m if isinstance(m, list | tuple) else [m])
    return SceneSpec(out)


def glb_bytes(parts, *, skinned: bool = False) -> bytes:
    """The bytes of the GLB that :func:`write_glb` writes."""
    b = GlbBuilder()
    build_scene(b, scene_spec(parts, skinned=skinned))
    return b.finish()


def write_glb(parts: Mapping[str, Mesh] | object, path: str | os.PathLike, *, skinned: bool = False) -> None:
    """Write a layered character as GLB (atomically).

    ``parts``: a :class:`~stdgen.structures.character.Character` (its posed pieces are written, or with
    ``skinned=True`` its rest pieces, skin and pose) or a mapping ``{"body" | Part.BODY: Mesh or
    [Mesh, ...], ...}``.
    """
    from stdgen.utils.io import atomic_write

    data = glb_bytes(parts, skinned=skinned)
    with atomic_write(path) as f:
        f.write(data)


# -- reading ---------------------------------------------------------------------------------------
def _named_ancestor(ni: int, parents: np.ndarray, wanted: dict[int, str]) -> str | None:
    j = ni
    while j >= 0:
        if j in wanted:
            return wanted[j]
        j = int(parents[j])
    return None


def _guard(path, fn):
    from stdgen.io.gltf import MALFORMED_ERRORS

    try:
        return fn()
    except InputError:
        raise
    except MALFORMED_ERRORS as exc:
        raise InputError(f"{path}: malformed glTF ({type(exc).__name__}: {exc})") from None


def read_glb(path: str | os.PathLike, names: tuple[str, ...] = PART_NODES) -> dict[str, Mesh]:
    """Read the named nodes of a GLB: ``{name: Mesh}`` (world coordinates, skinned meshes as
    posed by their joints; a named node's descendants are merged into it). Names missing from
    the file are absent from the result."""
    from stdgen.io.vrm import extract_primitives, plain_document

    doc = plain_document(path)

    def run():
        gltf = doc.gltf
        wanted = {i: n.name for i, n in enumerate(gltf.items("nodes")) if n.name in names}
        prims, _ = extract_primitives(doc, drop_transparent=False)
        parents = gltf.parents()
        pieces: dict[str, list[Mesh]] = {n: [] for n in wanted.values()}
        scene = set(gltf.scene_nodes())
        for p in prims:
            owner = _named_ancestor(p.info["node_index"], parents, wanted)
            if owner is not None:
                pieces[owner].append(_piece(p, None, None, p.names.get("material") or owner))
        result = {}
        for ni, name in wanted.items():
            if ni in scene and name not in result:
                label = Part.parse(name) if name in PART_NODES else None
                result[name] = merge_meshes(pieces[name], label=label, name=name)
        return result

    return _guard(doc.path, run)


def read_parts(path: str | os.PathLike) -> dict[Part, Mesh]:
    """Every part of a character GLB (nodes ``body``, ``clothes``, ``hair``): ``{Part: Mesh}`` in
    part order, each labelled with its part and named by its key; a node the file lacks is an empty
    mesh. Raises :class:`~stdgen.errors.InputError` naming the file if it is missing or malformed."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: missing")
    nodes = read_glb(path)
    return {p: nodes[p.key].replace(label=p, name=p.key) if p.key in nodes else empty_part(p) for p in PARTS}


def empty_part(part: Part) -> Mesh:
    """An empty mesh labelled ``part`` (a part a character does not have)."""
    return Mesh(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32), label=part, name=part.key)


def _piece(p, skin_joints, skin_weights, name: str) -> Mesh:
    return Mesh(p.vertices, p.faces, normals=p.normals, colors=p.colors, uvs=p.uvs, uv_faces=p.uv_faces,
                texture=p.texture, name=name, skin_joints=skin_joints, skin_weights=skin_weights)


def read_character_glb(path: str | os.PathLike, data: bytes | None = None):
    """Read a skinned character GLB (as ``write_glb(character, skinned=True)`` writes) back into a
    :class:`~stdgen.structures.character.Character`: rest pieces per part (one per primitive, vertices
    split at UV seams welded back), the
    skeleton (joint nodes' names, hierarchy and bind positions), skin weights, and the pose the
    joint nodes hold. A GLB without a skin comes back with ``skeleton=None`` (its meshes as
    placed in the file)."""
    from stdgen.io.vrm import plain_document

    doc = plain_document(path, data)
    return _guard(doc.path, lambda: _read_character(doc))


def _read_character(doc):
    from stdgen.io.gltf import as_int
    from stdgen.io.vrm import extract_primitives, skin_to_bones, weld_vertices
    from stdgen.structures.character import Character, Pose, Skeleton

    gltf = doc.gltf
    path = doc.path
    nodes = gltf.items("nodes")
    scene = gltf.scene_nodes()
    wanted = {i: nodes[i].name for i in scene if nodes[i].name in PART_NODES}
    if not wanted:
        raise InputError(f"{path}: no node named body, clothes or hair: not a stdgen character GLB")
    parents = gltf.parents()
    skins = {as_int(nodes[i].skin, f"node {i}'s skin", path) for i in wanted if nodes[i].skin is not None}
    if len(skins) > 1:
        raise InputError(f"{path}: the part nodes use {len(skins)} different skins; expected one")
    skeleton = pose = None
    node_bone: dict[int, int] = {}
    if skins:
        si = skins.pop()
        skin = gltf.item("skins", si)
        joints = [as_int(j, f"skin {si}'s joint", path, hi=len(nodes)) for j in (skin.joints or [])]
        if not joints or len(set(joints)) != len(joints):
            raise InputError(f"{path}: skin {si} has no joints or repeats one")
        pos = {n: k for k, n in enumerate(joints)}
        jparents = []
        for n in joints:
            a = int(parents[n])
            while a >= 0 and a not in pos:
                a = int(parents[a])
            jparents.append(pos[a] if a >= 0 else -1)
        if any(p >= k for k, p in enumerate(jparents)):
            raise InputError(f"{path}: skin {si} lists a joint before its parent joint")
        if skin.inverseBindMatrices is None:
            raise InputError(f"{path}: skin {si} has no inverseBindMatrices")
        ibm = gltf.accessor(skin.inverseBindMatrices, f"skin {si}'s inverseBindMatrices")
        if ibm.shape != (len(joints), 16):
            raise InputError(f"{path}: skin {si}'s inverseBindMatrices do not match its {len(joints)} joints")
        ibm = ibm.astype(np.float64).reshape(-1, 4, 4).transpose(0, 2, 1)
        bind_world = np.linalg.inv(ibm)
        names = [nodes[n].name or f"joint{k}" for k, n in enumerate(joints)]
        skeleton = Skeleton(names, jparents, bind_world[:, :3, 3])
        # The pose: each joint's world change from bind to now, as local rotations (our convention).
        world = gltf.world_matrices()
        delta = world[joints] @ ibm  # rest world -> posed world, per joint
        rot = delta[:, :3, :3]
        local = np.empty_like(rot)
        for k, p in enumerate(jparents):
            local[k] = rot[k] if p < 0 else rot[p].T @ rot[k]
        root = [k for k, p in enumerate(jparents) if p < 0][0]
        posed_root = delta[root, :3, :3] @ skeleton.joints[root] + delta[root, :3, 3]
        pose = Pose(local, posed_root - skeleton.joints[root])
        if np.allclose(pose.rotations, np.eye(3), atol=1e-6) and np.allclose(pose.translation, 0, atol=1e-7):
            pose = None
        for ni in range(len(nodes)):
            a = ni
            while a >= 0 and a not in pos:
                a = int(parents[a])
            node_bone[ni] = pos[a] if a >= 0 else root

    prims, _ = extract_primitives(doc, drop_transparent=False, bind_pose=True)
    pieces: dict[str, list[Mesh]] = {k: [] for k in PART_NODES}
    for p in prims:
        owner = _named_ancestor(p.info["node_index"], parents, wanted)
        if owner is None:
            continue
        sj = sw = None
        if skeleton is not None:
            sj, sw = skin_to_bones(p.influence_nodes, p.influence_weights, node_bone)
        pieces[owner].append(weld_vertices(_piece(p, sj, sw, p.names.get("material") or owner)))
    for key in PART_NODES:
        for m in pieces[key]:
            m.label = Part.parse(key)
    if not pieces["body"]:
        raise InputError(f"{path}: the body node has no mesh")
    body = pieces["body"][0] if len(pieces["body"]) == 1 else merge_meshes(pieces["body"], label=Part.BODY,
                                                                              name="body")
    return Character(body=body, clothes=pieces["clothes"], hair=pieces["hair"], skeleton=skeleton, pose=pose,
                     meta={"source": str(path)})
