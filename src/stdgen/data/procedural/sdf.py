"""Signed distance functions of blended primitives (round cones and ellipsoids), compiled with numba.

A body is a smooth union of primitives; its surface is the zero level set of ``f``, and garments
sit on positive level sets of the same ``f`` (an offset surface that never crosses the body).

Primitive ``i`` is evaluated in its own frame: ``q = m[i] @ (p - a[i])`` (``m`` rotates and may
squash the primitive: a squashed round cone has an elliptic cross-section). Distances are then in
those local units, which are metres when ``m`` is a rotation.

Blending: the exponential smooth minimum ``smin_k(d) = -k log sum exp(-d / k)``, first within
each group (with the group's ``k``: small for fingers and face details, large for the torso),
then across groups with ``k_global``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np

KIND_ROUND_CONE = 0
KIND_ELLIPSOID = 1
#: An ellipsoid whose x extent tapers below its centre and whose bottom is sheared forwards (+z
#: local): ``r = (taper, shear)``. Makes an anime face: round on top, a V-shaped jaw, a forward chin.
KIND_TAPERED = 2


@dataclass
class Primitives:
    """P primitives in a fixed order (the order is the same for every character, so a template
    vertex can remember which primitives shape it).

    ``kind`` (P,) int32; ``a`` (P, 3) origin (round cone: first sphere centre; ellipsoid: centre);
    ``b`` (P, 3) round cone second sphere centre; ``r`` (P, 2) round cone radii; ``radii`` (P, 3)
    ellipsoid semi-axes (local frame); ``m`` (P, 3, 3) world -> local linear map; ``group`` (P,)
    int32; ``group_k`` (G,) blend radius per group; ``names`` and ``bones`` (P,) the primitive's
    name and the skeleton bone it belongs to.
    """

    kind: np.ndarray
    a: np.ndarray
    b: np.ndarray
    r: np.ndarray
    radii: np.ndarray
    m: np.ndarray
    group: np.ndarray
    group_k: np.ndarray
    k_global: float
    names: list[str] = field(default_factory=list)
    bones: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.kind)

    def index(self, name: str) -> int:
        return self.names.index(name)


class PrimitiveBuilder:
    """Collects primitives by name, in call order, then packs them into :class:`Primitives`."""

    def __init__(self) -> None:
        self._rows: list[tuple] = []
        self._groups: dict[str, tuple[int, float]] = {}

    def group(self, name: str, k: float) -> None:
        self._groups[name] = (len(self._groups), k)

    def round_cone(self, name: str, bone: str, group: str, a, b, r1: float, r2: float, m=None) -> None:
        self._rows.append((name, bone, group, KIND_ROUND_CONE, a, b, (r1, r2), (1.0, 1.0, 1.0), m))

    def ellipsoid(self, name: str, bone: str, group: str, center, radii, m=None) -> None:
        self._rows.append((name, bone, group, KIND_ELLIPSOID, center, center, (0.0, 0.0), radii, m))

    def tapered(self, name: str, bone: str, group: str, center, radii, taper: float, shear: float, m=None) -> None:
        self._rows.append((name, bone, group, KIND_TAPERED, center, center, (taper, shear), radii, m))

    def build(self, k_global: float) -> Primitives:
        rows = self._rows
        gk = np.zeros(len(self._groups))
        for gi, k in self._groups.values():
            gk[gi] = k
        return Primitives(
            kind=np.array([r[3] for r in rows], np.int32),
            a=np.array([r[4] for r in rows], np.float64).reshape(-1, 3),
            b=np.array([r[5] for r in rows], np.float64).reshape(-1, 3),
            r=np.array([r[6] for r in rows], np.float64).reshape(-1, 2),
            radii=np.array([r[7] for r in rows], np.float64).reshape(-1, 3),
            m=np.array([np.eye(3) if r[8] is None else r[8] for r in rows], np.float64).reshape(-1, 3, 3),
            group=np.array([self._groups[r[2]][0] for r in rows], np.int32),
            group_k=gk,
            k_global=float(k_global),
            names=[r[0] for r in rows],
            bones=[r[1] for r in rows],
        )


@numba.njit(cache=True, fastmath=True)
def _prim_distance(px, py, pz, kind, a, b, r, radii, m, grad):
    """Distance from one point to one primitive (approximate for ellipsoids and squashed cones);
    its gradient goes to ``grad`` (3,)."""
    dx, dy, dz = px - a[0], py - a[1], pz - a[2]
    qx = m[0, 0] * dx + m[0, 1] * dy + m[0, 2] * dz
    qy = m[1, 0] * dx + m[1, 1] * dy + m[1, 2] * dz
    qz = m[2, 0] * dx + m[2, 1] * dy + m[2, 2] * dz
    lx, ly, lz = 0.0, 0.0, 0.0  # gradient in the local frame
    if kind == KIND_ELLIPSOID or kind == KIND_TAPERED:
        rx, ry, rz = radii[0], radii[1], radii[2]
        sx, ds, dz = 1.0, 0.0, 0.0
        if kind == KIND_TAPERED:
            # Taper from 30 % of the way down to the bottom (t: 0 -> 1), quadratically.
            t = (-qy / ry - 0.3) / 0.7
            if t > 0.0:
                dt = -1.0 / (0.7 * ry)
                if t > 1.0:
                    t, dt = 1.0, 0.0
                sx = 1.0 - r[0] * t * t
                ds = -r[0] * 2.0 * t * dt
                dz = r[1] * ry * 2.0 * t * dt
                qz = qz - r[1] * ry * t * t
                qx = qx / sx
        ex, ey, ez = qx / rx, qy / ry, qz / rz
        k0 = np.sqrt(ex * ex + ey * ey + ez * ez)
        fx, fy, fz = ex / rx, ey / ry, ez / rz
        k1 = np.sqrt(fx * fx + fy * fy + fz * fz)
        if k1 < 1e-12 or k0 < 1e-12:
            grad[0], grad[1], grad[2] = 0.0, 1.0, 0.0
            return -min(rx, min(ry, rz))
        d = k0 * (k0 - 1.0) / k1
        # d = k0 (k0 - 1) / k1 with dk0/dq = q / (r^2 k0), dk1/dq = q / (r^4 k1).
        c0 = (2.0 * k0 - 1.0) / (k1 * k0)
        c1 = k0 * (k0 - 1.0) / (k1 * k1 * k1)
        lx = c0 * qx / (rx * rx) - c1 * qx / (rx * rx * rx * rx)
        ly = c0 * qy / (ry * ry) - c1 * qy / (ry * ry * ry * ry)
        lz = c0 * qz / (rz * rz) - c1 * qz / (rz * rz * rz * rz)
        if kind == KIND_TAPERED:
            # Chain rule through q' = (qx / s(qy), qy, qz - shift(qy)); here qx already holds qx / s.
            ly = ly - lx * qx * ds / sx - lz * dz
            lx = lx / sx
    else:
        # Round cone: the convex hull of sphere (0, r1) and sphere (c, r2), c = m (b - a).
        bx, by, bz = b[0] - a[0], b[1] - a[1], b[2] - a[2]
        cx = m[0, 0] * bx + m[0, 1] * by + m[0, 2] * bz
        cy = m[1, 0] * bx + m[1, 1] * by + m[1, 2] * bz
        cz = m[2, 0] * bx + m[2, 1] * by + m[2, 2] * bz
        length = np.sqrt(cx * cx + cy * cy + cz * cz)
        r1, r2 = r[0], r[1]
        if length < 1e-9:
            length = 1e-9
        ax, ay, az = cx / length, cy / length, cz / length
        h = qx * ax + qy * ay + qz * az  # along the axis
        wx, wy, wz = qx - h * ax, qy - h * ay, qz - h * az
        rho = np.sqrt(wx * wx + wy * wy + wz * wz)
        if rho > 1e-12:
            wx, wy, wz = wx / rho, wy / rho, wz / rho
        else:
            wx, wy, wz = 0.0, 0.0, 0.0
        s = (r1 - r2) / length  # sin of the half-opening angle
        s = min(max(s, -0.999999), 0.999999)
        c = np.sqrt(1.0 - s * s)
        u = h * c - rho * s  # coordinate along the slanted tangent line
        if u < 0.0:  # nearest to sphere 1
            n = np.sqrt(qx * qx + qy * qy + qz * qz)
            d = n - r1
            if n > 1e-12:
                lx, ly, lz = qx / n, qy / n, qz / n
        elif u > length * c:  # nearest to sphere 2
            ex, ey, ez = qx - cx, qy - cy, qz - cz
            n = np.sqrt(ex * ex + ey * ey + ez * ez)
            d = n - r2
            if n > 1e-12:
                lx, ly, lz = ex / n, ey / n, ez / n
        else:
            d = h * s + rho * c - r1
            lx, ly, lz = s * ax + c * wx, s * ay + c * wy, s * az + c * wz
    # World gradient: m^T (local gradient).
    grad[0] = m[0, 0] * lx + m[1, 0] * ly + m[2, 0] * lz
    grad[1] = m[0, 1] * lx + m[1, 1] * ly + m[2, 1] * lz
    grad[2] = m[0, 2] * lx + m[1, 2] * ly + m[2, 2] * lz
    return d


@numba.njit(cache=True, fastmath=True)
def _evaluate(points, kind, a, b, r, radii, m, group, group_k, k_global, subsets, out_f, out_g):
    """Grouped smooth union and its gradient at each point, over the point's subset of primitives."""
    nprim = kind.shape[0]
    all_subset = np.arange(nprim).astype(np.int32)
    width = nprim if subsets.shape[0] == 0 else subsets.shape[1]
    dist = np.empty(width)
    dgrad = np.empty((width, 3))
    gid = np.empty(width, np.int64)
    gmin = np.empty(width)  # per local group
    gval = np.empty(width, np.int64)
    gsum = np.empty(width)
    ggrad = np.empty((width, 3))
    gk = np.empty(width)
    gg = np.empty(3)
    for n in range(points.shape[0]):
        sub = all_subset if subsets.shape[0] == 0 else subsets[n]
        x, y, z = points[n, 0], points[n, 1], points[n, 2]
        ng = 0
        for t in range(width):
            i = sub[t]
            if i < 0:
                gid[t] = -1
                continue
            dist[t] = _prim_distance(x, y, z, kind[i], a[i], b[i], r[i], radii[i], m[i], gg)
            dgrad[t, 0], dgrad[t, 1], dgrad[t, 2] = gg[0], gg[1], gg[2]
            # Map the primitive's group to a local slot (a point sees only a few groups).
            g = group[i]
            slot = -1
            for q in range(ng):
                if gval[q] == g:
                    slot = q
                    break
            if slot < 0:
                slot = ng
                ng += 1
                gval[slot] = g
                gk[slot] = group_k[g]
                gmin[slot] = 1e18
            gid[t] = slot
            if dist[t] < gmin[slot]:
                gmin[slot] = dist[t]
        for q in range(ng):
            gsum[q] = 0.0
            ggrad[q, 0], ggrad[q, 1], ggrad[q, 2] = 0.0, 0.0, 0.0
        for t in range(width):
            q = gid[t]
            if q < 0:
                continue
            e = np.exp(-(dist[t] - gmin[q]) / gk[q])
            gsum[q] += e
            ggrad[q, 0] += e * dgrad[t, 0]
            ggrad[q, 1] += e * dgrad[t, 1]
            ggrad[q, 2] += e * dgrad[t, 2]
        fmin = 1e18
        for q in range(ng):
            gmin[q] = gmin[q] - gk[q] * np.log(gsum[q])  # the group's smooth minimum
            if gmin[q] < fmin:
                fmin = gmin[q]
        total = 0.0
        fx, fy, fz = 0.0, 0.0, 0.0
        for q in range(ng):
            e = np.exp(-(gmin[q] - fmin) / k_global)
            total += e
            fx += e * ggrad[q, 0] / gsum[q]
            fy += e * ggrad[q, 1] / gsum[q]
            fz += e * ggrad[q, 2] / gsum[q]
        out_f[n] = fmin - k_global * np.log(total)
        if out_g.shape[0] > 0:
            out_g[n, 0], out_g[n, 1], out_g[n, 2] = fx / total, fy / total, fz / total


def evaluate(prims: Primitives, points: np.ndarray, subsets: np.ndarray | None = None,
             grad: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Field value (N,) and, with ``grad``, its gradient (N, 3) at (N, 3) points.

    ``subsets`` (N, K) int32 restricts each point to K primitive indices (-1 = none): primitives
    far from a point contribute nothing to the smooth union, so a template vertex only needs the
    few that shaped it.
    """
    pts = np.ascontiguousarray(points, np.float64).reshape(-1, 3)
    sub = np.zeros((0, 1), np.int32) if subsets is None else np.ascontiguousarray(subsets, np.int32)
    f = np.empty(len(pts))
    g = np.empty((len(pts), 3)) if grad else np.empty((0, 3))
    _evaluate(pts, prims.kind, prims.a, prims.b, prims.r, prims.radii, prims.m, prims.group, prims.group_k,
              prims.k_global, sub, f, g)
    return f, (g if grad else None)


@numba.njit(cache=True, fastmath=True)
def _distances(points, kind, a, b, r, radii, m, out):
    g = np.empty(3)
    for n in range(points.shape[0]):
        for i in range(kind.shape[0]):
            out[n, i] = _prim_distance(points[n, 0], points[n, 1], points[n, 2], kind[i], a[i], b[i], r[i],
                                       radii[i], m[i], g)


def primitive_distances(prims: Primitives, points: np.ndarray) -> np.ndarray:
    """(N, P) distance from every point to every primitive (unblended)."""
    pts = np.ascontiguousarray(points, np.float64).reshape(-1, 3)
    out = np.empty((len(pts), len(prims)))
    _distances(pts, prims.kind, prims.a, prims.b, prims.r, prims.radii, prims.m, out)
    return out


def project_to_level(prims: Primitives, points: np.ndarray, level, subsets: np.ndarray | None = None,
                     iterations: int = 3, max_step: float | None = None, return_grad: bool = False):
    """Move points onto the level set ``f = level`` by Newton steps along the gradient.

    ``level`` is a scalar or (N,) per point; ``max_step`` caps each step's length (metres) so a
    bad start cannot fling a point across the body. With ``return_grad`` also returns the field
    gradient (N, 3) at the last step's start (a good normal).
    """
    p = np.asarray(points, np.float64).copy()
    level = np.broadcast_to(np.asarray(level, np.float64), (len(p),))
    g = np.zeros_like(p)
    for _ in range(iterations):
        f, g = evaluate(prims, p, subsets, grad=True)
        g2 = np.maximum((g * g).sum(1), 1e-12)
        step = ((f - level) / g2)[:, None] * g
        if max_step is not None:
            length = np.linalg.norm(step, axis=1, keepdims=True)
            step *= np.minimum(1.0, max_step / np.maximum(length, 1e-12))
        p -= step
    return (p, g) if return_grad else p


def select(prims: Primitives, keep) -> Primitives:
    """The primitives whose index is in ``keep`` (or where the boolean mask ``keep`` is set), with
    the same groups: a cheaper field for queries that only care about part of the body."""
    idx = np.flatnonzero(keep) if np.asarray(keep).dtype == bool else np.asarray(keep, np.int64)
    return Primitives(kind=prims.kind[idx], a=prims.a[idx], b=prims.b[idx], r=prims.r[idx],
                      radii=prims.radii[idx], m=prims.m[idx], group=prims.group[idx], group_k=prims.group_k,
                      k_global=prims.k_global, names=[prims.names[i] for i in idx],
                      bones=[prims.bones[i] for i in idx])


def ellipsoids(centers: np.ndarray, radii: np.ndarray, rotations: np.ndarray, bone: str, k: float = 0.004
               ) -> Primitives:
    """A field of (rotated) ellipsoids in one group (for solid accessories: bows, buns)."""
    n = len(centers)
    m = np.transpose(np.asarray(rotations, np.float64).reshape(n, 3, 3), (0, 2, 1))  # world -> local: R^T
    return Primitives(kind=np.full(n, KIND_ELLIPSOID, np.int32), a=np.asarray(centers, np.float64).reshape(n, 3),
                      b=np.asarray(centers, np.float64).reshape(n, 3), r=np.zeros((n, 2)),
                      radii=np.asarray(radii, np.float64).reshape(n, 3), m=m, group=np.zeros(n, np.int32),
                      group_k=np.array([k]), k_global=k, names=[f"solid{i}" for i in range(n)], bones=[bone] * n)


def concat(a: Primitives, b: Primitives) -> Primitives:
    """The union of two fields (b's groups renumbered after a's)."""
    g = len(a.group_k)
    return Primitives(kind=np.concatenate([a.kind, b.kind]), a=np.concatenate([a.a, b.a]),
                      b=np.concatenate([a.b, b.b]), r=np.concatenate([a.r, b.r]),
                      radii=np.concatenate([a.radii, b.radii]), m=np.concatenate([a.m, b.m]),
                      group=np.concatenate([a.group, b.group + g]).astype(np.int32),
                      group_k=np.concatenate([a.group_k, b.group_k]), k_global=a.k_global,
                      names=a.names + b.names, bones=a.bones + b.bones)
