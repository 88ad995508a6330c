"""Geometry checks shared by the procedural-character tests: closed-surface tests, ray crossings,
signed distances to a triangle mesh. Written independently of the generator (they see only
vertices and faces), so a generator bug cannot hide behind its own SDF."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def edge_use_counts(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Undirected edges (E, 2) and how many faces use each."""
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    uniq, counts = np.unique(e, axis=0, return_counts=True)
    return uniq, counts


def is_closed_oriented(faces: np.ndarray) -> bool:
    """Every edge is used by exactly two faces, in opposite directions (watertight, consistently
    wound, edge-manifold)."""
    _, counts = edge_use_counts(faces)
    if not np.all(counts == 2):
        return False
    d = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    # Each directed edge appears once: its opposite twin belongs to the neighbouring face.
    _, dcounts = np.unique(d, axis=0, return_counts=True)
    return bool(np.all(dcounts == 1))


def vertex_manifold(faces: np.ndarray, n: int) -> bool:
    """Around every vertex the faces form one fan (no two cones touching at a vertex).

    Needs a closed, consistently wound mesh. Corner (face f, vertex a) steps to the corner of a in
    the face across f's edge into a; these steps form cycles, one per fan: each vertex must have
    exactly one."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    f = faces.astype(np.int64)
    nf = len(f)
    corner_vertex = f.reshape(-1)  # corner k = 3 * face + j
    # Directed edge (a -> b) of face f, keyed, to the corner of a in f.
    a = f.reshape(-1)
    b = np.roll(f, -1, axis=1).reshape(-1)
    key = a * n + b
    order = np.argsort(key)
    prev = np.roll(f, 1, axis=1).reshape(-1)  # the vertex before a in its face: edge prev -> a
    # The next corner around a: the face holding the directed edge a -> prev.
    want = a * n + prev
    pos = np.searchsorted(key[order], want)
    pos = np.minimum(pos, len(order) - 1)
    found = key[order][pos] == want
    if not found.all():
        return False
    nxt = order[pos]
    g = sp.coo_matrix((np.ones(3 * nf), (np.arange(3 * nf), nxt)), shape=(3 * nf, 3 * nf))
    _, lab = connected_components(g, directed=False)
    cycles = np.unique(np.stack([corner_vertex, lab], 1), axis=0)
    per_vertex = np.bincount(cycles[:, 0], minlength=n)
    used = np.bincount(corner_vertex, minlength=n) > 0
    return bool(np.all(per_vertex[used] == 1))


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    v = vertices.astype(np.float64)
    return float(np.einsum("ij,ij->i", v[faces[:, 0]], np.cross(v[faces[:, 1]], v[faces[:, 2]])).sum() / 6)


def ray_crossings(vertices: np.ndarray, faces: np.ndarray, origin, direction) -> int:
    """How many triangles the ray origin + t direction (t > 0) crosses (Moller-Trumbore)."""
    v = vertices.astype(np.float64)
    o = np.asarray(origin, np.float64)
    d = np.asarray(direction, np.float64)
    d = d / np.linalg.norm(d)
    p0, p1, p2 = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
    e1, e2 = p1 - p0, p2 - p0
    pv = np.cross(d, e2)
    det = np.einsum("ij,ij->i", e1, pv)
    ok = np.abs(det) > 1e-14
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    tv = o - p0
    u = np.einsum("ij,ij->i", tv, pv) * inv
    qv = np.cross(tv, e1)
    w = (qv @ d) * inv
    t = np.einsum("ij,ij->i", e2, qv) * inv
    hit = ok & (u >= 0) & (w >= 0) & (u + w <= 1) & (t > 1e-9)
    return int(hit.sum())


def _closest_on_triangles(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Closest points (N, K, 3) on triangles (N, K, 3 each) to points p (N, 1, 3) (Ericson's regions)."""
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = (ab * ap).sum(-1), (ac * ap).sum(-1)
    bp = p - b
    d3, d4 = (ab * bp).sum(-1), (ac * bp).sum(-1)
    cp = p - c
    d5, d6 = (ab * cp).sum(-1), (ac * cp).sum(-1)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    denom = np.where(np.abs(va + vb + vc) > 1e-30, va + vb + vc, 1e-30)
    v = vb / denom
    w = vc / denom
    out = a + ab * v[..., None] + ac * w[..., None]  # interior
    # Edges and vertices (later assignments win where several conditions hold; order as Ericson).
    t_bc = np.clip((d4 - d3) / np.where((d4 - d3) + (d5 - d6) != 0, (d4 - d3) + (d5 - d6), 1e-30), 0, 1)
    out = np.where(((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0))[..., None], b + (c - b) * t_bc[..., None], out)
    t_ac = np.clip(d2 / np.where(d2 - d6 != 0, d2 - d6, 1e-30), 0, 1)
    out = np.where(((vb <= 0) & (d2 >= 0) & (d6 <= 0))[..., None], a + ac * t_ac[..., None], out)
    t_ab = np.clip(d1 / np.where(d1 - d3 != 0, d1 - d3, 1e-30), 0, 1)
    out = np.where(((vc <= 0) & (d1 >= 0) & (d3 <= 0))[..., None], a + ab * t_ab[..., None], out)
    out = np.where(((d6 >= 0) & (d5 <= d6))[..., None], c, out)
    out = np.where(((d3 >= 0) & (d4 <= d3))[..., None], b, out)
    out = np.where(((d1 <= 0) & (d2 <= 0))[..., None], a, out)
    return out


class MeshDistance:
    """Signed distance from points to a closed, outward-wound triangle mesh: exact unsigned distance
    to the nearest of the triangles around the ``k`` nearest vertices; sign from that triangle's
    angle-weighted normal at the closest point (negative inside). Good near the surface, which is
    where layer-order checks look."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, k: int = 8) -> None:
        self.v = vertices.astype(np.float64)
        self.f = faces.astype(np.int64)
        self.k = k
        self.tree = cKDTree(self.v)
        n = len(self.v)
        order = np.argsort(self.f.reshape(-1), kind="stable")
        self.vf_face = order // 3
        self.vf_start = np.searchsorted(self.f.reshape(-1)[order], np.arange(n + 1))
        fn = np.cross(self.v[self.f[:, 1]] - self.v[self.f[:, 0]], self.v[self.f[:, 2]] - self.v[self.f[:, 0]])
        self.fn = fn / np.maximum(np.linalg.norm(fn, axis=1, keepdims=True), 1e-30)
        vn = np.zeros_like(self.v)
        for j in range(3):
            np.add.at(vn, self.f[:, j], fn)
        self.vn = vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-30)
        self.max_deg = int(np.diff(self.vf_start).max())

    def __call__(self, points: np.ndarray, chunk: int = 4096) -> np.ndarray:
        out = np.empty(len(points))
        for s in range(0, len(points), chunk):
            out[s : s + chunk] = self._signed(points[s : s + chunk].astype(np.float64))
        # Normals are no sign test at sharp features (a garment's hem rim): confirm every
        # "inside" verdict with the exact generalized winding number.
        for i in np.flatnonzero(out < 0):
            if winding_number(self.v, self.f, points[i]) < 0.5:
                out[i] = -out[i]
        return out

    def _signed(self, p: np.ndarray) -> np.ndarray:
        _, nn = self.tree.query(p, k=self.k)
        # Candidate faces: all faces around the nearest vertices (padded with -1).
        cand = np.full((len(p), self.k * self.max_deg), -1, np.int64)
        for j in range(self.k):
            s = self.vf_start[nn[:, j]]
            e = self.vf_start[nn[:, j] + 1]
            for t in range(self.max_deg):
                idx = s + t
                valid = idx < e
                cand[valid, j * self.max_deg + t] = self.vf_face[idx[valid]]
        valid = cand >= 0
        cf = self.f[np.maximum(cand, 0)]
        a, b, c = self.v[cf[..., 0]], self.v[cf[..., 1]], self.v[cf[..., 2]]
        q = _closest_on_triangles(p[:, None, :], a, b, c)
        d2 = ((q - p[:, None, :]) ** 2).sum(-1)
        d2 = np.where(valid, d2, np.inf)
        best = np.argmin(d2, axis=1)
        rows = np.arange(len(p))
        qb = q[rows, best]
        fb = cand[rows, best]
        # Sign: interpolate vertex normals at the closest point (robust on edges and corners).
        tri = self.f[fb]
        w = _barycentric(qb, self.v[tri[:, 0]], self.v[tri[:, 1]], self.v[tri[:, 2]])
        normal = (w[:, :1] * self.vn[tri[:, 0]] + w[:, 1:2] * self.vn[tri[:, 1]] + w[:, 2:] * self.vn[tri[:, 2]])
        sign = np.sign(((p - qb) * normal).sum(1))
        sign[sign == 0] = 1
        return sign * np.sqrt(d2[rows, best])


def winding_number(vertices: np.ndarray, faces: np.ndarray, p) -> float:
    """Generalized winding number of a closed mesh around point ``p`` (1 inside, 0 outside), from
    the solid angles of all triangles (Van Oosterom and Strackee)."""
    q = np.asarray(p, np.float64)
    a, b, c = (vertices[faces[:, k]].astype(np.float64) - q for k in range(3))
    la, lb, lc = (np.linalg.norm(x, axis=1) for x in (a, b, c))
    num = np.einsum("ij,ij->i", a, np.cross(b, c))
    den = (la * lb * lc + np.einsum("ij,ij->i", a, b) * lc + np.einsum("ij,ij->i", b, c) * la
           + np.einsum("ij,ij->i", c, a) * lb)
    return float((2 * np.arctan2(num, den)).sum() / (4 * np.pi))


def _barycentric(p, a, b, c):
    v0, v1, v2 = b - a, c - a, p - a
    d00, d01, d11 = (v0 * v0).sum(1), (v0 * v1).sum(1), (v1 * v1).sum(1)
    d20, d21 = (v2 * v0).sum(1), (v2 * v1).sum(1)
    den = np.where(np.abs(d00 * d11 - d01 * d01) > 1e-30, d00 * d11 - d01 * d01, 1e-30)
    v = (d11 * d20 - d01 * d21) / den
    w = (d00 * d21 - d01 * d20) / den
    return np.clip(np.stack([1 - v - w, v, w], 1), 0, 1)


def components(faces: np.ndarray, n: int) -> np.ndarray:
    """Connected-component label of each face."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]]])
    g = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    _, lab = connected_components(g, directed=False)
    return lab[faces[:, 0]]


# -- characters shared by the procedural test modules (built once per test session) ------------------
_CHARACTERS: dict = {}


def character(seed: int, presentation: str | None = None, pose: str = "a"):
    """make_character(seed) with a config, cached for the session (characters are deterministic)."""
    from stdgen.data.procedural import CharacterConfig, make_character

    key = (seed, presentation, pose)
    if key not in _CHARACTERS:
        _CHARACTERS[key] = make_character(seed, CharacterConfig(presentation=presentation, pose=pose))
    return _CHARACTERS[key]


#: The default suite's characters: one per presentation, with outfits that between them hold a
#: skirt, trousers, shoes and long hair (seeds picked by looking at what they wear).
DEFAULT_CASES: tuple[tuple[int, str], ...] = ((4, "female"), (4, "male"), (6, "child"))
