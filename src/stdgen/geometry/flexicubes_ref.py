"""A slow, obviously-correct FlexiCubes, one cube at a time in plain Python.

It follows the description in :mod:`stdgen.geometry.flexicubes` step by step with dictionaries
and scalar tensor arithmetic (so it is differentiable too), traces each cube's loops directly
with :func:`~stdgen.geometry.flexicubes_tables.trace_loops` instead of reading the tables, and
numbers vertices and faces in the same order as the fast version, so the tests compare the two
value for value and gradient for gradient. Use it on tiny grids only.
"""

from __future__ import annotations

import itertools

import torch

from stdgen.geometry.flexicubes import bounded_deformation, positive_weight
from stdgen.geometry.flexicubes_tables import (
    EDGE_CORNERS,
    FACE_CORNERS,
    PERP_AXES,
    corner_offset,
    is_ambiguous,
    trace_loops,
)
from stdgen.geometry.grid import Grid, IsoSurface

__all__ = ["flexicubes_reference"]


def flexicubes_reference(
    sdf: torch.Tensor,
    grid: Grid,
    *,
    deform: torch.Tensor | None = None,
    alpha: torch.Tensor | None = None,
    beta: torch.Tensor | None = None,
    gamma: torch.Tensor | None = None,
    training: bool = False,
    weight_bound: float = 0.99,
    deform_bound: float = 0.45,
) -> IsoSurface:
    """Same contract as :func:`stdgen.geometry.flexicubes.flexicubes`."""
    nx, ny, nz = grid.shape
    cx, cy, cz = grid.cells
    dt, dev = sdf.dtype, sdf.device
    values = sdf.detach()  # signs and face decisions carry no gradient
    origin = torch.tensor(grid.origin, dtype=dt, device=dev)
    spacing = torch.tensor(grid.spacing, dtype=dt, device=dev)

    def position(i, j, k):
        p = origin + torch.tensor([i, j, k], dtype=dt, device=dev) * spacing
        if deform is not None:
            p = p + bounded_deformation(deform[i, j, k], grid.spacing, deform_bound)
        return p

    def corners(cube):
        return [tuple(cube[d] + corner_offset(c)[d] for d in range(3)) for c in range(8)]

    # 1. Surface cubes and their sign codes.
    codes = {}
    for cube in itertools.product(range(cx), range(cy), range(cz)):
        code = sum(1 << c for c, v in enumerate(corners(cube)) if float(values[v]) < 0)
        if 0 < code < 255:
            codes[cube] = code

    # 2. Face resolution by the asymptotic decider, per cube and face.
    bits = {}
    for cube in codes:
        b = 0
        vals = [values[v] for v in corners(cube)]
        for f in range(6):
            f0, f1, f2, f3 = (vals[int(c)] for c in FACE_CORNERS[f])
            if (f0 * f2 - f1 * f3) * (f0 + f2 - f1 - f3) < 0:
                b |= 1 << f
        bits[cube] = b

    # 3. Repair faces where both cubes put both segments in one loop, in rounds.
    def same_loop(cube, f):
        code = codes[cube]
        if not is_ambiguous(code, f):
            return False
        loop, segs = trace_loops(code, bits[cube])
        (a0, _), (b0, _) = segs[f]
        return loop[a0] == loop[b0]

    while True:
        conflicts = []
        for cube in sorted(codes, key=lambda c: (c[0] * cy + c[1]) * cz + c[2]):
            for a in range(3):
                other = tuple(cube[d] + (d == a) for d in range(3))
                if other in codes and same_loop(cube, 2 * a + 1) and same_loop(other, 2 * a):
                    key = ((cube[0] * cy + cube[1]) * cz + cube[2]) * 3 + a
                    conflicts.append((key, cube, other, a))
        if not conflicts:
            break
        lowest = {}
        for key, cube, other, _ in conflicts:
            for c in (cube, other):
                lowest[c] = min(lowest.get(c, key), key)
        for key, cube, other, a in conflicts:
            if lowest[cube] == key and lowest[other] == key:
                bits[cube] ^= 1 << (2 * a + 1)
                bits[other] ^= 1 << (2 * a)

    # 4. Dual vertices: weighted centroid of each loop's (alpha-weighted) edge crossings.
    order = sorted(codes, key=lambda c: (c[0] * cy + c[1]) * cz + c[2])
    vertex_of = {}  # (cube, loop) -> vertex index
    vertices, crossings = [], []  # crossings: per vertex, list of crossing points
    loops_of = {}
    for cube in order:
        loop, _ = trace_loops(codes[cube], bits[cube])
        loops_of[cube] = loop
        cs = corners(cube)
        xs = [position(*v) for v in cs]
        ss = [sdf[v] for v in cs]
        al = [positive_weight(alpha[cube][c], weight_bound) if alpha is not None else 1.0 for c in range(8)]
        for lp in range(int(loop.max()) + 1):
            num = 0.0
            den = 0.0
            us = []
            for e in range(12):
                if loop[e] != lp:
                    continue
                c0, c1 = (int(c) for c in EDGE_CORNERS[e])
                w0, w1 = ss[c0] * al[c0], ss[c1] * al[c1]
                u = (w0 * xs[c1] - w1 * xs[c0]) / (w0 - w1)
                bw = positive_weight(beta[cube][e], weight_bound) if beta is not None else 1.0
                num = num + bw * u
                den = den + bw
                us.append(u)
            vertex_of[(cube, lp)] = len(vertices)
            vertices.append(num / den)
            crossings.append(us)

    # 5. Deviation loss.
    if vertices:
        devs = []
        for v, us in zip(vertices, crossings):
            d = [torch.sqrt(((u - v) ** 2).sum() + 1e-20) for u in us]
            mean = sum(d) / len(d)
            devs.append(sum((x - mean).abs() for x in d) / len(d))
        l_dev = sum(devs) / len(devs)
    else:
        l_dev = torch.zeros((), dtype=dt, device=dev)

    # 6. One quad per crossed interior grid edge, from the four cubes around it.
    quads, quad_cubes = [], []
    for cube in order:
        for a in range(3):
            u_ax, w_ax = PERP_AXES[a]
            own = 4 * a + 3
            if loops_of[cube][own] < 0:
                continue
            ring = []
            for du, dw in ((0, 0), (1, 0), (1, 1), (0, 1)):
                other = list(cube)
                other[u_ax] += du
                other[w_ax] += dw
                other = tuple(other)
                if other not in codes:
                    break
                local = 4 * a + (1 - du) + 2 * (1 - dw)
                ring.append((other, vertex_of[(other, int(loops_of[other][local]))]))
            if len(ring) != 4:
                continue
            start = corners(cube)[int(EDGE_CORNERS[own, 0])]
            if not float(values[start]) < 0:
                ring = ring[::-1]
            quads.append([r[1] for r in ring])
            quad_cubes.append([r[0] for r in ring])

    if not vertices:
        return IsoSurface.empty(dev, dt)
    verts = torch.stack(vertices)
    gam = [[positive_weight(gamma[c], weight_bound) if gamma is not None else torch.ones((), dtype=dt, device=dev)
            for c in qc] for qc in quad_cubes]
    faces = []
    extra = []
    for q, g in zip(quads, gam):
        if training:
            centre = sum(gi * verts[qi] for gi, qi in zip(g, q)) / sum(g)
            c = len(vertices) + len(extra)
            extra.append(centre)
            faces += [[q[0], q[1], c], [q[1], q[2], c], [q[2], q[3], c], [q[3], q[0], c]]
        else:
            p02, p13 = float((g[0] * g[2]).detach()), float((g[1] * g[3]).detach())
            if abs(p02 - p13) <= 1e-6 * max(p02, p13):
                v = verts.detach()
                use02 = float(((v[q[0]] - v[q[2]]) ** 2).sum()) <= float(((v[q[1]] - v[q[3]]) ** 2).sum())
            else:
                use02 = p02 > p13
            faces += [[q[0], q[1], q[2]], [q[0], q[2], q[3]]] if use02 else [[q[0], q[1], q[3]], [q[1], q[2], q[3]]]
    if extra:
        verts = torch.cat([verts, torch.stack(extra)])
    face_t = torch.tensor(faces, dtype=torch.int64, device=dev).reshape(-1, 3)
    return IsoSurface(verts, face_t, l_dev)
