"""GLB (binary glTF 2.0) in and out for layered characters.

``write_glb`` writes one scene whose root nodes are ``body``, ``clothes`` and ``hair`` (a part
without geometry is an empty node, so the three names are always there), each with one mesh:
textured (baseColorTexture, sRGB PNG) or vertex-coloured (COLOR_0, linear as glTF requires),
with normals. Vertices are split along UV seams only in the file; ``read_glb`` welds nothing
back, so a round trip keeps positions and triangles but may have more vertices.

``skinned=True`` (a :class:`~stdgen.data.character.Character` with a skeleton) writes the rest
meshes with a skin over joint nodes named after the skeleton's bones (world-aligned rest
frames, inverse bind matrices = translate(-rest joint)), and the character's pose as the joints'
rotations, so viewers show the posed character and tools can re-pose it.

``read_glb`` returns ``{node name: Mesh}`` for the named nodes, each merging the meshes of the
node and its descendants in world coordinates (skinned meshes are skinned with the joints'
current transforms). Malformed files raise :class:`~stdgen.errors.InputError` naming the file.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from stdgen.errors import InputError
from stdgen.geometry.mesh import Mesh, merge_meshes
from stdgen.semantics import PARTS, Part

PART_NODES: tuple[str, ...] = tuple(p.key for p in PARTS)

_COMPONENT = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}


# -- colour spaces -----------------------------------------------------------------------------------
def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    c = np.asarray(c, np.float32)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    c = np.clip(np.asarray(c, np.float32), 0, 1)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1 / 2.4) - 0.055).astype(np.float32)


# -- writing ---------------------------------------------------------------------------------------
class _Builder:
    """Accumulates the binary buffer, buffer views and accessors of one GLB."""

    def __init__(self) -> None:
        import pygltflib as g

        self.g = g
        self.gltf = g.GLTF2(asset=g.Asset(generator="stdgen", version="2.0"))
        self.blob = bytearray()

    def view(self, data: bytes, target: int | None = None) -> int:
        while len(self.blob) % 4:
            self.blob.append(0)
        bv = self.g.BufferView(buffer=0, byteOffset=len(self.blob), byteLength=len(data), target=target)
        self.blob.extend(data)
        self.gltf.bufferViews.append(bv)
        return len(self.gltf.bufferViews) - 1

    def accessor(self, array: np.ndarray, kind: str, *, target: int | None = None, minmax: bool = False,
                 normalized: bool = False) -> int:
        array = np.ascontiguousarray(array)
        ctype = {np.dtype(v): k for k, v in _COMPONENT.items()}[array.dtype]
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
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")
        bv = self.view(buf.getvalue())
        g = self.g
        self.gltf.images.append(g.Image(bufferView=bv, mimeType="image/png"))
        if not self.gltf.samplers:
            self.gltf.samplers.append(g.Sampler(magFilter=g.LINEAR, minFilter=g.LINEAR_MIPMAP_LINEAR,
                                                wrapS=g.CLAMP_TO_EDGE, wrapT=g.CLAMP_TO_EDGE))
        self.gltf.textures.append(g.Texture(source=len(self.gltf.images) - 1, sampler=0))
        return len(self.gltf.textures) - 1

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
        uvs = mesh.uvs
        return np.arange(mesh.num_vertices), mesh.faces, uvs
    pairs = np.stack([mesh.faces.reshape(-1), mesh.uv_faces.reshape(-1)], 1)
    uniq, inverse = np.unique(pairs, axis=0, return_inverse=True)
    return uniq[:, 0], inverse.reshape(-1, 3).astype(np.int32), mesh.uvs[uniq[:, 1]]


def _add_mesh(b: _Builder, mesh: Mesh, name: str, material_name: str, skin_joint_map: np.ndarray | None) -> int:
    g = b.g
    src, faces, uvs = split_seams(mesh)
    normals = mesh.vertex_normals()[src]
    attrs = g.Attributes(
        POSITION=b.accessor(mesh.vertices[src].astype(np.float32), "VEC3", target=g.ARRAY_BUFFER, minmax=True),
        NORMAL=b.accessor(normals.astype(np.float32), "VEC3", target=g.ARRAY_BUFFER),
    )
    pbr = g.PbrMetallicRoughness(metallicFactor=0.0, roughnessFactor=1.0)
    if mesh.texture is not None and uvs is not None:
        attrs.TEXCOORD_0 = b.accessor(uvs.astype(np.float32), "VEC2", target=g.ARRAY_BUFFER)
        pbr.baseColorTexture = g.TextureInfo(index=b.png_texture(mesh.texture))
    elif mesh.colors is not None:
        attrs.COLOR_0 = b.accessor(srgb_to_linear(mesh.colors[src]), "VEC3", target=g.ARRAY_BUFFER)
    if skin_joint_map is not None and mesh.skin_joints is not None:
        joints = skin_joint_map[mesh.skin_joints[src]]
        weights = mesh.skin_weights[src].astype(np.float32)
        k = joints.shape[1]
        if k < 4:  # glTF wants sets of four
            joints = np.pad(joints, ((0, 0), (0, 4 - k)))
            weights = np.pad(weights, ((0, 0), (0, 4 - k)))
        attrs.JOINTS_0 = b.accessor(joints[:, :4].astype(np.uint16), "VEC4", target=g.ARRAY_BUFFER)
        attrs.WEIGHTS_0 = b.accessor(weights[:, :4], "VEC4", target=g.ARRAY_BUFFER)
    b.gltf.materials.append(g.Material(name=material_name, pbrMetallicRoughness=pbr, doubleSided=False))
    indices = b.accessor(faces.reshape(-1).astype(np.uint32), "SCALAR", target=g.ELEMENT_ARRAY_BUFFER)
    prim = g.Primitive(attributes=attrs, indices=indices, material=len(b.gltf.materials) - 1, mode=g.TRIANGLES)
    b.gltf.meshes.append(g.Mesh(name=name, primitives=[prim]))
    return len(b.gltf.meshes) - 1


def _rotation_to_quaternion(m: np.ndarray) -> list[float]:
    """3x3 rotation -> glTF quaternion [x, y, z, w]."""
    from scipy.spatial.transform import Rotation

    q = Rotation.from_matrix(np.asarray(m, np.float64)).as_quat()
    return [float(x) for x in q]


def glb_bytes(parts, *, skinned: bool = False) -> bytes:
    """The bytes of the GLB that :func:`write_glb` writes."""
    from stdgen.data.character import Character

    character = parts if isinstance(parts, Character) else None
    if character is not None:
        use_rest = skinned and character.skeleton is not None
        meshes = {p.key: (merge_meshes(character.rest_meshes(p), label=p, name=p.key) if use_rest
                          else character.part(p)) for p in PARTS}
    else:
        if skinned:
            raise ValueError("skinned=True needs a Character (with its skeleton), not a dict of meshes")
        meshes = {}
        for key, m in parts.items():
            name = Part.parse(key).key
            meshes[name] = m
    b = _Builder()
    g = b.g
    root_nodes: list[int] = []
    skin_index = None
    joint_map = None
    if skinned:
        skel = character.skeleton
        if skel is None:
            raise ValueError("skinned=True needs a character with a skeleton")
        pose = character.pose
        first_joint = len(b.gltf.nodes)
        for j, name in enumerate(skel.names):
            p = skel.parents[j]
            t = skel.joints[j] - (skel.joints[p] if p >= 0 else 0)
            node = g.Node(name=name, translation=[float(x) for x in t])
            if pose is not None:
                rot = pose.rotations[j]
                if not np.allclose(rot, np.eye(3), atol=1e-7):
                    node.rotation = _rotation_to_quaternion(rot)
                if p < 0 and np.any(pose.translation != 0):
                    node.translation = [float(x) for x in t + pose.translation]
            b.gltf.nodes.append(node)
        for j, p in enumerate(skel.parents):
            if p >= 0:
                parent = b.gltf.nodes[first_joint + p]
                parent.children = (parent.children or []) + [first_joint + j]
        ibm = np.tile(np.eye(4, dtype=np.float32), (len(skel), 1, 1))
        ibm[:, :3, 3] = -skel.joints
        ibm_acc = b.accessor(ibm.transpose(0, 2, 1).reshape(len(skel), 16), "MAT4")  # column-major
        b.gltf.skins.append(g.Skin(name="skeleton", joints=list(range(first_joint, first_joint + len(skel))),
                                   inverseBindMatrices=ibm_acc, skeleton=first_joint))
        skin_index = 0
        joint_map = np.arange(len(skel), dtype=np.int64)
        root_nodes.append(first_joint)
    for key in PART_NODES:
        mesh = meshes.get(key)
        node = g.Node(name=key)
        if mesh is not None and not mesh.is_empty:
            node.mesh = _add_mesh(b, mesh, key, key.capitalize(), joint_map)
            if skin_index is not None and mesh.skin_joints is not None:
                node.skin = skin_index
        b.gltf.nodes.append(node)
        root_nodes.append(len(b.gltf.nodes) - 1)
    b.gltf.scenes = [g.Scene(name="character", nodes=root_nodes)]
    b.gltf.scene = 0
    return b.finish()


def write_glb(parts: Mapping[str, Mesh] | object, path: str | os.PathLike, *, skinned: bool = False) -> None:
    """Write a layered character as GLB (atomically).

    ``parts``: a :class:`~stdgen.data.character.Character` (its posed parts are written, or with
    ``skinned=True`` its rest parts, skin and pose) or a mapping ``{"body" | Part.BODY: Mesh, ...}``.
    """
    from stdgen.utils.io import atomic_write

    data = glb_bytes(parts, skinned=skinned)
    with atomic_write(path) as f:
        f.write(data)


# -- reading ---------------------------------------------------------------------------------------
def load_gltf(path: str | os.PathLike):
    """Parse a GLB/VRM file with pygltflib; return (gltf, binary blob). Raises InputError."""
    import pygltflib as g

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    raw = path.read_bytes()
    if len(raw) < 20:
        raise InputError(f"{path}: too short to be a GLB file ({len(raw)} bytes)")
    magic, version, length = struct.unpack_from("<4sII", raw, 0)
    if magic != b"glTF":
        raise InputError(f"{path}: not a GLB file (magic {magic!r}, expected b'glTF')")
    if version != 2:
        raise InputError(f"{path}: glTF container version {version}, only 2 is supported")
    if length > len(raw):
        raise InputError(f"{path}: truncated (header says {length} bytes, file has {len(raw)})")
    json_len, json_type = struct.unpack_from("<II", raw, 12)
    if json_type != 0x4E4F534A:
        raise InputError(f"{path}: first chunk is not JSON")
    if 20 + json_len > length:
        raise InputError(f"{path}: JSON chunk length {json_len} runs past the end of the file")
    try:
        gltf = g.GLTF2().load_from_bytes(raw)
    except Exception as exc:  # pygltflib raises many kinds on bad input
        raise InputError(f"{path}: malformed glTF ({type(exc).__name__}: {exc})") from None
    blob = gltf.binary_blob() or b""
    return gltf, blob


def read_accessor(gltf, blob: bytes, index: int, path: str | os.PathLike = "<glb>") -> np.ndarray:
    """An accessor as a numpy array (count, width) (float for normalised integers), bounds-checked."""
    try:
        acc = gltf.accessors[index]
    except (IndexError, TypeError):
        raise InputError(f"{path}: accessor {index} does not exist") from None
    if acc.componentType not in _COMPONENT or acc.type not in _WIDTH:
        raise InputError(f"{path}: accessor {index} has unsupported type {acc.type}/{acc.componentType}")
    dtype = np.dtype(_COMPONENT[acc.componentType])
    width = _WIDTH[acc.type]
    count = int(acc.count)
    if acc.sparse is not None:
        raise InputError(f"{path}: accessor {index} is sparse, which this reader does not support")
    if acc.bufferView is None:
        return np.zeros((count, width), dtype)
    try:
        bv = gltf.bufferViews[acc.bufferView]
    except (IndexError, TypeError):
        raise InputError(f"{path}: accessor {index} refers to missing bufferView {acc.bufferView}") from None
    if bv.buffer != 0:
        raise InputError(f"{path}: bufferView {acc.bufferView} uses external buffer {bv.buffer}")
    start = (bv.byteOffset or 0) + (acc.byteOffset or 0)
    elem = dtype.itemsize * width
    stride = bv.byteStride or elem
    need = start + (stride * (count - 1) + elem if count else 0)
    if need > (bv.byteOffset or 0) + bv.byteLength or need > len(blob):
        raise InputError(f"{path}: accessor {index} reads past the end of its buffer")
    if stride == elem:
        arr = np.frombuffer(blob, dtype, count * width, start).reshape(count, width)
    else:
        raw = np.frombuffer(blob, np.uint8, need - start, start)
        rows = np.lib.stride_tricks.as_strided(raw, shape=(count, elem), strides=(stride, 1))
        arr = np.ascontiguousarray(rows).view(dtype).reshape(count, width)
    arr = np.array(arr)
    if acc.normalized and dtype.kind in "iu":
        arr = arr.astype(np.float32) / np.iinfo(dtype).max
    return arr


def _node_matrix(node) -> np.ndarray:
    if node.matrix is not None and len(node.matrix) == 16:
        return np.asarray(node.matrix, np.float64).reshape(4, 4).T  # column-major in glTF
    from scipy.spatial.transform import Rotation

    m = np.eye(4)
    if node.scale is not None:
        m = np.diag([*node.scale, 1.0]) @ m
    if node.rotation is not None:
        r = np.eye(4)
        r[:3, :3] = Rotation.from_quat(np.asarray(node.rotation, np.float64)).as_matrix()
        m = r @ m
    if node.translation is not None:
        t = np.eye(4)
        t[:3, 3] = node.translation
        m = t @ m
    return m


def _world_matrices(gltf, path) -> dict[int, np.ndarray]:
    world: dict[int, np.ndarray] = {}
    scene = gltf.scenes[gltf.scene or 0] if gltf.scenes else None
    roots = scene.nodes if scene is not None else list(range(len(gltf.nodes)))
    stack = [(r, np.eye(4)) for r in roots]
    while stack:
        i, parent = stack.pop()
        if i in world:
            raise InputError(f"{path}: node {i} appears twice in the scene graph")
        try:
            node = gltf.nodes[i]
        except (IndexError, TypeError):
            raise InputError(f"{path}: scene refers to missing node {i}") from None
        world[i] = parent @ _node_matrix(node)
        stack.extend((c, world[i]) for c in (node.children or []))
    return world


def _read_image(gltf, blob, texture_index, path) -> np.ndarray | None:
    from PIL import Image

    try:
        tex = gltf.textures[texture_index]
        img = gltf.images[tex.source]
    except (IndexError, TypeError):
        raise InputError(f"{path}: texture {texture_index} refers to a missing image") from None
    if img.bufferView is None:
        raise InputError(f"{path}: image {tex.source} is not embedded (external images are not read)")
    bv = gltf.bufferViews[img.bufferView]
    data = blob[(bv.byteOffset or 0):(bv.byteOffset or 0) + bv.byteLength]
    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGBA" if im.mode in ("RGBA", "LA", "P") else "RGB"))
    except OSError as exc:
        raise InputError(f"{path}: image {tex.source} cannot be decoded ({exc})") from None


def _primitive_mesh(gltf, blob, prim, world: np.ndarray, joint_world: np.ndarray | None, path) -> Mesh:
    attrs = prim.attributes
    if attrs.POSITION is None:
        raise InputError(f"{path}: a primitive has no POSITION")
    if prim.mode not in (None, 4):
        raise InputError(f"{path}: primitive mode {prim.mode} is not triangles")
    v = read_accessor(gltf, blob, attrs.POSITION, path).astype(np.float64)
    n = len(v)
    if prim.indices is not None:
        faces = read_accessor(gltf, blob, prim.indices, path).reshape(-1)
    else:
        faces = np.arange(n)
    if len(faces) % 3:
        raise InputError(f"{path}: index count {len(faces)} is not a multiple of 3")
    faces = faces.reshape(-1, 3).astype(np.int64)
    if len(faces) and (faces.max() >= n):
        raise InputError(f"{path}: indices point past the {n} vertices")
    if joint_world is not None and attrs.JOINTS_0 is not None and attrs.WEIGHTS_0 is not None:
        j = read_accessor(gltf, blob, attrs.JOINTS_0, path).astype(np.int64)
        w = read_accessor(gltf, blob, attrs.WEIGHTS_0, path).astype(np.float64)
        if len(j) != n or len(w) != n or j.max(initial=0) >= len(joint_world):
            raise InputError(f"{path}: skin attributes do not match the vertices or the skin's joints")
        vh = np.concatenate([v, np.ones((n, 1))], 1)
        out = np.zeros((n, 3))
        for k in range(j.shape[1]):
            out += w[:, k:k + 1] * np.einsum("nab,nb->na", joint_world[j[:, k]], vh)[:, :3]
        v = out
    else:
        v = v @ world[:3, :3].T + world[:3, 3]
    colors = uvs = texture = None
    material = gltf.materials[prim.material] if prim.material is not None and gltf.materials else None
    pbr = material.pbrMetallicRoughness if material is not None else None
    if pbr is not None and pbr.baseColorTexture is not None and attrs.TEXCOORD_0 is not None:
        texture = _read_image(gltf, blob, pbr.baseColorTexture.index, path)
        uvs = read_accessor(gltf, blob, attrs.TEXCOORD_0, path).astype(np.float32)
    elif attrs.COLOR_0 is not None:
        colors = linear_to_srgb(read_accessor(gltf, blob, attrs.COLOR_0, path)[:, :3])
    elif pbr is not None and pbr.baseColorFactor is not None:
        colors = np.tile(linear_to_srgb(np.asarray(pbr.baseColorFactor[:3])), (n, 1))
    if np.linalg.det(world[:3, :3]) < 0:
        faces = faces[:, ::-1]
    return Mesh(v.astype(np.float32), faces, colors=colors, uvs=uvs, texture=texture)


def read_glb(path: str | os.PathLike, names: tuple[str, ...] = PART_NODES) -> dict[str, Mesh]:
    """Read the named nodes of a GLB: ``{name: Mesh}`` (world coordinates; a named node's
    descendants are merged into it). Names missing from the file are absent from the result."""
    gltf, blob = load_gltf(path)
    try:
        world = _world_matrices(gltf, path)
        skins_world = {}
        for si, skin in enumerate(gltf.skins or []):
            ibm = (read_accessor(gltf, blob, skin.inverseBindMatrices, path).reshape(-1, 4, 4).transpose(0, 2, 1)
                   if skin.inverseBindMatrices is not None else np.tile(np.eye(4), (len(skin.joints), 1, 1)))
            if len(ibm) != len(skin.joints):
                raise InputError(f"{path}: skin {si} has {len(skin.joints)} joints but {len(ibm)} matrices")
            skins_world[si] = np.stack([world.get(j, np.eye(4)) @ ibm[k] for k, j in enumerate(skin.joints)])
        result: dict[str, Mesh] = {}
        for i, node in enumerate(gltf.nodes):
            if node.name not in names or i not in world:
                continue
            meshes = []
            stack = [i]
            while stack:
                k = stack.pop()
                nd = gltf.nodes[k]
                if nd.mesh is not None:
                    try:
                        gmesh = gltf.meshes[nd.mesh]
                    except (IndexError, TypeError):
                        raise InputError(f"{path}: node {k} refers to missing mesh {nd.mesh}") from None
                    jw = skins_world.get(nd.skin) if nd.skin is not None else None
                    meshes.extend(_primitive_mesh(gltf, blob, p, world[k], jw, path) for p in gmesh.primitives)
                stack.extend(nd.children or [])
            label = Part.parse(node.name) if node.name in PART_NODES else None
            result[node.name] = merge_meshes(meshes, label=label, name=node.name)
        return result
    except InputError:
        raise
    except (IndexError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"{path}: malformed glTF ({type(exc).__name__}: {exc})") from None
