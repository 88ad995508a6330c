"""Lookup tables of dual marching cubes, generated from first principles.

Everything here is derived by code from the cube's geometry, not copied from any table:

- **Cube numbering.** Corner ``c = i + 2 j + 4 k`` sits at offset ``(i, j, k)`` (x, y, z). For an
  axis ``a`` let ``(u, w) = ((a + 1) % 3, (a + 2) % 3)`` (a right-handed frame: u x w = a). Edge
  ``e = 4 a + ou + 2 ow`` runs along axis ``a`` at offsets ``ou`` on u and ``ow`` on w, from its
  corner at 0 on ``a`` to its corner at 1. Face ``f = 2 a + side`` holds the corners with offset
  ``side`` on ``a``; its corners in cyclic order are at ``(u, w) = (0,0), (1,0), (1,1), (0,1)``.
- **Configuration.** Bit ``c`` of the 8-bit ``code`` says corner ``c`` is *inside* (f < 0). Bit
  ``f`` of the 6-bit ``face_bits`` resolves face ``f`` when it is ambiguous (its diagonal corners
  share a sign, its neighbours do not): 1 means the two inside corners are connected across the
  face, 0 the two outside ones. Bits of unambiguous faces are ignored. The table index is
  ``code + 256 * face_bits``.
- **Patches.** The marching-cubes surface inside one cube meets the cube's faces in segments:
  a face with two crossed edges has one segment joining them; an ambiguous face (four crossed
  edges) has two, each cutting off one corner of the sign that is *not* connected. Every crossed
  edge lies on two faces, so the segments form disjoint closed loops on the cube's surface. Each
  loop bounds one patch (a disc: no tunnels through the cube's interior), and each patch gets one
  dual vertex. ``loop_of_edge[cfg, e]`` is the loop (0, 1, ...) through edge ``e``'s crossing, -1
  where ``e`` has none; loops are numbered by their smallest edge.
- ``same_loop[cfg, f]``: on ambiguous face ``f``, both segments belong to one loop. When that
  holds in *both* cubes sharing the face, the dual mesh would have an edge used by four quads;
  :mod:`stdgen.geometry.flexicubes` flips that face's resolution (see there why this always
  repairs it).

The tables are built once per process (a fraction of a second) and cached. The test suite
rebuilds the loop structure independently (connected components of corners: loops are the
boundaries between adjacent components) and compares.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

#: (u, w) axes perpendicular to each axis a, right-handed.
PERP_AXES: tuple[tuple[int, int], ...] = ((1, 2), (2, 0), (0, 1))
NUM_CONFIGS = 256 * 64


def corner_offset(c: int) -> tuple[int, int, int]:
    return (c & 1, (c >> 1) & 1, (c >> 2) & 1)


def corner_index(off) -> int:
    return int(off[0]) + 2 * int(off[1]) + 4 * int(off[2])


def edge_corners(e: int) -> tuple[int, int]:
    """Corner ids (start, end) of edge ``e``; the edge runs along +axis from start to end."""
    a, r = divmod(e, 4)
    u, w = PERP_AXES[a]
    off = [0, 0, 0]
    off[u], off[w] = r & 1, r >> 1
    start = corner_index(off)
    off[a] = 1
    return start, corner_index(off)


def edge_index(axis: int, ou: int, ow: int) -> int:
    return 4 * axis + ou + 2 * ow


def edge_between(c0: int, c1: int) -> int:
    """Id of the cube edge joining corners ``c0`` and ``c1`` (which must differ in one offset)."""
    o0, o1 = corner_offset(c0), corner_offset(c1)
    diff = [i for i in range(3) if o0[i] != o1[i]]
    if len(diff) != 1:
        raise ValueError(f"corners {c0} and {c1} do not share an edge")
    a = diff[0]
    u, w = PERP_AXES[a]
    return edge_index(a, o0[u], o0[w])


def face_corners(f: int) -> tuple[int, int, int, int]:
    """Corner ids of face ``f`` in cyclic order (u, w) = (0,0), (1,0), (1,1), (0,1)."""
    a, side = divmod(f, 2)
    u, w = PERP_AXES[a]
    out = []
    for ou, ow in ((0, 0), (1, 0), (1, 1), (0, 1)):
        off = [0, 0, 0]
        off[a], off[u], off[w] = side, ou, ow
        out.append(corner_index(off))
    return tuple(out)


def face_edges(f: int) -> tuple[int, int, int, int]:
    """Edge ids of face ``f``: edge k joins cyclic corners k and k + 1."""
    cs = face_corners(f)
    return tuple(edge_between(cs[k], cs[(k + 1) % 4]) for k in range(4))


EDGE_CORNERS = np.array([edge_corners(e) for e in range(12)], np.int64)  # (12, 2)
FACE_CORNERS = np.array([face_corners(f) for f in range(6)], np.int64)  # (6, 4)
FACE_EDGES = np.array([face_edges(f) for f in range(6)], np.int64)  # (6, 4)
CORNER_OFFSETS = np.array([corner_offset(c) for c in range(8)], np.int64)  # (8, 3)


def is_ambiguous(code: int, f: int) -> bool:
    """Face ``f`` has its diagonal corners of equal sign and adjacent corners of opposite sign."""
    s = [(code >> c) & 1 for c in FACE_CORNERS[f]]
    return s[0] == s[2] and s[1] == s[3] and s[0] != s[1]


def face_segments(code: int, face_bits: int, f: int) -> list[tuple[int, int]]:
    """Segments (pairs of crossed edge ids) of the surface on face ``f``."""
    cs = FACE_CORNERS[f]
    es = FACE_EDGES[f]
    inside = [(code >> int(c)) & 1 for c in cs]
    crossed = [int(es[k]) for k in range(4) if inside[k] != inside[(k + 1) % 4]]
    if len(crossed) == 0:
        return []
    if len(crossed) == 2:
        return [(crossed[0], crossed[1])]
    # Ambiguous: cut off each corner of the sign that is not connected across the face.
    separated = 0 if (face_bits >> f) & 1 else 1  # bit 1: inside connected -> outside corners cut
    segs = []
    for k in range(4):
        if inside[k] == separated:
            segs.append((int(es[(k - 1) % 4]), int(es[k])))  # the two face edges at corner k
    return segs


def trace_loops(code: int, face_bits: int) -> tuple[np.ndarray, list[list[int]]]:
    """Loop id per edge ((12,) int, -1 without crossing) and the segment list per face."""
    nbr: dict[int, list[int]] = {}
    seg_by_face: list[list[tuple[int, int]]] = []
    for f in range(6):
        segs = face_segments(code, face_bits, f)
        seg_by_face.append(segs)
        for e0, e1 in segs:
            nbr.setdefault(e0, []).append(e1)
            nbr.setdefault(e1, []).append(e0)
    loop = np.full(12, -1, np.int64)
    n = 0
    for e in range(12):  # loops numbered by their smallest edge
        if e not in nbr or loop[e] >= 0:
            continue
        if len(nbr[e]) != 2:  # pragma: no cover - a crossed edge always lies on two faces
            raise AssertionError(f"edge {e} has {len(nbr[e])} segment ends in config {code}/{face_bits}")
        prev, cur = -1, e
        while loop[cur] < 0:
            loop[cur] = n
            a, b = nbr[cur]
            prev, cur = cur, (b if a == prev else a)
        n += 1
    return loop, seg_by_face


@dataclass(frozen=True)
class DMCTables:
    """The dual-marching-cubes tables (numpy); index with ``code + 256 * face_bits``.

    ``loop_of_edge`` (16384, 12) int8, ``num_loops`` (16384,) int8, ``same_loop`` (16384, 6) bool,
    ``ambiguous`` (256, 6) bool per sign code and face.
    """

    loop_of_edge: np.ndarray
    num_loops: np.ndarray
    same_loop: np.ndarray
    ambiguous: np.ndarray


@functools.lru_cache(maxsize=1)
def dmc_tables() -> DMCTables:
    """Generate (once) the tables described in the module docstring."""
    loop_of_edge = np.full((NUM_CONFIGS, 12), -1, np.int8)
    num_loops = np.zeros(NUM_CONFIGS, np.int8)
    same_loop = np.zeros((NUM_CONFIGS, 6), bool)
    ambiguous = np.zeros((256, 6), bool)
    all_bits = np.arange(64)
    for code in range(256):
        amb = [f for f in range(6) if is_ambiguous(code, f)]
        ambiguous[code, amb] = True
        mask = sum(1 << f for f in amb)
        # Only the bits of ambiguous faces matter: solve each distinct combination once and copy
        # it to every face_bits value that agrees on those bits.
        for sub in range(1 << len(amb)):
            bits = sum(1 << f for i, f in enumerate(amb) if (sub >> i) & 1)
            loop, segs = trace_loops(code, bits)
            same = np.zeros(6, bool)
            for f in amb:
                (a0, _), (b0, _) = segs[f]
                same[f] = loop[a0] == loop[b0]
            rows = code + 256 * all_bits[(all_bits & mask) == bits]
            loop_of_edge[rows] = loop
            num_loops[rows] = loop.max() + 1
            same_loop[rows] = same
    return DMCTables(loop_of_edge, num_loops, same_loop, ambiguous)


def rotation_group() -> list[np.ndarray]:
    """The 24 proper rotations of the cube as corner permutations ``perm[c] = image of c``."""
    mats = []
    for p in ((0, 1, 2), (1, 2, 0), (2, 0, 1), (0, 2, 1), (2, 1, 0), (1, 0, 2)):
        for signs in np.ndindex(2, 2, 2):
            m = np.zeros((3, 3), int)
            for r in range(3):
                m[r, p[r]] = 1 - 2 * signs[r]
            if round(np.linalg.det(m)) == 1:
                mats.append(m)
    perms = []
    for m in mats:
        perm = np.empty(8, np.int64)
        for c in range(8):
            o = 2 * np.array(corner_offset(c)) - 1  # centred corner in {-1, 1}^3
            perm[c] = corner_index((m @ o + 1) // 2)
        perms.append(perm)
    return perms


def configuration_classes(with_complement: bool = False) -> list[list[int]]:
    """The 256 sign codes grouped into classes under the cube's rotations (and, if asked, swapping
    inside and outside): 23 classes, or the classic 15 of marching cubes with the complement."""
    perms = rotation_group()
    seen: set[int] = set()
    classes = []
    for code in range(256):
        if code in seen:
            continue
        members = set()
        for perm in perms:
            img = sum(1 << int(perm[c]) for c in range(8) if (code >> c) & 1)
            members.add(img)
            if with_complement:
                members.add(255 - img)
        seen |= members
        classes.append(sorted(members))
    return classes
