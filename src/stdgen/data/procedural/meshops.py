"""Mesh operations for building layers: clipping along a scalar field, thick closed shells, grids.

Meshes here are plain arrays: ``vertices`` (N, 3), ``faces`` (F, 3) int32 wound counter-clockwise
seen from outside, optional per-corner UVs ``uvs`` (M, 2) with ``uv_faces`` (F, 3), and any number of
per-vertex attribute arrays (N, ...) carried along by interpolation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Patch:
    """An open surface with attributes: the raw material of a garment shell.

    ``attrs`` maps names to per-vertex arrays (N, ...) (interpolated linearly when vertices are
    created on edges); ``sticky`` attributes (like primitive subsets) are copied from the nearer
    edge end instead.
    """

    vertices: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray | None = None
    uv_faces: np.ndarray | None = None
    attrs: dict[str, np.ndarray] = field(default_factory=dict)
    sticky: dict[str, np.ndarray] = field(default_factory=dict)


def clip_patch(patch: Patch, g: np.ndarray, eps: float = 1e-9) -> Patch:
    """The part of ``patch`` where the per-vertex field ``g`` >= 0, cut cleanly along ``g = 0``.

    Triangles crossing the zero line are split at linearly interpolated edge points, so hems are
    smooth curves instead of stair-stepped triangle edges. Vertices whose ``g`` is within ``eps`` of
    zero are nudged inside to avoid sliver triangles.
    """
    g = np.where(np.abs(g) < eps, eps, g).astype(np.float64)
    f = patch.faces
    inside = g[f] >= 0  # (F, 3)
    count = inside.sum(1)
    keep = f[count == 3]
    keep_uv = patch.uv_faces[count == 3] if patch.uv_faces is not None else None

    new_pos: dict[tuple[int, int], int] = {}
    new_uv: dict[tuple[int, int], int] = {}
    edge_list: list[tuple[int, int]] = []
    uv_edge_list: list[tuple[int, int, int, int]] = []  # (uv a, uv b, vertex a, vertex b)

    def vid(a: int, b: int) -> int:
        key = (a, b) if a < b else (b, a)
        if key not in new_pos:
            new_pos[key] = len(patch.vertices) + len(edge_list)
            edge_list.append(key)
        return new_pos[key]

    def uvid(ua: int, ub: int, a: int, b: int) -> int:
        key = (ua, ub) if ua < ub else (ub, ua)
        if key not in new_uv:
            new_uv[key] = len(patch.uvs) + len(uv_edge_list)
            uv_edge_list.append((ua, ub, a, b) if ua < ub else (ub, ua, b, a))
        return new_uv[key]

    tris: list[tuple[int, int, int]] = []
    uv_tris: list[tuple[int, int, int]] = []
    has_uv = patch.uvs is not None
    for fi in np.flatnonzero((count == 1) | (count == 2)):
        tri = f[fi]
        uvt = patch.uv_faces[fi] if has_uv else tri
        ins = inside[fi]
        # Rotate so the odd-one-out corner comes first (keeps the winding).
        odd = int(np.flatnonzero(ins if count[fi] == 1 else ~ins)[0])
        a, b, c = tri[odd], tri[(odd + 1) % 3], tri[(odd + 2) % 3]
        ua, ub, uc = uvt[odd], uvt[(odd + 1) % 3], uvt[(odd + 2) % 3]
        ab, ac = vid(a, b), vid(a, c)
        if has_uv:
            uab, uac = uvid(ua, ub, a, b), uvid(ua, uc, a, c)
        else:
            uab, uac = ab, ac
        if count[fi] == 1:  # a inside: one triangle
            tris.append((a, ab, ac))
            uv_tris.append((ua, uab, uac))
        else:  # b and c inside: a quad b, c, ac, ab
            tris.append((ab, b, c))
            tris.append((ab, c, ac))
            uv_tris.append((uab, ub, uc))
            uv_tris.append((uab, uc, uac))

    e = np.array(edge_list, np.int64).reshape(-1, 2)
    t = (g[e[:, 0]] / (g[e[:, 0]] - g[e[:, 1]]))[:, None] if len(e) else np.zeros((0, 1))
    verts = np.concatenate([patch.vertices, (1 - t) * patch.vertices[e[:, 0]] + t * patch.vertices[e[:, 1]]])
    attrs = {}
    for k, a in patch.attrs.items():
        tt = t.reshape((-1,) + (1,) * (a.ndim - 1))
        attrs[k] = np.concatenate([a, ((1 - tt) * a[e[:, 0]] + tt * a[e[:, 1]]).astype(a.dtype)])
    sticky = {}
    nearer = np.where(t[:, 0] < 0.5, e[:, 0], e[:, 1]) if len(e) else np.zeros(0, np.int64)
    for k, a in patch.sticky.items():
        sticky[k] = np.concatenate([a, a[nearer]])
    faces = np.concatenate([keep, np.array(tris, np.int64).reshape(-1, 3)]).astype(np.int64)
    uvs = uv_faces = None
    if has_uv:
        ue = np.array(uv_edge_list, np.int64).reshape(-1, 4)
        tu = (g[ue[:, 2]] / (g[ue[:, 2]] - g[ue[:, 3]]))[:, None] if len(ue) else np.zeros((0, 1))
        uvs = np.concatenate([patch.uvs, (1 - tu) * patch.uvs[ue[:, 0]] + tu * patch.uvs[ue[:, 1]]])
        uv_faces = np.concatenate([keep_uv, np.array(uv_tris, np.int64).reshape(-1, 3)])
    out = Patch(verts, faces, uvs, uv_faces, attrs, sticky)
    return compact(out)


def compact(patch: Patch) -> Patch:
    """Drop unreferenced vertices (and UVs), renumbering faces."""
    used = np.zeros(len(patch.vertices), bool)
    used[patch.faces.reshape(-1)] = True
    remap = np.cumsum(used) - 1
    out = Patch(patch.vertices[used], remap[patch.faces].astype(np.int32), patch.uvs, patch.uv_faces,
                {k: v[used] for k, v in patch.attrs.items()}, {k: v[used] for k, v in patch.sticky.items()})
    if patch.uvs is not None:
        uused = np.zeros(len(patch.uvs), bool)
        uused[patch.uv_faces.reshape(-1)] = True
        uremap = np.cumsum(uused) - 1
        out.uvs = patch.uvs[uused]
        out.uv_faces = uremap[patch.uv_faces].astype(np.int32)
    return out


def boundary_edges(faces: np.ndarray) -> np.ndarray:
    """(B, 2) directed edges used by exactly one face, in that face's direction."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).astype(np.int64)
    key = np.minimum(e[:, 0], e[:, 1]) * (int(faces.max()) + 1) + np.maximum(e[:, 0], e[:, 1])
    _, inv, counts = np.unique(key, return_inverse=True, return_counts=True)
    return e[counts[inv] == 1]


def remove_small_components(patch: Patch, min_faces: int) -> Patch:
    """Drop connected pieces with fewer than ``min_faces`` faces (stray islands left by a cut)."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    n = len(patch.vertices)
    f = patch.faces
    if len(f) == 0:
        return patch
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]]])
    adj = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    _, labels = connected_components(adj, directed=False)
    face_label = labels[f[:, 0]]
    sizes = np.bincount(face_label)
    keep = sizes[face_label] >= min_faces
    out = Patch(patch.vertices, f[keep], patch.uvs, patch.uv_faces[keep] if patch.uv_faces is not None else None,
                patch.attrs, patch.sticky)
    return compact(out)


@dataclass
class Shell:
    """A closed thick surface: vertices, faces, per-corner UVs and per-vertex attributes."""

    vertices: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray
    uv_faces: np.ndarray
    attrs: dict[str, np.ndarray] = field(default_factory=dict)


def thicken(faces: np.ndarray, inner: np.ndarray, outer: np.ndarray, uvs: np.ndarray, uv_faces: np.ndarray,
            attrs: dict[str, np.ndarray] | None = None) -> Shell:
    """Close an open surface given as two layers into a watertight shell.

    ``outer`` (N, 3) keeps the faces' winding (normals outwards), ``inner`` (N, 3) gets it flipped
    (normals into the hollow), and a rim of quads joins them along every boundary edge (the
    garment's thickness seen at hems and openings). Rim corners reuse the outer corners' UVs.
    """
    n = len(outer)
    be = boundary_edges(faces)
    a, b = be[:, 0], be[:, 1]
    rim = np.concatenate([np.stack([b, a, a + n], 1), np.stack([b, a + n, b + n], 1)])
    all_faces = np.concatenate([faces, faces[:, ::-1] + n, rim]).astype(np.int32)
    # UVs of rim corners: the UV any face gives that vertex.
    vuv = np.zeros(n, np.int64)
    vuv[faces.reshape(-1)] = uv_faces.reshape(-1)
    rim_uv = np.concatenate([np.stack([vuv[b], vuv[a], vuv[a]], 1), np.stack([vuv[b], vuv[a], vuv[b]], 1)])
    all_uv = np.concatenate([uv_faces, uv_faces[:, ::-1], rim_uv]).astype(np.int32)
    at = {k: np.concatenate([v, v]) for k, v in (attrs or {}).items()}
    return Shell(np.concatenate([outer, inner]), all_faces, uvs, all_uv, at)


def grid_faces(rows: int, cols: int, closed: bool = True) -> np.ndarray:
    """Faces of a (rows, cols) vertex grid (row-major), columns wrapping around when ``closed``.
    Rows go down, columns go around counter-clockwise seen from above, so normals point outwards
    of a surface of revolution."""
    r = np.arange(rows - 1)[:, None]
    c = np.arange(cols if closed else cols - 1)[None, :]
    c1 = (c + 1) % cols
    v00, v01 = r * cols + c, r * cols + c1
    v10, v11 = (r + 1) * cols + c, (r + 1) * cols + c1
    t1 = np.stack([v00, v10, v11], -1).reshape(-1, 3)
    t2 = np.stack([v00, v11, v01], -1).reshape(-1, 3)
    return np.concatenate([t1, t2]).astype(np.int32)


def closest_points_on_triangles(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray
                                ) -> tuple[np.ndarray, np.ndarray]:
    """Closest points on triangles (a, b, c) to points p (broadcasting, last axis 3) and their
    barycentric weights (..., 3), by clamping the plane projection to the triangle's edges."""
    ab, ac = b - a, c - a
    n = np.cross(ab, ac)
    nn = np.maximum((n * n).sum(-1, keepdims=True), 1e-30)
    # Projection onto the plane, barycentrics by areas.
    ap = p - a
    q = p - ((ap * n).sum(-1, keepdims=True) / nn) * n
    wb = (np.cross(q - a, ac) * n).sum(-1) / nn[..., 0]
    wc = (np.cross(ab, q - a) * n).sum(-1) / nn[..., 0]
    wa = 1 - wb - wc
    inside = (wa >= 0) & (wb >= 0) & (wc >= 0)
    best_q = q
    best_w = np.stack([wa, wb, wc], -1)
    best_d = np.where(inside, ((p - q) ** 2).sum(-1), np.inf)
    # Outside the triangle: the nearest point is on one of its edges.
    for (u, v, iu, iv) in ((a, b, 0, 1), (b, c, 1, 2), (c, a, 2, 0)):
        e = v - u
        t = np.clip(((p - u) * e).sum(-1) / np.maximum((e * e).sum(-1), 1e-30), 0, 1)
        qe = u + t[..., None] * e
        de = ((p - qe) ** 2).sum(-1)
        better = (~inside) & (de < best_d)
        best_d = np.where(better, de, best_d)
        best_q = np.where(better[..., None], qe, best_q)
        w = np.zeros(t.shape + (3,))
        w[..., iu] = 1 - t
        w[..., iv] = t
        best_w = np.where(better[..., None], w, best_w)
    return best_q, best_w
