"""The project-wide triangle mesh type.

A :class:`Mesh` is plain data on the CPU (numpy arrays), the currency between stages: the data
engine makes them, the renderer draws them (``to_torch``), geometry extracts them, the exporters
write them. Algorithms are free functions over meshes, not methods.

Conventions (shared project-wide, see ``docs/conventions.md``):

- ``vertices`` (N, 3) float32 in metres, world frame +Y up, the character faces +Z.
- ``faces`` (F, 3) int32, counter-clockwise seen from outside (outward normals).
- ``colors`` (N, 3) float32 sRGB in [0, 1], per vertex.
- ``uvs`` (M, 2) float32, glTF convention: (0, 0) is the *top-left* texel corner of ``texture``,
  u to the right, v downwards. ``uv_faces`` (F, 3) int32 indexes ``uvs`` per face corner, so UV
  seams do not split the geometry (a watertight body stays watertight); ``None`` means the UVs are
  per vertex (M == N).
- ``texture`` (H, W, 3|4) uint8 sRGB, row 0 at the top.
- ``skin_joints`` (N, 4) int32 indices into the character's skeleton, ``skin_weights`` (N, 4)
  float32, non-negative, summing to 1 per vertex (glTF's JOINTS_0 / WEIGHTS_0).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from stdgen.structures.semantics import Part

if TYPE_CHECKING:  # pragma: no cover
    import torch
    import trimesh


@dataclass
class Mesh:
    """A triangle mesh with optional normals, colours, UVs, texture, skinning and a semantic label."""

    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray | None = None
    colors: np.ndarray | None = None
    uvs: np.ndarray | None = None
    uv_faces: np.ndarray | None = None
    texture: np.ndarray | None = None
    label: Part | None = None
    name: str = ""
    skin_joints: np.ndarray | None = None
    skin_weights: np.ndarray | None = None
    extras: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.vertices = np.ascontiguousarray(self.vertices, dtype=np.float32).reshape(-1, 3)
        self.faces = np.ascontiguousarray(self.faces, dtype=np.int32).reshape(-1, 3)
        n = len(self.vertices)
        if len(self.faces) and (self.faces.min() < 0 or self.faces.max() >= n):
            raise ValueError(f"Mesh {self.name!r}: face indices outside [0, {n})")
        if self.normals is not None:
            self.normals = _per_vertex(self.normals, n, 3, "normals", self.name, np.float32)
        if self.colors is not None:
            c = np.asarray(self.colors)
            if c.dtype == np.uint8:
                c = c.astype(np.float32) / 255.0
            self.colors = _per_vertex(c[:, :3] if c.ndim == 2 else c, n, 3, "colors", self.name, np.float32)
        if self.uvs is not None:
            self.uvs = np.ascontiguousarray(self.uvs, dtype=np.float32).reshape(-1, 2)
            if self.uv_faces is not None:
                self.uv_faces = np.ascontiguousarray(self.uv_faces, dtype=np.int32).reshape(-1, 3)
                if self.uv_faces.shape != self.faces.shape:
                    raise ValueError(f"Mesh {self.name!r}: uv_faces must have the shape of faces")
                if len(self.uv_faces) and self.uv_faces.max() >= len(self.uvs):
                    raise ValueError(f"Mesh {self.name!r}: uv_faces index past uvs")
            elif len(self.uvs) != n:
                raise ValueError(f"Mesh {self.name!r}: per-vertex uvs need one per vertex ({len(self.uvs)} != {n})")
        elif self.uv_faces is not None:
            raise ValueError(f"Mesh {self.name!r}: uv_faces given without uvs")
        if self.texture is not None:
            t = np.asarray(self.texture)
            if t.dtype != np.uint8:
                t = (np.clip(t, 0, 1) * 255 + 0.5).astype(np.uint8)
            if t.ndim != 3 or t.shape[2] not in (3, 4):
                raise ValueError(f"Mesh {self.name!r}: texture must be (H, W, 3|4), got {t.shape}")
            self.texture = np.ascontiguousarray(t)
        if self.label is not None:
            self.label = Part.parse(self.label)
        if (self.skin_joints is None) != (self.skin_weights is None):
            raise ValueError(f"Mesh {self.name!r}: skin_joints and skin_weights go together")
        if self.skin_joints is not None:
            self.skin_joints = _per_vertex(self.skin_joints, n, None, "skin_joints", self.name, np.int32)
            self.skin_weights = _per_vertex(self.skin_weights, n, None, "skin_weights", self.name, np.float32)

    # -- basic properties -------------------------------------------------------------------
    @property
    def num_vertices(self) -> int:
        return len(self.vertices)

    @property
    def num_faces(self) -> int:
        return len(self.faces)

    @property
    def is_empty(self) -> bool:
        return len(self.faces) == 0

    def bounds(self) -> np.ndarray:
        """(2, 3) min and max corner; zeros for an empty mesh."""
        if len(self.vertices) == 0:
            return np.zeros((2, 3), np.float32)
        return np.stack([self.vertices.min(0), self.vertices.max(0)])

    def face_normals(self) -> np.ndarray:
        """(F, 3) unit face normals (zero for degenerate faces)."""
        v = self.vertices.astype(np.float64)
        f = self.faces
        n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
        length = np.linalg.norm(n, axis=1, keepdims=True)
        return (n / np.maximum(length, 1e-30)).astype(np.float32)

    def vertex_normals(self) -> np.ndarray:
        """(N, 3) unit vertex normals: ``normals`` if set, else area-weighted face normals."""
        if self.normals is not None:
            return self.normals
        return vertex_normals(self.vertices, self.faces).astype(np.float32)

    def replace(self, **changes) -> Mesh:
        """A copy with some fields replaced (arrays are shared, not copied)."""
        return dataclasses.replace(self, **changes)

    def copy(self) -> Mesh:
        """A deep copy."""
        kw = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            kw[f.name] = v.copy() if isinstance(v, np.ndarray | dict) else v
        return Mesh(**kw)

    # -- conversions ---------------------------------------------------------------------------
    def to_trimesh(self, process: bool = False) -> trimesh.Trimesh:
        """A ``trimesh.Trimesh`` with the same vertices and faces (and vertex colours if any)."""
        import trimesh

        kwargs = {}
        if self.colors is not None:
            kwargs["vertex_colors"] = (np.clip(self.colors, 0, 1) * 255).astype(np.uint8)
        return trimesh.Trimesh(self.vertices.copy(), self.faces.copy(), process=process, **kwargs)

    @classmethod
    def from_trimesh(cls, tm: trimesh.Trimesh, *, label: Part | None = None, name: str = "") -> Mesh:
        """Vertices, faces and, where present, vertex colours, UVs and a texture of a ``Trimesh``."""
        colors = uvs = texture = None
        visual = getattr(tm, "visual", None)
        kind = getattr(visual, "kind", None)
        if kind == "vertex":
            colors = np.asarray(visual.vertex_colors)[:, :3].astype(np.float32) / 255.0
        elif kind == "texture":
            if visual.uv is not None and len(visual.uv) == len(tm.vertices):
                uvs = np.asarray(visual.uv, np.float32).copy()
                uvs[:, 1] = 1.0 - uvs[:, 1]  # trimesh keeps OpenGL's bottom-left origin
            mat = visual.material
            img = getattr(mat, "baseColorTexture", None) or getattr(mat, "image", None)
            if img is not None and uvs is not None:
                texture = np.asarray(img.convert("RGBA" if img.mode == "RGBA" else "RGB"))
            elif uvs is not None:
                uvs = None
        return cls(np.asarray(tm.vertices), np.asarray(tm.faces), colors=colors, uvs=uvs, texture=texture,
                   label=label, name=name)

    def to_torch(self, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        """The arrays as tensors on ``device``: ``vertices`` float32, ``faces`` int32, and the optional
        ``colors``, ``uvs``, ``uv_faces``, ``texture`` (float32 in [0, 1]) that are set."""
        import torch

        out = {
            "vertices": torch.from_numpy(self.vertices).to(device),
            "faces": torch.from_numpy(self.faces).to(device),
        }
        if self.colors is not None:
            out["colors"] = torch.from_numpy(self.colors).to(device)
        if self.uvs is not None:
            out["uvs"] = torch.from_numpy(self.uvs).to(device)
            out["uv_faces"] = torch.from_numpy(self.uv_faces if self.uv_faces is not None else self.faces).to(device)
        if self.texture is not None:
            out["texture"] = torch.from_numpy(self.texture).to(device).float().div_(255.0)
        return out


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(N, 3) float64 unit area-weighted vertex normals of ``vertices`` (N, 3) and ``faces`` (F, 3);
    zero for unreferenced vertices."""
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64).reshape(-1, 3)
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])  # length = twice the area
    idx = f.reshape(-1)
    vn = np.stack([np.bincount(idx, np.repeat(fn[:, c], 3), minlength=len(v)) for c in range(3)], 1)
    return vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-30)


def _per_vertex(a, n: int, width: int | None, what: str, name: str, dtype) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=dtype)
    if a.ndim != 2 or a.shape[0] != n or (width is not None and a.shape[1] != width):
        want = f"({n}, {width if width is not None else 'K'})"
        raise ValueError(f"Mesh {name!r}: {what} must be {want}, got {a.shape}")
    return a


def merge_meshes(meshes: list[Mesh], *, label: Part | None = None, name: str = "") -> Mesh:
    """Concatenate meshes into one.

    Per-vertex attributes are kept only if every input has them. Textures: when the inputs carry
    different textures, they are packed side by side into one atlas (each scaled to the tallest
    height) and the UVs remapped, so the result renders exactly like the parts. When only some
    inputs are textured, the result has vertex colours: the untextured keep theirs and the
    textured ones get their texture's colour at each vertex's UV.

    ``extras["source"]`` of the result holds, per input, its name and its face range
    ``(start, stop)`` in the merged mesh.
    """
    meshes = [m for m in meshes if m is not None]
    if not meshes:
        return Mesh(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32), label=label, name=name)
    if len(meshes) == 1 and label in (None, meshes[0].label):
        m = meshes[0].copy()
        m.name = name or m.name
        m.extras["source"] = [(meshes[0].name, 0, m.num_faces)]
        return m

    offsets = np.cumsum([0] + [m.num_vertices for m in meshes])
    vertices = np.concatenate([m.vertices for m in meshes])
    faces = np.concatenate([m.faces + o for m, o in zip(meshes, offsets)])
    fo = np.cumsum([0] + [m.num_faces for m in meshes])
    source = [(m.name, int(a), int(b)) for m, a, b in zip(meshes, fo[:-1], fo[1:])]

    def cat(attr: str):
        vals = [getattr(m, attr) for m in meshes]
        return None if any(v is None for v in vals) else np.concatenate(vals)

    normals = cat("normals")
    skin_j, skin_w = cat("skin_joints"), cat("skin_weights")
    if skin_j is not None and len({m.skin_joints.shape[1] for m in meshes}) != 1:
        skin_j = skin_w = None

    textured = [m.texture is not None and m.uvs is not None for m in meshes]
    colors = uvs = uv_faces = texture = None
    if all(textured):
        texture, uvs, uv_faces = _pack_textures(meshes)
    elif any(textured) or any(m.colors is not None for m in meshes):
        cols = []
        for m in meshes:
            if m.texture is not None and m.uvs is not None:
                cols.append(sample_texture_at_vertices(m))
            elif m.colors is not None:
                cols.append(m.colors)
            else:
                cols.append(np.full((m.num_vertices, 3), 0.8, np.float32))
        colors = np.concatenate(cols)
    if all(m.colors is not None for m in meshes) and colors is None:
        colors = cat("colors")
    labels = {m.label for m in meshes}
    if label is None and len(labels) == 1:
        label = labels.pop()
    return Mesh(vertices, faces, normals=normals, colors=colors, uvs=uvs, uv_faces=uv_faces, texture=texture,
                label=label, name=name, skin_joints=skin_j, skin_weights=skin_w, extras={"source": source})


def _pack_textures(meshes: list[Mesh]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pack the textures of ``meshes`` side by side; return (atlas, uvs, uv_faces)."""
    from PIL import Image

    # Identical texture objects are stored once.
    unique: list[np.ndarray] = []
    index_of: list[int] = []
    for m in meshes:
        for i, t in enumerate(unique):
            if t is m.texture:
                index_of.append(i)
                break
        else:
            index_of.append(len(unique))
            unique.append(m.texture)
    channels = 4 if any(t.shape[2] == 4 for t in unique) else 3
    height = max(t.shape[0] for t in unique)
    tiles = []
    for t in unique:
        if t.shape[2] != channels:
            t = np.concatenate([t, np.full(t.shape[:2] + (1,), 255, np.uint8)], axis=2)
        if t.shape[0] != height:
            w = max(1, round(t.shape[1] * height / t.shape[0]))
            t = np.asarray(Image.fromarray(t).resize((w, height), Image.BILINEAR))
        tiles.append(t)
    x0 = np.cumsum([0] + [t.shape[1] for t in tiles])
    width = int(x0[-1])
    atlas = np.concatenate(tiles, axis=1)
    uvs, uv_faces, uo = [], [], 0
    for m, ti in zip(meshes, index_of):
        uv = m.uvs.copy()
        # u in the tile -> u in the atlas. Wrapping UVs outside [0, 1] are not supported in a packed atlas.
        uv[:, 0] = (x0[ti] + np.clip(uv[:, 0], 0, 1) * tiles[ti].shape[1]) / width
        uv[:, 1] = np.clip(uv[:, 1], 0, 1)
        uvs.append(uv)
        uf = m.uv_faces if m.uv_faces is not None else m.faces
        uv_faces.append(uf + uo)
        uo += len(uv)
    return atlas, np.concatenate(uvs), np.concatenate(uv_faces)


def sample_texture_at_vertices(mesh: Mesh) -> np.ndarray:
    """(N, 3) float colours of the texture at each vertex (nearest texel, first UV seen per vertex)."""
    tex = mesh.texture
    uv_faces = mesh.uv_faces if mesh.uv_faces is not None else mesh.faces
    per_vertex_uv = np.zeros((mesh.num_vertices, 2), np.float32)
    per_vertex_uv[mesh.faces.reshape(-1)] = mesh.uvs[uv_faces.reshape(-1)]
    h, w = tex.shape[:2]
    x = np.clip((per_vertex_uv[:, 0] * w).astype(int), 0, w - 1)
    y = np.clip((per_vertex_uv[:, 1] * h).astype(int), 0, h - 1)
    return tex[y, x, :3].astype(np.float32) / 255.0
