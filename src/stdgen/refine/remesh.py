"""Continuous remeshing of our own: edge split, edge collapse, edge flip and tangential relaxation
toward a per-vertex (adaptive) target edge length, keeping the mesh manifold.

The scheme follows the isotropic remeshing loop of Botsch and Kobbelt (2004) as run *inside* an
optimisation by Palfinger (2022, "Continuous remeshing for inverse rendering"): every few
optimiser steps, edges longer than ``4/3`` of their target are split, edges shorter than ``4/5``
are collapsed, edges are flipped where that brings vertex valences closer to 6, and vertices
slide tangentially toward the centroid of their neighbours. All the code here is our own.

Each operation runs as a *pass*: a greedy walk over candidate edges (longest first for splits,
shortest first for collapses) in a numba kernel that accepts an edge only if it touches nothing
an edge already accepted in the pass has touched, so all accepted operations are independent and
are applied at once. Collapses are accepted only under the link condition (the endpoints share
exactly the two opposite vertices), when no remaining triangle flips or degenerates, and when no
new edge would be long enough to be split again; flips never create an existing edge or a vertex
of valence < 3. Hence a closed (watertight) manifold stays closed and manifold and keeps its
Euler characteristic. Boundary vertices and non-manifold parts of an input are never moved,
collapsed or flipped (boundary edges may be split).

Per-vertex data (optimiser moments, target lengths, rest positions ...) travel through every
change as ``attrs``: a split vertex gets the mean of its edge's endpoints, a collapsed pair the
mean of the pair, and vertex compaction keeps rows in order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from stdgen.structures.mesh import vertex_normals
from stdgen.utils.config import ConfigMixin, check_choice, check_range

#: Split edges longer than this times their target length (Botsch and Kobbelt's 4/3).
SPLIT_RATIO = 4.0 / 3.0
#: Collapse edges shorter than this times their target length (Botsch and Kobbelt's 4/5).
COLLAPSE_RATIO = 4.0 / 5.0


@dataclass
class RemeshConfig(ConfigMixin):
    """Settings of one :func:`remesh` call."""

    #: Split threshold as a multiple of the target edge length.
    split_ratio: float = SPLIT_RATIO
    #: Collapse threshold as a multiple of the target edge length.
    collapse_ratio: float = COLLAPSE_RATIO
    #: Split / collapse / flip / relax rounds per call (each round is one pass of each operation).
    rounds: int = 1
    #: Flip edges toward valence 6.
    flip: bool = True
    #: Tangential relaxation step toward the neighbour centroid (0 = off, 1 = all the way).
    relax: float = 0.5
    #: A collapse is refused if a remaining triangle's normal turns by more than this (cosine).
    collapse_min_cos: float = 0.5
    #: A flip is refused across creases whose two face normals have a cosine below this.
    flip_min_cos: float = 0.8

    def __post_init__(self) -> None:
        check_range(self, "split_ratio", 1, None, lo_open=True)
        check_range(self, "collapse_ratio", 0, 1, lo_open=True, hi_open=True)
        check_range(self, "rounds", 0, 100, integer=True)
        check_choice(self, "flip", (True, False))
        check_range(self, "relax", 0, 1)
        check_range(self, "collapse_min_cos", -1, 1)
        check_range(self, "flip_min_cos", -1, 1)


# -- connectivity ------------------------------------------------------------------------------------
@dataclass
class Connectivity:
    """Edge structure of a triangle mesh with N vertices and F faces.

    ``edges`` (E, 2) int64, sorted endpoints ``(lo, hi)``; ``face_edges`` (F, 3) edge of each face
    corner's outgoing half-edge ``f[k] -> f[k+1]``; ``edge_faces`` (E, 2) the first two faces
    holding the edge (-1 if none); ``edge_count`` (E,) how many faces hold it (2 = interior,
    1 = boundary, > 2 = non-manifold); ``frozen`` (N,) bool vertices no operation may touch
    (boundary and non-manifold vertices and any the caller locked).
    """

    edges: np.ndarray
    face_edges: np.ndarray
    edge_faces: np.ndarray
    edge_count: np.ndarray
    frozen: np.ndarray


def connectivity(faces: np.ndarray, num_vertices: int, locked: np.ndarray | None = None, *,
                 check_fans: bool = True) -> Connectivity:
    """Build :class:`Connectivity` for ``faces`` (F, 3).

    ``check_fans`` also freezes vertices whose faces do not form one fan (pinched vertices); the
    remeshing loop checks once on its input and skips it later, since its operations keep fans.
    """
    faces = np.asarray(faces, np.int64)
    f = len(faces)
    edges, inv, counts = _face_edges(faces, num_vertices)
    edge_faces = _edge_faces(inv, len(edges))
    frozen = np.zeros(num_vertices, bool) if locked is None else np.asarray(locked, bool).copy()
    bad = counts != 2
    frozen[edges[bad].reshape(-1)] = True
    if check_fans:
        frozen |= ~_vertex_fans_ok(faces, num_vertices)
    return Connectivity(edges, inv.reshape(f, 3), edge_faces, counts, frozen)


@numba.njit(cache=True)
def _counting_order(keys, n):
    """``np.argsort(keys, kind="stable")`` for int keys in [0, n), and the (n + 1,) group pointers."""
    ptr = np.zeros(n + 1, np.int64)
    for i in range(keys.shape[0]):
        ptr[keys[i] + 1] += 1
    for v in range(n):
        ptr[v + 1] += ptr[v]
    pos = ptr[:-1].copy()
    order = np.empty(keys.shape[0], np.int64)
    for i in range(keys.shape[0]):
        order[pos[keys[i]]] = i
        pos[keys[i]] += 1
    return order, ptr


@numba.njit(cache=True)
def _unique_edges(lo, hi, n):
    """Sorted unique (lo, hi) pairs (E, 2), each pair's index (M,) and multiplicity (E,).

    One counting sort by ``lo``, then each vertex's few pairs sorted by ``hi`` in place
    (insertion sort: a vertex has a handful of neighbours), then one pass assigning edge ids.
    """
    order, ptr = _counting_order(lo, n)
    m = lo.shape[0]
    for v in range(n):
        s, e = ptr[v], ptr[v + 1]
        for i in range(s + 1, e):  # stable: equal hi keep their order
            x = order[i]
            key = hi[x]
            j = i - 1
            while j >= s and hi[order[j]] > key:
                order[j + 1] = order[j]
                j -= 1
            order[j + 1] = x
    # Two passes (number the runs of equal pairs, then fill the edge table): four times faster
    # than writing a table sized for the worst case while comparing against it.
    inv = np.empty(m, np.int64)
    first = np.empty(m, np.bool_)
    prev_lo, prev_hi, k = -1, -1, -1
    for idx in range(m):
        i = order[idx]
        a, b = lo[i], hi[i]
        first[idx] = a != prev_lo or b != prev_hi
        if first[idx]:
            k += 1
            prev_lo, prev_hi = a, b
        inv[i] = k
    edges = np.empty((k + 1, 2), np.int64)
    counts = np.zeros(k + 1, np.int64)
    k = -1
    for idx in range(m):
        if first[idx]:
            k += 1
            edges[k, 0] = lo[order[idx]]
            edges[k, 1] = hi[order[idx]]
        counts[k] += 1
    return edges, inv, counts


def _face_edges(faces: np.ndarray, num_vertices: int = 0):
    """The undirected edges of ``faces`` (F, 3) int64: ``(edges (E, 2) sorted (lo, hi), edge of each
    half-edge f[k] -> f[k+1] (3F,), multiplicity (E,))`` -- ``np.unique`` of the sorted pairs with
    its inverse and counts, by counting sorts (numpy's argsort was most of a remeshing pass)."""
    a = faces.reshape(-1)
    b = faces[:, [1, 2, 0]].reshape(-1)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    return _unique_edges(lo, hi, max(int(num_vertices), int(hi.max()) + 1 if len(hi) else 1))


def mesh_edges(faces: np.ndarray, num_vertices: int = 0) -> np.ndarray:
    """(E, 2) int64 undirected edges ``(lo, hi)`` of ``faces`` (F, 3), sorted, each once:
    ``np.unique(np.sort(face_edges, 1), axis=0)``, twenty times faster."""
    return _face_edges(np.asarray(faces, np.int64).reshape(-1, 3), num_vertices)[0]


@numba.njit(cache=True)
def _max_over_edges(values, edges, out):
    """``out[v] = max(out[v], values[e])`` over the edges e touching v (np.maximum.at, compiled)."""
    for e in range(edges.shape[0]):
        for k in range(2):
            v = edges[e, k]
            if values[e] > out[v]:
                out[v] = values[e]
    return out


@numba.njit(cache=True)
def _min_neighbour(values, edges, out):
    """``out[v] = min(out[v], values[w])`` over the neighbours w of each vertex v."""
    for e in range(edges.shape[0]):
        a, b = edges[e, 0], edges[e, 1]
        if values[b] < out[a]:
            out[a] = values[b]
        if values[a] < out[b]:
            out[b] = values[a]
    return out


def adaptive_edge_length(vertices: np.ndarray, faces: np.ndarray, lmin: float, lmax: float,
                         angle: float) -> np.ndarray:
    """(N,) target edge lengths: ``angle / curvature``, clamped to [lmin, lmax], graded smoothly.

    Curvature per vertex is the largest turn of the vertex normal per unit length along its edges.
    """
    v = np.asarray(vertices, np.float64)
    n = vertex_normals(v, faces)
    e = mesh_edges(faces, len(v))
    length = np.linalg.norm(v[e[:, 0]] - v[e[:, 1]], axis=1)
    turn = np.arccos(np.clip((n[e[:, 0]] * n[e[:, 1]]).sum(1), -1, 1))
    k_edge = turn / np.maximum(length, 1e-12)
    kappa = _max_over_edges(k_edge, e, np.zeros(len(v)))
    target = np.clip(angle / np.maximum(kappa, 1e-12), lmin, lmax)
    for _ in range(2):  # grade: no vertex wants much more than its neighbours
        nb = _min_neighbour(target, e, np.full(len(v), np.inf))
        target = np.minimum(target, 1.5 * nb)
    return target


@numba.njit(cache=True)
def _edge_faces(half_edge_edge, num_edges):
    out = np.full((num_edges, 2), -1, np.int64)
    for h in range(half_edge_edge.shape[0]):
        e = half_edge_edge[h]
        if out[e, 0] < 0:
            out[e, 0] = h // 3
        elif out[e, 1] < 0:
            out[e, 1] = h // 3
    return out


def _vertex_fans_ok(faces: np.ndarray, n: int) -> np.ndarray:
    """(N,) True where a vertex's incident faces form one fan (closed, or open on a boundary)."""
    if len(faces) == 0:
        return np.ones(n, bool)
    order, ptr = _vertex_face_csr(faces, n)
    return _fans_ok(faces, order, ptr, n)


def _vertex_face_csr(faces: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Vertex -> incident faces as CSR: faces ``order[ptr[v]:ptr[v+1]]`` contain ``v``."""
    flat = np.ascontiguousarray(np.asarray(faces, np.int64).reshape(-1))
    order, ptr = _counting_order(flat, n)
    return order // 3, ptr


@numba.njit(cache=True)
def _fans_ok(faces, vf, ptr, n):
    ok = np.ones(n, np.bool_)
    for v in range(n):
        s, e = ptr[v], ptr[v + 1]
        k = e - s
        if k == 0:
            continue
        nxt = np.empty(k, np.int64)  # the vertex after v in each incident face (CCW)
        prv = np.empty(k, np.int64)  # the vertex before v
        for i in range(k):
            f = vf[s + i]
            for c in range(3):
                if faces[f, c] == v:
                    nxt[i] = faces[f, (c + 1) % 3]
                    prv[i] = faces[f, (c + 2) % 3]
        # successor of face i: the face j whose prv equals nxt[i]; must be unique.
        succ = np.full(k, -1, np.int64)
        has_pred = np.zeros(k, np.bool_)
        bad = False
        for i in range(k):
            for j in range(k):
                if j != i and prv[j] == nxt[i]:
                    if succ[i] >= 0:
                        bad = True
                    succ[i] = j
            if nxt[i] == prv[i] or nxt[i] == v or prv[i] == v:
                bad = True
        for i in range(k):
            if succ[i] >= 0:
                if has_pred[succ[i]]:
                    bad = True
                has_pred[succ[i]] = True
        if bad:
            ok[v] = False
            continue
        start = 0
        starts = 0
        for i in range(k):
            if not has_pred[i]:
                start = i
                starts += 1
        if starts > 1:
            ok[v] = False
            continue
        # Walk the fan from its start; it must visit every face exactly once.
        seen = 1
        cur = succ[start]
        while cur >= 0 and cur != start and seen <= k:
            seen += 1
            cur = succ[cur]
        ok[v] = seen == k
    return ok


def _neighbor_csr(edges: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Vertex -> neighbour vertices as CSR (``nbr[ptr[v]:ptr[v+1]]``)."""
    src = np.concatenate([edges[:, 0], edges[:, 1]])
    dst = np.concatenate([edges[:, 1], edges[:, 0]])
    order, ptr = _counting_order(src, n)
    return dst[order], ptr


# -- checks -------------------------------------------------------------------------------------------
@dataclass
class ManifoldReport:
    """Topological facts about a triangle mesh."""

    degenerate_faces: int  # faces with a repeated vertex
    duplicate_faces: int  # faces over the same vertex triple as another
    boundary_edges: int
    nonmanifold_edges: int  # edges in more than two faces
    inconsistent_edges: int  # interior edges whose two faces run it the same way (orientation flip)
    nonmanifold_vertices: int  # vertices whose faces are not one fan
    unreferenced_vertices: int
    euler: int  # V - E + F over referenced vertices

    @property
    def manifold(self) -> bool:
        return (self.degenerate_faces == 0 and self.duplicate_faces == 0 and self.nonmanifold_edges == 0
                and self.nonmanifold_vertices == 0 and self.inconsistent_edges == 0)

    @property
    def watertight(self) -> bool:
        return self.manifold and self.boundary_edges == 0


def manifold_report(faces: np.ndarray, num_vertices: int) -> ManifoldReport:
    """Check ``faces`` (F, 3) over ``num_vertices`` vertices for manifoldness and closure."""
    faces = np.asarray(faces, np.int64).reshape(-1, 3)
    degenerate = int(((faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2])
                      | (faces[:, 0] == faces[:, 2])).sum())
    dup = len(faces) - len(np.unique(np.sort(faces, 1), axis=0)) if len(faces) else 0
    a = faces.reshape(-1)
    b = faces[:, [1, 2, 0]].reshape(-1)
    n = max(num_vertices, 1)
    directed = a * n + b
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    _, counts = np.unique(lo * n + hi, return_counts=True)
    # Consistent orientation: each directed half-edge appears once (its twin runs the other way).
    _, dcounts = np.unique(directed, return_counts=True)
    inconsistent = int((dcounts > 1).sum())
    used = np.zeros(num_vertices, bool)
    used[a] = True
    fans = _vertex_fans_ok(faces, num_vertices) if degenerate == 0 else np.ones(num_vertices, bool)
    return ManifoldReport(
        degenerate_faces=degenerate, duplicate_faces=int(dup), boundary_edges=int((counts == 1).sum()),
        nonmanifold_edges=int((counts > 2).sum()), inconsistent_edges=inconsistent,
        nonmanifold_vertices=int((~fans & used).sum()), unreferenced_vertices=int((~used).sum()),
        euler=int(used.sum()) - len(counts) + len(faces))


# -- helpers --------------------------------------------------------------------------------------------
def _edge_targets(edges: np.ndarray, target: np.ndarray) -> np.ndarray:
    return 0.5 * (target[edges[:, 0]] + target[edges[:, 1]])


@numba.njit(cache=True)
def _edge_lengths(vertices, edges):
    out = np.empty(edges.shape[0])
    for e in range(edges.shape[0]):
        a, b = edges[e, 0], edges[e, 1]
        dx = vertices[a, 0] - vertices[b, 0]
        dy = vertices[a, 1] - vertices[b, 1]
        dz = vertices[a, 2] - vertices[b, 2]
        out[e] = np.sqrt(dx * dx + dy * dy + dz * dz)
    return out


def _mix_attrs(attrs: dict[str, np.ndarray], a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
    """Rows that are the mean of rows ``a`` and ``b`` of every attribute."""
    out = {}
    for k, v in attrs.items():
        if np.issubdtype(v.dtype, np.floating):
            out[k] = 0.5 * (v[a] + v[b])
        else:  # integer / bool attributes: take the first endpoint's
            out[k] = v[a]
    return out


def compact(vertices: np.ndarray, faces: np.ndarray, attrs: dict[str, np.ndarray]):
    """Drop vertices no face references; returns (vertices, faces, attrs, old index of each kept vertex)."""
    used = np.zeros(len(vertices), bool)
    used[faces.reshape(-1)] = True
    keep = np.nonzero(used)[0]
    remap = np.full(len(vertices), -1, np.int64)
    remap[keep] = np.arange(len(keep))
    return vertices[keep], remap[faces], {k: v[keep] for k, v in attrs.items()}, keep


# -- split ---------------------------------------------------------------------------------------------
@numba.njit(cache=True)
def _select_independent_edges(order, want, edge_faces, edge_count):
    """Greedy: accept candidate edges (in ``order``) whose faces no accepted edge has used."""
    num_faces = 0
    for e in range(edge_faces.shape[0]):
        for s in range(2):
            if edge_faces[e, s] + 1 > num_faces:
                num_faces = edge_faces[e, s] + 1
    used = np.zeros(num_faces, np.bool_)
    out = np.empty(order.shape[0], np.int64)
    k = 0
    for i in range(order.shape[0]):
        e = order[i]
        if not want[e] or edge_count[e] > 2:
            continue
        f0, f1 = edge_faces[e, 0], edge_faces[e, 1]
        if (f0 >= 0 and used[f0]) or (f1 >= 0 and used[f1]):
            continue
        if f0 >= 0:
            used[f0] = True
        if f1 >= 0:
            used[f1] = True
        out[k] = e
        k += 1
    return out[:k]


def split_edges(vertices, faces, attrs, conn: Connectivity, candidates: np.ndarray):
    """Split the independent subset of ``candidates`` (edge ids in priority order) at their midpoints.

    Returns ``(vertices, faces, attrs, count)``. Boundary edges split their one face; every split
    keeps orientation and manifoldness.
    """
    want = np.zeros(len(conn.edges), bool)
    want[candidates] = True
    sel = _select_independent_edges(np.asarray(candidates, np.int64), want, conn.edge_faces, conn.edge_count)
    if len(sel) == 0:
        return vertices, faces, attrs, 0
    n = len(vertices)
    ea, eb = conn.edges[sel, 0], conn.edges[sel, 1]
    new_ids = n + np.arange(len(sel))
    vertices = np.concatenate([vertices, 0.5 * (vertices[ea] + vertices[eb])])
    mixed = _mix_attrs(attrs, ea, eb)
    attrs = {k: np.concatenate([v, mixed[k]]) for k, v in attrs.items()}
    faces = faces.copy()
    new_faces = []
    for side in range(2):
        f = conn.edge_faces[sel, side]
        ok = f >= 0
        f, m, e = f[ok], new_ids[ok], sel[ok]
        corner = np.argmax(conn.face_edges[f] == e[:, None], axis=1)  # the edge runs f[c] -> f[c+1]
        p = faces[f, corner]
        q = faces[f, (corner + 1) % 3]
        r = faces[f, (corner + 2) % 3]
        faces[f] = np.stack([p, m, r], 1)
        new_faces.append(np.stack([m, q, r], 1))
    faces = np.concatenate([faces, *new_faces])
    return vertices, faces, attrs, len(sel)


# -- collapse --------------------------------------------------------------------------------------------
@numba.njit(cache=True)
def _select_collapses(order, want, edges, edge_count, frozen, nbr, nbr_ptr, vf, vf_ptr, faces, verts,
                      max_len2, min_cos, min_vertices):
    n = verts.shape[0]
    locked = frozen.copy()
    mark = np.full(n, -1, np.int64)  # scratch for the link-condition test
    out = np.empty((order.shape[0], 2), np.int64)
    newpos = np.empty((order.shape[0], 3), np.float64)
    k = 0
    alive = n
    for i in range(order.shape[0]):
        e = order[i]
        if not want[e] or edge_count[e] != 2:
            continue
        a, b = edges[e, 0], edges[e, 1]
        if locked[a] or locked[b]:
            continue
        if alive - 1 < min_vertices:
            break
        # Link condition: a and b share exactly the two vertices opposite the edge.
        for j in range(nbr_ptr[a], nbr_ptr[a + 1]):
            mark[nbr[j]] = i
        common = 0
        for j in range(nbr_ptr[b], nbr_ptr[b + 1]):
            if mark[nbr[j]] == i:
                common += 1
        for j in range(nbr_ptr[a], nbr_ptr[a + 1]):
            mark[nbr[j]] = -1
        if common != 2:
            continue
        p = 0.5 * (verts[a] + verts[b])
        ok = True
        # No new edge long enough to be split again.
        for s in range(2):
            v = a if s == 0 else b
            for j in range(nbr_ptr[v], nbr_ptr[v + 1]):
                x = nbr[j]
                if x == a or x == b:
                    continue
                d = verts[x] - p
                if d[0] * d[0] + d[1] * d[1] + d[2] * d[2] > max_len2[e]:
                    ok = False
        if not ok:
            continue
        # No remaining face may flip or degenerate.
        for s in range(2):
            v = a if s == 0 else b
            for j in range(vf_ptr[v], vf_ptr[v + 1]):
                f = vf[j]
                has_a = faces[f, 0] == a or faces[f, 1] == a or faces[f, 2] == a
                has_b = faces[f, 0] == b or faces[f, 1] == b or faces[f, 2] == b
                if has_a and has_b:
                    continue
                p0 = verts[faces[f, 0]]
                p1 = verts[faces[f, 1]]
                p2 = verts[faces[f, 2]]
                n0 = np.cross(p1 - p0, p2 - p0)
                q0 = p if faces[f, 0] == v else p0
                q1 = p if faces[f, 1] == v else p1
                q2 = p if faces[f, 2] == v else p2
                n1 = np.cross(q1 - q0, q2 - q0)
                l0 = np.sqrt(n0[0] ** 2 + n0[1] ** 2 + n0[2] ** 2)
                l1 = np.sqrt(n1[0] ** 2 + n1[1] ** 2 + n1[2] ** 2)
                if l1 <= 1e-12 * (l0 + 1e-30) or l1 == 0.0:
                    ok = False
                elif l0 > 0 and (n0[0] * n1[0] + n0[1] * n1[1] + n0[2] * n1[2]) < min_cos * l0 * l1:
                    ok = False
        if not ok:
            continue
        # Accept; lock both stars so later collapses in this pass are independent of this one.
        locked[a] = True
        locked[b] = True
        for s in range(2):
            v = a if s == 0 else b
            for j in range(nbr_ptr[v], nbr_ptr[v + 1]):
                locked[nbr[j]] = True
        out[k, 0] = a
        out[k, 1] = b
        newpos[k] = p
        k += 1
        alive -= 1
    return out[:k], newpos[:k]


def collapse_edges(vertices, faces, attrs, conn: Connectivity, candidates: np.ndarray, max_len: np.ndarray,
                   min_cos: float = 0.5):
    """Collapse the valid, independent subset of ``candidates`` (edge ids, priority order) to midpoints.

    ``max_len`` (E,) refuses a collapse that would make an edge longer than this. Returns
    ``(vertices, faces, attrs, count)``; vertices are compacted.
    """
    n = len(vertices)
    want = np.zeros(len(conn.edges), bool)
    want[candidates] = True
    nbr, nbr_ptr = _neighbor_csr(conn.edges, n)
    vf, vf_ptr = _vertex_face_csr(faces, n)
    pairs, newpos = _select_collapses(
        np.asarray(candidates, np.int64), want, conn.edges, conn.edge_count, conn.frozen, nbr, nbr_ptr, vf,
        vf_ptr, np.asarray(faces, np.int64), np.asarray(vertices, np.float64), np.asarray(max_len, np.float64) ** 2,
        float(min_cos), 4)
    if len(pairs) == 0:
        return vertices, faces, attrs, 0
    a, b = pairs[:, 0], pairs[:, 1]
    vertices = vertices.copy()
    vertices[a] = newpos.astype(vertices.dtype)
    mixed = _mix_attrs(attrs, a, b)
    attrs = {k: v.copy() for k, v in attrs.items()}
    for k in attrs:
        attrs[k][a] = mixed[k]
    remap = np.arange(n)
    remap[b] = a
    faces = remap[faces]
    keep = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    vertices, faces, attrs, _ = compact(vertices, faces[keep], attrs)
    return vertices, faces, attrs, len(pairs)


# -- flip ------------------------------------------------------------------------------------------------
@numba.njit(cache=True)
def _flip_pass(order, want, edges, edge_faces, edge_count, frozen, nbr, nbr_ptr, faces, verts, valence,
               boundary_v, min_cos, require_improvement):
    locked = frozen.copy()
    count = 0
    for i in range(order.shape[0]):
        e = order[i]
        if not want[e] or edge_count[e] != 2:
            continue
        a, b = edges[e, 0], edges[e, 1]
        f0, f1 = edge_faces[e, 0], edge_faces[e, 1]
        # Orient: f0 runs a -> b (opposite c), f1 runs b -> a (opposite d).
        c0 = 0
        for c in range(3):
            if faces[f0, c] == a:
                c0 = c
        if faces[f0, (c0 + 1) % 3] != b:
            f0, f1 = f1, f0
            for c in range(3):
                if faces[f0, c] == a:
                    c0 = c
            if faces[f0, (c0 + 1) % 3] != b:
                continue  # inconsistent orientation: leave it alone
        c_ = faces[f0, (c0 + 2) % 3]
        d_ = -1
        for c in range(3):
            if faces[f1, c] != a and faces[f1, c] != b:
                d_ = faces[f1, c]
        if d_ < 0 or d_ == c_:
            continue
        if locked[a] or locked[b] or locked[c_] or locked[d_]:
            continue
        if valence[a] <= 3 or valence[b] <= 3:
            continue
        ta = 4 if boundary_v[a] else 6
        tb = 4 if boundary_v[b] else 6
        tc = 4 if boundary_v[c_] else 6
        td = 4 if boundary_v[d_] else 6
        before = ((valence[a] - ta) ** 2 + (valence[b] - tb) ** 2 + (valence[c_] - tc) ** 2
                  + (valence[d_] - td) ** 2)
        after = ((valence[a] - 1 - ta) ** 2 + (valence[b] - 1 - tb) ** 2 + (valence[c_] + 1 - tc) ** 2
                 + (valence[d_] + 1 - td) ** 2)
        if require_improvement and after >= before:
            continue
        # The new edge c-d must not exist already.
        exists = False
        for j in range(nbr_ptr[c_], nbr_ptr[c_ + 1]):
            if nbr[j] == d_:
                exists = True
        if exists:
            continue
        pa, pb, pc, pd = verts[a], verts[b], verts[c_], verts[d_]
        n0 = np.cross(pb - pa, pc - pa)
        n1 = np.cross(pa - pb, pd - pb)
        l0 = np.sqrt(np.sum(n0 * n0))
        l1 = np.sqrt(np.sum(n1 * n1))
        if l0 == 0.0 or l1 == 0.0 or np.sum(n0 * n1) < min_cos * l0 * l1:
            continue  # a crease: flipping would change the shape
        m0 = np.cross(pd - pa, pc - pa)  # new faces (a, d, c) and (d, b, c)
        m1 = np.cross(pb - pd, pc - pd)
        k0 = np.sqrt(np.sum(m0 * m0))
        k1 = np.sqrt(np.sum(m1 * m1))
        nsum = n0 / l0 + n1 / l1
        if k0 <= 1e-12 * l0 or k1 <= 1e-12 * l1:
            continue
        if np.sum(m0 * nsum) <= 0.0 or np.sum(m1 * nsum) <= 0.0 or np.sum(m0 * m1) < min_cos * k0 * k1:
            continue
        faces[f0, 0], faces[f0, 1], faces[f0, 2] = a, d_, c_
        faces[f1, 0], faces[f1, 1], faces[f1, 2] = d_, b, c_
        valence[a] -= 1
        valence[b] -= 1
        valence[c_] += 1
        valence[d_] += 1
        locked[a] = True
        locked[b] = True
        locked[c_] = True
        locked[d_] = True
        count += 1
    return count


def flip_edges(vertices, faces, conn: Connectivity, candidates: np.ndarray, min_cos: float = 0.8,
               require_improvement: bool = True):
    """Flip the independent subset of ``candidates`` that lowers the valence deviation from 6 (4 on
    boundaries) without creating an existing edge, a valence below 3 or a fold. Returns
    ``(faces, count)``. ``require_improvement=False`` flips regardless of valences (tests)."""
    n = len(vertices)
    want = np.zeros(len(conn.edges), bool)
    want[candidates] = True
    nbr, nbr_ptr = _neighbor_csr(conn.edges, n)
    valence = (nbr_ptr[1:] - nbr_ptr[:-1]).astype(np.int64)
    boundary_v = np.zeros(n, bool)
    boundary_v[conn.edges[conn.edge_count == 1].reshape(-1)] = True
    faces = np.array(faces, np.int64)
    count = _flip_pass(np.asarray(candidates, np.int64), want, conn.edges, conn.edge_faces, conn.edge_count,
                       conn.frozen, nbr, nbr_ptr, faces, np.asarray(vertices, np.float64), valence, boundary_v,
                       float(min_cos), bool(require_improvement))
    return faces, int(count)


# -- relaxation --------------------------------------------------------------------------------------------
def tangential_relax(vertices: np.ndarray, faces: np.ndarray, conn: Connectivity, weight: float) -> np.ndarray:
    """Move every free vertex ``weight`` of the way to its neighbours' centroid, in its tangent plane."""
    if weight <= 0 or len(faces) == 0:
        return vertices
    return _relax(np.ascontiguousarray(vertices, np.float64), np.ascontiguousarray(faces, np.int64), conn.edges,
                  conn.frozen, float(weight))


@numba.njit(cache=True)
def _relax(v, faces, edges, frozen, weight):
    n = v.shape[0]
    # Area-weighted vertex normals (the sum of the incident faces' cross products).
    nrm = np.zeros((n, 3))
    for f in range(faces.shape[0]):
        a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
        e1x, e1y, e1z = v[b, 0] - v[a, 0], v[b, 1] - v[a, 1], v[b, 2] - v[a, 2]
        e2x, e2y, e2z = v[c, 0] - v[a, 0], v[c, 1] - v[a, 1], v[c, 2] - v[a, 2]
        cx, cy, cz = e1y * e2z - e1z * e2y, e1z * e2x - e1x * e2z, e1x * e2y - e1y * e2x
        for k in (a, b, c):
            nrm[k, 0] += cx
            nrm[k, 1] += cy
            nrm[k, 2] += cz
    acc = np.zeros((n, 3))
    deg = np.zeros(n)
    for e in range(edges.shape[0]):
        a, b = edges[e, 0], edges[e, 1]
        for k in range(3):
            acc[a, k] += v[b, k]
            acc[b, k] += v[a, k]
        deg[a] += 1.0
        deg[b] += 1.0
    out = v.copy()
    for i in range(n):
        if frozen[i] or deg[i] == 0:
            continue
        ln = np.sqrt(nrm[i, 0] ** 2 + nrm[i, 1] ** 2 + nrm[i, 2] ** 2)
        if ln > 0:
            nx, ny, nz = nrm[i, 0] / ln, nrm[i, 1] / ln, nrm[i, 2] / ln
        else:
            nx = ny = nz = 0.0
        dx, dy, dz = acc[i, 0] / deg[i] - v[i, 0], acc[i, 1] / deg[i] - v[i, 1], acc[i, 2] / deg[i] - v[i, 2]
        dot = dx * nx + dy * ny + dz * nz
        out[i, 0] += weight * (dx - dot * nx)
        out[i, 1] += weight * (dy - dot * ny)
        out[i, 2] += weight * (dz - dot * nz)
    return out


# -- the loop ---------------------------------------------------------------------------------------------
@dataclass
class RemeshStats:
    splits: int = 0
    collapses: int = 0
    flips: int = 0
    #: Pinched (non-fan) vertices found in the input and frozen (-1: not checked).
    pinched: int = -1


def remesh(vertices: np.ndarray, faces: np.ndarray, target: np.ndarray, attrs: dict[str, np.ndarray] | None = None,
           config: RemeshConfig | None = None, *, locked: np.ndarray | None = None, check_fans: bool = True):
    """One remeshing call toward per-vertex target edge lengths.

    Args:
        vertices: (N, 3) float positions.
        faces: (F, 3) int triangles, counter-clockwise seen from outside.
        target: (N,) target edge length per vertex (an edge's target is its endpoints' mean).
        attrs: per-vertex arrays (N, ...) carried through the changes (mean on split / collapse).
        config: :class:`RemeshConfig`.
        locked: (N,) bool vertices never moved or removed.
        check_fans: look for pinched vertices (whose faces are not one fan) and freeze them. The
            operations here never pinch a vertex, so a caller remeshing its own output again, whose
            first call reported ``stats.pinched == 0``, may skip the check.

    Returns:
        ``(vertices, faces, target, attrs, stats)`` with the same attribute keys; ``locked`` travels
        as ``attrs["_locked"]`` internally and is not returned.
    """
    cfg = config or RemeshConfig()
    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64)
    attrs = dict(attrs or {})
    attrs["_target"] = np.asarray(target, np.float64)
    attrs["_locked"] = np.zeros(len(vertices), bool) if locked is None else np.asarray(locked, bool).copy()
    stats = RemeshStats()
    # Pinched (non-fan) vertices stay frozen throughout; the operations below never create new ones.
    if check_fans:
        pinched = ~_vertex_fans_ok(faces, len(vertices))
        stats.pinched = int(pinched.sum())
        attrs["_locked"] |= pinched
    for _ in range(max(1, cfg.rounds)):
        # Split: longest first.
        conn = connectivity(faces, len(vertices), attrs["_locked"], check_fans=False)
        length = _edge_lengths(vertices, conn.edges)
        et = _edge_targets(conn.edges, attrs["_target"])
        # Splits move no existing vertex, so only caller-locked vertices hold them back.
        held = attrs["_locked"][conn.edges].any(1)
        cand = np.nonzero((length > cfg.split_ratio * et) & ~held)[0]
        cand = cand[np.argsort(-length[cand] / et[cand], kind="stable")]
        vertices, faces, attrs, k = split_edges(vertices, faces, attrs, conn, cand)
        stats.splits += k
        # Collapse: shortest first.
        conn = connectivity(faces, len(vertices), attrs["_locked"], check_fans=False)
        length = _edge_lengths(vertices, conn.edges)
        et = _edge_targets(conn.edges, attrs["_target"])
        cand = np.nonzero(length < cfg.collapse_ratio * et)[0]
        cand = cand[np.argsort(length[cand] / et[cand], kind="stable")]
        vertices, faces, attrs, k = collapse_edges(vertices, faces, attrs, conn, cand,
                                                   max_len=cfg.split_ratio * et, min_cos=cfg.collapse_min_cos)
        stats.collapses += k
        conn = connectivity(faces, len(vertices), attrs["_locked"], check_fans=False)
        if cfg.flip:
            cand = np.arange(len(conn.edges))
            faces, k = flip_edges(vertices, faces, conn, cand, min_cos=cfg.flip_min_cos)
            stats.flips += k
            if k:
                conn = connectivity(faces, len(vertices), attrs["_locked"], check_fans=False)
        vertices = tangential_relax(vertices, faces, conn, cfg.relax)
    target = attrs.pop("_target")
    attrs.pop("_locked")
    return vertices, faces, target, attrs, stats
