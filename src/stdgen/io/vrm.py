"""VRM 0.x / 1.0 and plain glTF documents -> world-space triangle primitives (the one reader).

Steps (each a small function over plain data):

1. :func:`read_vrm` - the GLB (checked by :mod:`stdgen.io.gltf`), its VRM version, humanoid
   bone map (a list in 0.x, a dict in 1.0; 0.x thumb names renamed to 1.0's) and meta;
   :func:`plain_document` - the same for a plain glTF (no humanoid).
2. :func:`extract_primitives` - every triangle primitive of the default scene in world space at
   the file's rest pose (skinned meshes skinned with their bind-time joints, morph targets at their
   default weights), turned to face +Z (VRM 0.x models face -Z), with its base colour (glTF
   ``baseColorTexture`` x ``baseColorFactor``; MToon's lit colour is that same base colour) and
   per-vertex influences as node indices.
3. :func:`build_skeleton` - the humanoid bones as a :class:`Skeleton` (world-aligned rest frames;
   joints at the bones' rest positions); every skinning node is mapped to its nearest humanoid
   ancestor, so hair, skirt and twist bones move with the body bone that carries them
   (:func:`skin_to_bones`).

Splitting into body / clothes / hair and posing are the importer's
(:func:`stdgen.data.vrm.importer.import_vrm`); :mod:`stdgen.io.glb` reads stdgen's own GLBs on
the same primitives.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stdgen.errors import InputError
from stdgen.io.gltf import MALFORMED_ERRORS, GltfFile, as_floats, as_int, load_glb
from stdgen.io.humanoid import VRM0_TO_VRM1, VRM_BONES, VRM_REQUIRED_BONES
from stdgen.structures.character import HUMANOID_BONES, Skeleton
from stdgen.structures.mesh import Mesh
from stdgen.utils.color import linear_to_srgb, srgb_to_linear

#: Turns a VRM 0.x model (facing -Z) to face +Z: half a turn about +Y (a rotation, not a mirror,
#: so the character's left hand stays its left hand, now on +X).
VRM0_FACING = np.diag([-1.0, 1.0, -1.0])

_MODE_TRIANGLES, _MODE_STRIP, _MODE_FAN = 4, 5, 6
_WRAP_REPEAT, _WRAP_MIRROR = 10497, 33648


@dataclass
class VrmDocument:
    """A checked VRM file: ``gltf`` (:class:`GltfFile`), ``version`` ``"0.x"`` or ``"1.0"``,
    ``bones`` {VRM 1.0 bone name: node index}, ``meta`` (the file's meta dict, as written),
    ``material_properties`` (VRM 0.x's per-material list, else empty)."""

    gltf: GltfFile
    version: str
    bones: dict[str, int]
    meta: dict
    material_properties: list = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.gltf.path

    @property
    def facing(self) -> np.ndarray:
        """(3, 3) rotation taking the file's frame to ours (+Z forward)."""
        return VRM0_FACING if self.version == "0.x" else np.eye(3)


@dataclass
class Primitive:
    """One triangle primitive in world space (our frame), before the part split.

    ``vertices`` (N, 3), ``faces`` (F, 3), ``normals`` (N, 3) or None, ``uvs`` (M, 2) or None
    with ``uv_faces`` (F, 3) when UVs are per corner (else None: one UV per vertex),
    ``texture`` (H, W, 3|4) uint8 or None, ``colors`` (N, 3) sRGB or None, ``influence_nodes``
    (N, K) node indices and ``influence_weights`` (N, K) summing to 1 per vertex; ``names`` the
    material / mesh / node names; ``info`` report fields.
    """

    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray | None
    uvs: np.ndarray | None
    uv_faces: np.ndarray | None
    texture: np.ndarray | None
    colors: np.ndarray | None
    influence_nodes: np.ndarray
    influence_weights: np.ndarray
    names: dict[str, str | None]
    info: dict


# -- 1. the document ----------------------------------------------------------------------------------
def plain_document(path: str | os.PathLike, data: bytes | None = None) -> VrmDocument:
    """A plain glTF / GLB as a document without humanoid (version ``"glTF"``, our +Z facing)."""
    return VrmDocument(load_glb(path, data), "glTF", {}, {})


def read_vrm(path: str | os.PathLike, data: bytes | None = None) -> VrmDocument:
    """Read a VRM file's container, version, humanoid bone map and meta (all checked)."""
    gltf = load_glb(path, data)
    path = gltf.path
    try:
        return _read_vrm(gltf)
    except InputError:
        raise
    except MALFORMED_ERRORS as exc:
        raise InputError(f"{path}: malformed VRM ({type(exc).__name__}: {exc})") from None


def _read_vrm(gltf: GltfFile) -> VrmDocument:
    path = gltf.path
    ext = gltf.raw_json.get("extensions") or {}
    if not isinstance(ext, dict):
        raise InputError(f"{path}: 'extensions' is not a JSON object")
    nodes = gltf.items("nodes")
    bones: dict[str, int] = {}
    if isinstance(ext.get("VRMC_vrm"), dict):
        version = "1.0"
        vrm = ext["VRMC_vrm"]
        human = (vrm.get("humanoid") or {}).get("humanBones") if isinstance(vrm.get("humanoid"), dict) else None
        if not isinstance(human, dict) or not human:
            raise InputError(f"{path}: a VRM without humanoid bones (VRMC_vrm.humanoid.humanBones is empty)")
        for name, entry in human.items():
            if not isinstance(entry, dict):
                raise InputError(f"{path}: humanoid bone {name!r} is not a JSON object")
            bones[str(name)] = as_int(entry.get("node"), f"humanoid bone {name!r}'s node", path, hi=len(nodes))
        meta = vrm.get("meta") if isinstance(vrm.get("meta"), dict) else {}
        props: list = []
    elif isinstance(ext.get("VRM"), dict):
        version = "0.x"
        vrm = ext["VRM"]
        human = (vrm.get("humanoid") or {}).get("humanBones") if isinstance(vrm.get("humanoid"), dict) else None
        if not isinstance(human, list) or not human:
            raise InputError(f"{path}: a VRM without humanoid bones (VRM.humanoid.humanBones is empty)")
        for entry in human:
            if not isinstance(entry, dict) or not isinstance(entry.get("bone"), str):
                raise InputError(f"{path}: a humanoid bone entry {entry!r} has no bone name")
            name = VRM0_TO_VRM1.get(entry["bone"], entry["bone"])
            if name in bones:
                raise InputError(f"{path}: humanoid bone {name!r} is mapped twice")
            bones[name] = as_int(entry.get("node"), f"humanoid bone {name!r}'s node", path, hi=len(nodes))
        meta = vrm.get("meta") if isinstance(vrm.get("meta"), dict) else {}
        props = vrm.get("materialProperties") if isinstance(vrm.get("materialProperties"), list) else []
    else:
        raise InputError(f"{path}: not a VRM file (no VRMC_vrm or VRM extension); a plain GLB has no humanoid")
    bones = {b: n for b, n in bones.items() if b in VRM_BONES}
    missing = [b for b in VRM_REQUIRED_BONES if b not in bones]
    if missing:
        raise InputError(f"{path}: the humanoid lacks required bones {missing}")
    if len(set(bones.values())) != len(bones):
        raise InputError(f"{path}: two humanoid bones share one node")
    return VrmDocument(gltf, version, bones, meta, props)


# -- 2. primitives ---------------------------------------------------------------------------------
@dataclass
class _BaseColor:
    texture: int | None = None  # glTF texture index
    texcoord: int = 0
    factor: np.ndarray = field(default_factory=lambda: np.ones(4))  # linear RGBA
    transform: dict | None = None  # KHR_texture_transform
    alpha_mode: str = "OPAQUE"
    alpha_cutoff: float = 0.5


def _material_base_color(doc: VrmDocument, index) -> _BaseColor:
    """The base (lit) colour of material ``index``: glTF's baseColor, which MToon 1.0 also uses; a
    VRM 0.x MToon material without a glTF texture falls back to its ``_MainTex``."""
    path = doc.path
    mat = doc.gltf.item("materials", index, "a primitive's material")
    out = _BaseColor()
    pbr = mat.pbrMetallicRoughness
    if pbr is not None:
        if pbr.baseColorFactor is not None:
            out.factor = np.clip(as_floats(pbr.baseColorFactor, 4, f"material {index}'s baseColorFactor", path), 0, 1)
        if pbr.baseColorTexture is not None:
            ti = pbr.baseColorTexture
            out.texture = as_int(ti.index, f"material {index}'s baseColorTexture", path)
            out.texcoord = as_int(ti.texCoord or 0, f"material {index}'s texCoord", path, hi=8)
            tt = (ti.extensions or {}).get("KHR_texture_transform") if isinstance(ti.extensions, dict) else None
            out.transform = tt if isinstance(tt, dict) else None
    mode = mat.alphaMode or "OPAQUE"
    out.alpha_mode = mode if mode in ("OPAQUE", "MASK", "BLEND") else "OPAQUE"
    if mat.alphaCutoff is not None:
        out.alpha_cutoff = float(as_floats([mat.alphaCutoff], 1, f"material {index}'s alphaCutoff", path)[0])
    if doc.version == "0.x":
        prop = _material_property(doc, int(index), mat.name)
        if prop is not None and prop.get("shader") != "VRM_USE_GLTFSHADER":
            tex = (prop.get("textureProperties") or {}).get("_MainTex") if isinstance(
                prop.get("textureProperties"), dict) else None
            if out.texture is None and tex is not None:
                out.texture = as_int(tex, f"material {mat.name!r}'s _MainTex", path)
            floats = prop.get("floatProperties") if isinstance(prop.get("floatProperties"), dict) else {}
            blend = floats.get("_BlendMode")
            if out.alpha_mode == "OPAQUE" and blend in (1, 2, 3):
                out.alpha_mode = "MASK" if blend == 1 else "BLEND"
                if isinstance(floats.get("_Cutoff"), int | float):
                    out.alpha_cutoff = float(floats["_Cutoff"])
    return out


def _material_property(doc: VrmDocument, index: int, name: str | None) -> dict | None:
    """VRM 0.x's materialProperties entry of a material: by name, else by index."""
    props = [p for p in doc.material_properties if isinstance(p, dict)]
    for p in props:
        if name is not None and p.get("name") == name:
            return p
    if index < len(doc.material_properties) and isinstance(doc.material_properties[index], dict):
        return doc.material_properties[index]
    return None


def _triangles(gltf: GltfFile, prim, n: int, where: str) -> np.ndarray:
    """(F, 3) int64 triangle indices of a primitive (strips and fans converted)."""
    path = gltf.path
    mode = _MODE_TRIANGLES if prim.mode is None else as_int(prim.mode, f"{where}'s mode", path, hi=7)
    if prim.indices is not None:
        idx = gltf.accessor(prim.indices, f"{where}'s indices").reshape(-1)
        if idx.dtype.kind not in "iu":
            raise InputError(f"{path}: {where}'s indices are not integers")
        idx = idx.astype(np.int64)
        if len(idx) and (idx.min() < 0 or idx.max() >= n):
            raise InputError(f"{path}: {where}'s indices point outside its {n} vertices (max {int(idx.max())})")
    else:
        idx = np.arange(n, dtype=np.int64)
    if mode == _MODE_TRIANGLES:
        if len(idx) % 3:
            raise InputError(f"{path}: {where} has {len(idx)} indices, not a multiple of 3")
        return idx.reshape(-1, 3)
    if mode == _MODE_STRIP:
        if len(idx) < 3:
            return np.zeros((0, 3), np.int64)
        k = np.arange(len(idx) - 2)
        tri = np.stack([idx[k], idx[k + 1], idx[k + 2]], 1)
        odd = k % 2 == 1
        tri[odd] = tri[odd][:, [1, 0, 2]]  # keep the winding consistent
        return tri
    if mode == _MODE_FAN:
        if len(idx) < 3:
            return np.zeros((0, 3), np.int64)
        k = np.arange(1, len(idx) - 1)
        return np.stack([np.full_like(k, idx[0]), idx[k], idx[k + 1]], 1)
    return np.zeros((0, 3), np.int64)  # points and lines: no surface


def _vec(gltf: GltfFile, index, width: int, n: int, what: str) -> np.ndarray:
    a = gltf.accessor(index, what)
    if a.shape != (n, width) and not (width == 3 and a.shape == (n, 4)):
        raise InputError(f"{gltf.path}: {what} has shape {a.shape}, expected ({n}, {width})")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise InputError(f"{gltf.path}: {what} holds NaN or infinite values")
    return a


def _influences(gltf: GltfFile, attrs: dict, n: int, skin_nodes: list[int],
                where: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(N, K) node indices and (N, K) weights from JOINTS_i / WEIGHTS_i, or None."""
    sets = []
    for s in range(4):
        j, w = attrs.get(f"JOINTS_{s}"), attrs.get(f"WEIGHTS_{s}")
        if j is None or w is None:
            break
        ja = gltf.accessor(j, f"{where}'s JOINTS_{s}", normalize=False)
        wa = _vec(gltf, w, 4, n, f"{where}'s WEIGHTS_{s}")
        if ja.shape != (n, 4) or ja.dtype.kind not in "iu":
            raise InputError(f"{gltf.path}: {where}'s JOINTS_{s} must be ({n}, 4) integers, got {ja.shape} {ja.dtype}")
        if len(ja) and int(ja.max()) >= len(skin_nodes):
            raise InputError(f"{gltf.path}: {where}'s JOINTS_{s} refers to joint {int(ja.max())}, "
                             f"but its skin has {len(skin_nodes)}")
        sets.append((ja.astype(np.int64), wa))
    if not sets:
        return None
    joints = np.concatenate([s[0] for s in sets], 1)
    weights = np.clip(np.concatenate([s[1] for s in sets], 1), 0, None)
    return np.asarray(skin_nodes, np.int64)[joints], weights


def _normalize_weights(nodes: np.ndarray, weights: np.ndarray, fallback_node: int) -> tuple[np.ndarray, np.ndarray]:
    total = weights.sum(1, keepdims=True)
    empty = total[:, 0] <= 1e-8
    weights = np.where(empty[:, None], 0.0, weights / np.maximum(total, 1e-30))
    if empty.any():
        nodes = nodes.copy()
        nodes[empty, 0] = fallback_node
        weights[empty, 0] = 1.0
    return nodes, weights


def _apply_texture_transform(uv: np.ndarray, tt: dict | None, path) -> np.ndarray:
    """KHR_texture_transform: uv' = T(offset) R(rotation) S(scale) uv."""
    if not tt:
        return uv
    off = as_floats(tt.get("offset", [0, 0]), 2, "KHR_texture_transform offset", path)
    scale = as_floats(tt.get("scale", [1, 1]), 2, "KHR_texture_transform scale", path)
    rot = float(as_floats([tt.get("rotation", 0.0)], 1, "KHR_texture_transform rotation", path)[0])
    c, s = math.cos(rot), math.sin(rot)
    u, v = uv[:, 0] * scale[0], uv[:, 1] * scale[1]
    return np.stack([c * u + s * v + off[0], -s * u + c * v + off[1]], 1)


def _wrap_uvs_per_face(uvs: np.ndarray, faces: np.ndarray, wrap: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """UVs outside [0, 1] with REPEAT / MIRRORED_REPEAT samplers -> per-corner UVs shifted into
    [0, 1] per face (our renderer clamps). A face straddling a tile border keeps its span."""
    corner = uvs[faces.reshape(-1)].reshape(-1, 3, 2).copy()
    for axis in range(2):
        if wrap[axis] not in (_WRAP_REPEAT, _WRAP_MIRROR):
            continue
        cell = np.floor(corner[:, :, axis].mean(1))
        corner[:, :, axis] -= cell[:, None]
        if wrap[axis] == _WRAP_MIRROR:
            odd = (cell.astype(np.int64) % 2) == 1
            corner[odd, :, axis] = 1.0 - corner[odd, :, axis]
    return corner.reshape(-1, 2), np.arange(3 * len(faces)).reshape(-1, 3)


def _transparent_faces(texture: np.ndarray, uvs: np.ndarray, uv_faces: np.ndarray, factor_alpha: float,
                       threshold: float) -> np.ndarray:
    """(F,) bool: faces whose texture alpha (x factor) stays below ``threshold`` at every point of a
    barycentric grid (45 points per face; nearest texel)."""
    h, w = texture.shape[:2]
    alpha = texture[..., 3].astype(np.float32) / 255.0 * factor_alpha
    level = 8
    ij = np.array([(i, j) for i in range(level + 1) for j in range(level + 1 - i)], np.float64) / level
    bary = np.concatenate([ij, 1 - ij.sum(1, keepdims=True)], 1)  # (P, 3)
    corner = uvs[uv_faces]  # (F, 3, 2)
    pts = np.einsum("pk,fkc->fpc", bary, corner)
    x = np.clip((pts[..., 0] * w).astype(np.int64), 0, w - 1)
    y = np.clip((pts[..., 1] * h).astype(np.int64), 0, h - 1)
    return alpha[y, x].max(1) < threshold


def extract_primitives(doc: VrmDocument, *, drop_transparent: bool = True, blend_alpha_threshold: float = 0.05,
                       bind_pose: bool = False) -> tuple[list[Primitive], list[dict]]:
    """Every triangle primitive of the default scene, in our world frame at the file's rest pose
    (the nodes' transforms), or with ``bind_pose`` at the skins' bind pose (the inverse of the
    inverse bind matrices: skinned vertices as stored). Returns (primitives, skipped) where
    ``skipped`` lists primitives without triangles, with why.

    ``drop_transparent``: drop triangles whose base colour is transparent everywhere they are
    sampled (alpha below the material's cutoff under alphaMode MASK, below
    ``blend_alpha_threshold`` under BLEND)."""
    gltf = doc.gltf
    path = doc.path
    world = gltf.world_matrices()
    parents = gltf.parents()
    facing = doc.facing
    bone_nodes = set(doc.bones.values())
    prims: list[Primitive] = []
    skipped: list[dict] = []
    images: dict[tuple, np.ndarray] = {}
    for ni in gltf.scene_nodes():
        node = gltf.item("nodes", ni)
        if node.mesh is None:
            continue
        mi = as_int(node.mesh, f"node {ni}'s mesh", path)
        gmesh = gltf.item("meshes", mi, f"node {ni}")
        skin_nodes = None
        joint_mats = None
        if node.skin is not None:
            skin = gltf.item("skins", node.skin, f"node {ni}")
            skin_nodes = [as_int(j, f"skin {node.skin}'s joint", path, hi=len(parents)) for j in (skin.joints or [])]
            if not skin_nodes:
                raise InputError(f"{path}: skin {node.skin} has no joints")
            if skin.inverseBindMatrices is not None:
                ibm = gltf.accessor(skin.inverseBindMatrices, f"skin {node.skin}'s inverseBindMatrices")
                if ibm.shape != (len(skin_nodes), 16):
                    raise InputError(f"{path}: skin {node.skin} has {len(skin_nodes)} joints but "
                                     f"inverseBindMatrices of shape {ibm.shape}")
                ibm = ibm.astype(np.float64).reshape(-1, 4, 4).transpose(0, 2, 1)
            else:
                ibm = np.tile(np.eye(4), (len(skin_nodes), 1, 1))
            joint_mats = np.tile(np.eye(4), (len(skin_nodes), 1, 1)) if bind_pose else world[skin_nodes] @ ibm
        fallback = _nearest_bone_node(ni, parents, bone_nodes, doc.bones.get("hips", ni))
        prim_list = gmesh.primitives or []
        if not isinstance(prim_list, list):
            raise InputError(f"{path}: mesh {mi}'s primitives is not a list")
        raw_node = (gltf.raw_json.get("nodes") or [])[ni]
        node_weights = raw_node.get("weights") if isinstance(raw_node, dict) else None
        default_weights = node_weights if node_weights is not None else gmesh.weights
        for pi, prim in enumerate(prim_list):
            where = f"mesh {mi} ({gmesh.name!r}) primitive {pi}"
            p = _read_primitive(doc, prim, where, world[ni], joint_mats, skin_nodes, fallback, default_weights,
                                facing, images, drop_transparent, blend_alpha_threshold)
            mat_name = None
            if prim.material is not None:
                mat_name = gltf.item("materials", prim.material, where).name
            names = {"material": mat_name, "mesh": gmesh.name, "node": node.name}
            info = {"node": node.name, "node_index": ni, "mesh": gmesh.name, "mesh_index": mi, "primitive": pi,
                    "material": mat_name}
            if p is None:
                skipped.append({**info, "reason": "no triangles (points or lines)"})
                continue
            p.names = names
            p.info.update(info)
            prims.append(p)
    return prims, skipped


def _nearest_bone_node(ni: int, parents: np.ndarray, bone_nodes: set[int], default: int) -> int:
    j = ni
    while j >= 0:
        if j in bone_nodes:
            return j
        j = int(parents[j])
    return default


def _read_primitive(doc: VrmDocument, prim, where: str, node_world: np.ndarray, joint_mats, skin_nodes,
                    fallback: int, default_weights, facing: np.ndarray, images: dict,
                    drop_transparent: bool, blend_alpha_threshold: float) -> Primitive | None:
    gltf = doc.gltf
    path = doc.path
    attrs = {k: v for k, v in vars(prim.attributes).items() if v is not None} if prim.attributes is not None else {}
    if "POSITION" not in attrs:
        raise InputError(f"{path}: {where} has no POSITION")
    pos = _vec(gltf, attrs["POSITION"], 3, gltf.accessor(attrs["POSITION"], f"{where}'s POSITION").shape[0],
               f"{where}'s POSITION")[:, :3]
    n = len(pos)
    faces = _triangles(gltf, prim, n, where)
    if len(faces) == 0:
        return None
    nrm = _vec(gltf, attrs["NORMAL"], 3, n, f"{where}'s NORMAL")[:, :3] if "NORMAL" in attrs else None

    # Morph targets at their default weights (what a viewer shows before any expression plays).
    targets = prim.targets or []
    if default_weights and isinstance(targets, list):
        dw = as_floats(default_weights, len(default_weights), f"{where}'s morph weights", path)
        for t, wt in zip(targets, dw):
            if wt == 0 or not isinstance(t, dict):
                continue
            if t.get("POSITION") is not None:
                pos = pos + wt * _vec(gltf, t["POSITION"], 3, n, f"{where}'s morph POSITION")[:, :3]
            if nrm is not None and t.get("NORMAL") is not None:
                nrm = nrm + wt * _vec(gltf, t["NORMAL"], 3, n, f"{where}'s morph NORMAL")[:, :3]

    # Rest-pose world positions: skinned meshes follow their joints (the node's own transform is
    # ignored, as glTF says), others their node.
    infl = _influences(gltf, attrs, n, skin_nodes, where) if joint_mats is not None else None
    if infl is not None:
        inodes, iweights = _normalize_weights(*infl, fallback)
        # Joint slots (not nodes) index joint_mats: rebuild them from the node indices.
        slot_lut = np.full(max(int(inodes.max()), max(skin_nodes)) + 1, -1, np.int64)
        slot_lut[np.asarray(skin_nodes, np.int64)[::-1]] = np.arange(len(skin_nodes))[::-1]  # first slot wins
        slots = slot_lut[inodes]
        mats = np.zeros((n, 4, 4))
        for k in range(inodes.shape[1]):
            valid = slots[:, k] >= 0
            mats[valid] += iweights[valid, k, None, None] * joint_mats[slots[valid, k]]
        # Vertices the file gives no weight (their influence is the fallback bone, not a joint of
        # this skin) stay where their node puts them.
        unweighted = np.where(slots >= 0, iweights, 0.0).sum(1) < 0.5
        mats[unweighted] = node_world
    else:
        inodes = np.full((n, 1), fallback, np.int64)
        iweights = np.ones((n, 1))
        mats = np.broadcast_to(node_world, (n, 4, 4))
    v = np.einsum("nab,nb->na", mats[:, :3, :3], pos) + mats[:, :3, 3]
    v = v @ facing.T
    if nrm is not None:
        if infl is None:
            # A node transform moves normals by its inverse transpose (right for non-uniform scale).
            try:
                inv_t = np.linalg.inv(node_world[:3, :3]).T
            except np.linalg.LinAlgError:
                inv_t = node_world[:3, :3]
            nrm = nrm @ inv_t.T
        else:
            # Skinned normals go through the blended skin matrix itself, as glTF viewers do.
            nrm = np.einsum("nab,nb->na", mats[:, :3, :3], nrm)
        nrm = nrm @ facing.T
        length = np.linalg.norm(nrm, axis=1, keepdims=True)
        nrm = np.where(length > 1e-12, nrm / np.maximum(length, 1e-12), 0.0)
        if not np.all(np.isfinite(nrm)):
            nrm = None
    mirrored = np.linalg.det(node_world[:3, :3]) < 0 and infl is None
    if mirrored:
        faces = faces[:, ::-1]  # a mirroring node transform flips the winding (glTF spec)

    # Base colour.
    info: dict = {"triangles_in_file": int(len(faces))}
    uvs = texture = colors = None
    base = _material_base_color(doc, prim.material) if prim.material is not None else _BaseColor()
    info["alpha_mode"] = base.alpha_mode
    uv_faces = None
    if base.texture is not None and f"TEXCOORD_{base.texcoord}" in attrs:
        tex_obj = gltf.item("textures", base.texture, f"{where}'s material")
        if tex_obj.source is None:
            raise InputError(f"{path}: texture {base.texture} has no image source")
        key = (int(tex_obj.source), tuple(np.round(base.factor, 6)))
        if key not in images:
            baked = _bake_factor(gltf.image(tex_obj.source), base.factor)
            flat = baked.reshape(-1, baked.shape[2])
            constant = len(flat) and (flat == flat[0]).all() and (baked.shape[2] == 3 or flat[0, 3] == 255)
            images[key] = (baked, flat[0, :3].astype(np.float64) / 255.0 if constant else None)
        texture, constant_color = images[key]
        uv = _vec(gltf, attrs[f"TEXCOORD_{base.texcoord}"], 2, n, f"{where}'s TEXCOORD_{base.texcoord}")
        uv = _apply_texture_transform(uv, base.transform, path)
        wrap = (_WRAP_REPEAT, _WRAP_REPEAT)
        if tex_obj.sampler is not None:
            s = gltf.item("samplers", tex_obj.sampler, f"texture {base.texture}")
            wrap = (s.wrapS or _WRAP_REPEAT, s.wrapT or _WRAP_REPEAT)
        if constant_color is not None:
            # A one-colour texture (common for flat-shaded models) is a vertex colour: exact, and
            # no texture-atlas seams when the part's pieces are merged.
            colors = np.tile(constant_color, (n, 1))
            texture = None
            info["constant_texture"] = True
        elif uv.min() < 0 or uv.max() > 1:
            uvs, uv_faces = _wrap_uvs_per_face(uv, faces, wrap)
            info["uvs_wrapped"] = True
        else:
            uvs = uv
    else:
        rgb = np.broadcast_to(base.factor[:3], (n, 3))
        if "COLOR_0" in attrs:
            c = gltf.accessor(attrs["COLOR_0"], f"{where}'s COLOR_0")
            if c.shape[0] != n or c.shape[1] not in (3, 4):
                raise InputError(f"{path}: {where}'s COLOR_0 has shape {c.shape}")
            rgb = rgb * np.clip(c[:, :3].astype(np.float64), 0, 1)
        colors = linear_to_srgb(rgb)

    keep = np.ones(len(faces), bool)
    if drop_transparent and texture is not None and texture.shape[2] == 4 and base.alpha_mode != "OPAQUE":
        threshold = base.alpha_cutoff if base.alpha_mode == "MASK" else blend_alpha_threshold
        keep = ~_transparent_faces(texture, uvs, uv_faces if uv_faces is not None else faces, 1.0, threshold)
    elif drop_transparent and texture is None and base.alpha_mode != "OPAQUE":
        threshold = base.alpha_cutoff if base.alpha_mode == "MASK" else blend_alpha_threshold
        if base.factor[3] < threshold:
            keep[:] = False
    info["dropped_transparent"] = int((~keep).sum())
    faces = faces[keep]
    if uv_faces is not None:
        uv_faces = uv_faces[keep]
    return Primitive(v, faces, nrm, uvs, uv_faces, texture, colors, inodes, iweights, {}, info)


def _bake_factor(image: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """Texture x baseColorFactor (the multiplication happens in linear space, as glTF says)."""
    if np.allclose(factor, 1.0):
        return image
    rgb = linear_to_srgb(srgb_to_linear(image[..., :3] / 255.0) * factor[:3])
    out = [np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8)]
    if image.shape[2] == 4:
        out.append(np.clip(image[..., 3:4] * factor[3] + 0.5, 0, 255).astype(np.uint8))
    return np.concatenate(out, 2)


# -- 3. skeleton -----------------------------------------------------------------------------------
def build_skeleton(doc: VrmDocument) -> tuple[Skeleton, dict[int, int]]:
    """The humanoid bones as a Skeleton (joints at the bone nodes' rest positions, our frame) and
    a map {node index: bone index} sending every node to its nearest humanoid ancestor-or-self
    (nodes above the hips go to the hips)."""
    gltf = doc.gltf
    world = gltf.world_matrices()
    parents = gltf.parents()
    node_to_name = {n: b for b, n in doc.bones.items()}
    order = [b for b in HUMANOID_BONES if b in doc.bones] + [b for b in VRM_BONES
                                                              if b in doc.bones and b not in HUMANOID_BONES]

    def humanoid_parent(bone: str) -> str | None:
        j = int(parents[doc.bones[bone]])
        while j >= 0:
            if j in node_to_name:
                return node_to_name[j]
            j = int(parents[j])
        return None

    bone_parent = {b: humanoid_parent(b) for b in order}
    roots = [b for b in order if bone_parent[b] is None]
    if roots != ["hips"]:
        raise InputError(f"{doc.path}: the humanoid bones must hang under hips (roots found: {roots})")
    # Keep the canonical order when it is parent-before-child; otherwise order by tree depth.
    pos = {b: i for i, b in enumerate(order)}
    if any(bone_parent[b] is not None and pos[bone_parent[b]] > pos[b] for b in order):
        depth = {}
        for b in order:
            d, p = 0, bone_parent[b]
            while p is not None:
                d, p = d + 1, bone_parent[p]
            depth[b] = d
        order = sorted(order, key=lambda b: (depth[b], pos[b]))
    index = {b: i for i, b in enumerate(order)}
    joints = np.stack([world[doc.bones[b]][:3, 3] for b in order]) @ doc.facing.T
    skel = Skeleton(order, [index[bone_parent[b]] if bone_parent[b] else -1 for b in order], joints)
    node_bone: dict[int, int] = {}
    for ni in range(len(parents)):
        j = ni
        while j >= 0 and j not in node_to_name:
            j = int(parents[j])
        node_bone[ni] = index[node_to_name[j]] if j >= 0 else index["hips"]
    return skel, node_bone


def skin_to_bones(nodes: np.ndarray, weights: np.ndarray, node_bone: dict[int, int],
                   k: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Per-vertex (node, weight) influences -> (N, k) bone indices and weights summing to 1:
    nodes map to their humanoid bone, equal bones add up, the k largest are kept."""
    lut = np.zeros(max(node_bone) + 1 if node_bone else 1, np.int64)
    for node, bone in node_bone.items():
        lut[node] = bone
    bones = lut[nodes]
    nb = int(bones.max()) + 1 if bones.size else 1
    n = len(bones)
    dense = np.zeros((n, nb))
    np.add.at(dense, (np.repeat(np.arange(n), bones.shape[1]), bones.reshape(-1)), weights.reshape(-1))
    top = np.argsort(-dense, axis=1, kind="stable")[:, :k]
    w = np.take_along_axis(dense, top, 1)
    if top.shape[1] < k:
        top = np.pad(top, ((0, 0), (0, k - top.shape[1])))
        w = np.pad(w, ((0, 0), (0, k - w.shape[1])))
    w = w / np.maximum(w.sum(1, keepdims=True), 1e-30)
    return top.astype(np.int32), w.astype(np.float32)


def weld_vertices(mesh: Mesh) -> Mesh:
    """Merge vertices that agree exactly in position, normal, colour and skinning (files split them
    along UV seams); UVs move to per-corner ``uv_faces``. Unused vertices are dropped."""
    cols = [a for a in (mesh.vertices, mesh.normals, mesh.colors, mesh.skin_joints, mesh.skin_weights)
            if a is not None]
    key = np.ascontiguousarray(np.concatenate([c.astype(np.float64) for c in cols], 1))
    used = np.unique(mesh.faces.reshape(-1))
    void = key.view(np.dtype((np.void, key.dtype.itemsize * key.shape[1]))).reshape(-1)
    _, first, inverse = np.unique(void, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    # Keep first-occurrence order, restricted to vertices the faces use.
    groups_used = np.unique(inverse[used])
    order = groups_used[np.argsort(first[groups_used], kind="stable")]
    new_index = np.full(len(first), -1, np.int64)
    new_index[order] = np.arange(len(order))
    keep = first[order]
    faces = new_index[inverse[mesh.faces]]
    if len(keep) == mesh.num_vertices and np.array_equal(keep, np.arange(mesh.num_vertices)):
        return mesh
    uvs, uv_faces = mesh.uvs, mesh.uv_faces
    if uvs is not None and uv_faces is None:
        uv_faces = mesh.faces  # the old per-vertex UVs, now indexed per corner
    sel = lambda a: None if a is None else a[keep]
    return Mesh(mesh.vertices[keep], faces, normals=sel(mesh.normals), colors=sel(mesh.colors), uvs=uvs,
                uv_faces=uv_faces, texture=mesh.texture, label=mesh.label, name=mesh.name,
                skin_joints=sel(mesh.skin_joints), skin_weights=sel(mesh.skin_weights), extras=mesh.extras)

