"""Voxelising a layered character into one SDF grid plus per-voxel class probabilities.

This is what a perfect S-LRM would output, so it feeds the layer-extraction demo, the extraction
ceiling benchmark and (if wanted) 3D supervision.

**Layers are solids.** The S-LRM's field is one solid whose classes say which layer each inside
point belongs to; the renders that supervise it cannot see the air between a garment and the
skin. So the voxeliser works with the *cumulative* layer solids ``S_1 = body``,
``S_2 = body + clothes``, ``S_3 = everything`` (:data:`stdgen.structures.semantics.LAYER_SETS`): ``S_k`` is
``S_{k-1}`` plus the inside of layer k's meshes plus the air they hide, among points within
``fill_distance`` of layer k's surface: points in a thin gap between layer k and the layers
inside it (nearest points on both on opposite sides, and the two distances summing to at most
``max_gap``: the air in a sleeve or a trouser leg), and points from which the rays in all six
axis directions hit a surface of layers 1..k (enclosed). The space under a flared skirt (wide,
seen from below) stays outside, as does a crevice between the fingers (far from any garment).
Insides come from the ray winding number (:func:`stdgen.geometry.inside.contains_grid`, robust
to overlapping pieces).

Each solid gets a signed distance ``D_k``: the distance to the nearest surface of layers 1..k,
exact (point-triangle) within ``band`` cells and clamped beyond, negative in ``S_k``. The
character's field is ``f = D_3`` (optionally with far values from a distance transform).

**Classes** follow the layer order: a point belongs to the innermost solid containing it. Soft
probabilities carry the boundaries between classes with sub-voxel accuracy: with the scores

    g_body = -D_1,   g_clothes = min(D_1, -D_2),   g_hair = min(D_2, -D_3)

``p = softmax(g / (temperature * cell))``. The winning class is the innermost containing solid
(outside everything: the layer whose surface is nearest), and ``p_r - p_s`` varies smoothly across
a boundary, so the semantic-equivalent SDF puts the closing surface where the inner layer's
surface really is rather than on voxel faces. ``temperature = 0`` gives one-hot probabilities.

Limits: a layer thinner than about a cell between grid vertices (a skin-tight garment at 128^3)
has no grid vertex where it wins, so its own mesh cannot be extracted there; the union surface
is still right. Inside a solid, ``|D_k|`` is the distance to the nearest surface of *any* of
layers 1..k (an inner surface can be nearer than the solid's boundary), which pulls the outer
surface of a layer thinner than a cell slightly inwards. The extraction-ceiling benchmark
measures what these cost per resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from stdgen.geometry.grid import Grid
from stdgen.geometry.inside import contains_grid
from stdgen.structures.mesh import Mesh
from stdgen.structures.semantics import NUM_PARTS, PARTS, Part

__all__ = ["VoxelField", "character_grid", "class_probabilities", "mesh_sdf", "mesh_distance",
           "voxelize_character", "voxelize_parts"]

#: Default reach (metres) of a layer's fill: only hidden space this close to the layer's own
#: surface joins it (garments sit up to ~2 cm off the body; hair rests on the head).
DEFAULT_FILL_DISTANCE: dict[Part, float] = {Part.BODY: 0.0, Part.CLOTHES: 0.03, Part.HAIR: 0.03}
#: Default widest air gap (metres) between a layer and the layers inside it that the layer fills:
#: garments sit up to ~2 cm off the body; hair lies on the head and the clothes.
DEFAULT_MAX_GAP: dict[Part, float] = {Part.BODY: 0.0, Part.CLOTHES: 0.025, Part.HAIR: 0.01}


@dataclass
class VoxelField:
    """A voxelised character on ``grid``.

    ``sdf`` (X, Y, Z) float32 signed distance of the whole character in metres (negative inside);
    ``probs`` (X, Y, Z, K) float32 class probabilities in :class:`Part` order; ``layer_sdf``
    (K, X, Y, Z) float32 signed distances ``D_k`` of the cumulative layer solids (body, body +
    clothes, all), clamped to ``band`` cells.
    """

    grid: Grid
    sdf: np.ndarray
    probs: np.ndarray
    layer_sdf: np.ndarray

    @property
    def labels(self) -> np.ndarray:
        """(X, Y, Z) uint8 winning class."""
        return self.probs.argmax(-1).astype(np.uint8)


def character_grid(bounds: np.ndarray, resolution, *, margin: float = 0.03) -> Grid:
    """A grid with cubic cells around ``bounds`` (2, 3).

    ``resolution`` is one vertex count for all axes (e.g. 128) or three (e.g. (100, 150, 100): X,
    Y, Z). The box is ``bounds`` grown by ``margin`` times its largest side on every side, then
    widened along the axes that need it so that the cells are cubes; it stays centred on the
    character, so the field is positive on the grid's boundary and meshes come out closed.
    """
    bounds = np.asarray(bounds, np.float64).reshape(2, 3)
    shape = np.broadcast_to(np.asarray(resolution, int), (3,))
    if np.any(shape < 4):
        raise ValueError(f"resolution must be at least 4 per axis, got {tuple(shape)}")
    extent = bounds[1] - bounds[0]
    pad = margin * extent.max()
    need = extent + 2 * pad
    cell = float(np.max(need / (shape - 1)))
    centre = bounds.mean(0)
    half = 0.5 * cell * (shape - 1)
    return Grid(tuple(int(s) for s in shape), tuple(centre - half), (cell, cell, cell))


def mesh_distance(mesh: Mesh | None, grid: Grid, limit: float) -> tuple[np.ndarray, np.ndarray]:
    """(X, Y, Z) float64 unsigned distance to ``mesh``'s triangles, exact below ``limit`` metres and
    ``limit`` beyond, and (X, Y, Z) int32 index of the nearest triangle (-1 beyond ``limit``)."""
    dist = np.full(grid.shape, limit * limit, np.float64)
    nearest = np.full(grid.shape, -1, np.int32)
    if mesh is not None and not mesh.is_empty:
        tri = np.ascontiguousarray(mesh.vertices.astype(np.float64)[mesh.faces])
        _band_distance(tri, np.asarray(grid.origin, np.float64), np.asarray(grid.spacing, np.float64), limit,
                       dist, nearest)
    return np.sqrt(dist), nearest


def mesh_sdf(mesh: Mesh, grid: Grid, *, band: float = 3.0) -> np.ndarray:
    """(X, Y, Z) float32 signed distance to a closed ``mesh``, exact within ``band`` cells of its
    surface and clamped to ``+-band`` cells beyond (sign from the ray winding number)."""
    limit = band * float(min(grid.spacing))
    if mesh is None or mesh.is_empty:
        return np.full(grid.shape, limit, np.float32)
    inside = contains_grid(mesh, *grid.axes())
    d, _ = mesh_distance(mesh, grid, limit)
    return np.where(inside, -d, d).astype(np.float32)


def voxelize_parts(parts: dict[Part, Mesh], grid: Grid, *, band: float = 3.0, temperature: float = 1.0,
                   fill_distance: dict[Part, float] | None = None,
                   max_gap: dict[Part, float] | None = None, far_field: str = "clamp") -> VoxelField:
    """Voxelise part meshes (``{Part: Mesh}``, missing or empty parts allowed) on ``grid``.

    ``far_field``: beyond ``band`` cells (or the fill distances, if larger) the distances are
    clamped (``"clamp"``, the default: extraction only needs the sign there) or filled in from a
    Euclidean distance transform of the solid (``"edt"``, about a cell accurate; slower).

    ``fill_distance`` and ``max_gap`` override :data:`DEFAULT_FILL_DISTANCE` and
    :data:`DEFAULT_MAX_GAP` per part (metres; a fill distance of 0 turns filling off).
    """
    from scipy import ndimage

    from stdgen.geometry.inside import occluded_grid
    from stdgen.structures.mesh import merge_meshes

    h = float(min(grid.spacing))
    reach = dict(DEFAULT_FILL_DISTANCE)
    reach.update(fill_distance or {})
    gaps = dict(DEFAULT_MAX_GAP)
    gaps.update(max_gap or {})
    limit = max(band * h, 1.05 * max(*reach.values(), *gaps.values()))
    axes = grid.axes()
    inside = np.zeros(grid.shape, bool)
    dist = np.full(grid.shape, limit)  # to the surfaces of the layers so far
    nearest = np.full(grid.shape, -1, np.int32)  # their nearest triangle, indexing `tris`
    tris = np.zeros((0, 3, 3))
    so_far: list[Mesh] = []
    layers = []
    for part in PARTS:
        mesh = parts.get(part)
        if mesh is not None and not mesh.is_empty:
            own_tri = mesh.vertices.astype(np.float64)[mesh.faces]
            own_in = contains_grid(mesh, *axes)
            own, own_near = mesh_distance(mesh, grid, limit)
            fill = np.zeros(grid.shape, bool)
            if reach[part] > 0 and len(so_far):
                near_own = ~inside & ~own_in & (own <= reach[part])
                # Hidden from all six axis views (enclosed), or in a thin gap between this layer and
                # the ones inside it: the nearest points on both lie on opposite sides.
                fill = occluded_grid(merge_meshes([*so_far, mesh]), *axes) & near_own
                cand = near_own & (dist + own <= gaps[part]) & (nearest >= 0) & (own_near >= 0)
                idx = np.nonzero(cand)
                x = np.stack([axes[a][idx[a]] for a in range(3)], -1)
                q_in = _closest_points(np.ascontiguousarray(tris), nearest[idx], x)
                q_own = _closest_points(np.ascontiguousarray(own_tri), own_near[idx], x)
                between = ((q_in - x) * (q_own - x)).sum(1) < 0
                fill[tuple(i[between] for i in idx)] = True
            inside |= own_in | fill
            nearest = np.where(own < dist, own_near + len(tris), nearest).astype(np.int32)
            dist = np.minimum(dist, own)
            tris = np.concatenate([tris, own_tri])
            so_far.append(mesh)
        # -max(d, 1e-9): a grid point exactly on an inner surface still reads as inside.
        layers.append(np.where(inside, -np.maximum(dist, 1e-9), dist).astype(np.float32))
    layer_sdf = np.stack(layers)  # (K, X, Y, Z)
    sdf = layer_sdf[-1]
    if far_field == "edt":
        # Beyond the band, the union's distance from a Euclidean distance transform of the solid
        # (accurate to about a cell).
        solid = sdf < 0
        far = np.where(solid, -ndimage.distance_transform_edt(solid, sampling=grid.spacing),
                       ndimage.distance_transform_edt(~solid, sampling=grid.spacing))
        far = far - np.sign(far) * 0.5 * h
        in_band = np.abs(sdf) < limit
        sdf = np.where(in_band, sdf, np.where(solid, np.minimum(far, -limit), np.maximum(far, limit)))
    elif far_field != "clamp":
        raise ValueError(f"far_field: expected clamp or edt, got {far_field!r}")
    probs = class_probabilities(layer_sdf, temperature * h)
    return VoxelField(grid, sdf.astype(np.float32), probs, layer_sdf)


def class_probabilities(layer_sdf: np.ndarray, tau: float) -> np.ndarray:
    """(K, ...) cumulative layer signed distances -> (..., K) float32 probabilities (see module
    docstring)."""
    d = np.asarray(layer_sdf, np.float32)
    scores = np.empty(d.shape[1:] + (NUM_PARTS,), np.float32)
    scores[..., 0] = -d[0]
    for k in range(1, NUM_PARTS):
        np.minimum(d[k - 1], -d[k], out=scores[..., k])
    if tau <= 0:
        out = np.zeros(scores.shape, np.float32)
        np.put_along_axis(out, scores.argmax(-1)[..., None], 1.0, -1)
        return out
    scores -= scores.max(-1, keepdims=True)
    scores *= np.float32(1.0 / tau)
    np.exp(scores, out=scores)
    scores /= scores.sum(-1, keepdims=True)
    return scores


def voxelize_character(character, resolution=128, *, margin: float = 0.03, band: float = 3.0,
                       temperature: float = 1.0, fill_distance: dict[Part, float] | None = None,
                       max_gap: dict[Part, float] | None = None, far_field: str = "clamp",
                       grid: Grid | None = None) -> VoxelField:
    """Voxelise a :class:`~stdgen.structures.character.Character` (its posed parts) at ``resolution``
    (see :func:`character_grid`), or on ``grid`` when given."""
    parts = {p: character.part(p) for p in PARTS}
    if grid is None:
        grid = character_grid(character.bounds(), resolution, margin=margin)
    return voxelize_parts(parts, grid, band=band, temperature=temperature, fill_distance=fill_distance,
                          max_gap=max_gap, far_field=far_field)


# --- kernels ----------------------------------------------------------------------------------


@numba.njit(cache=True, inline="always")
def _dot(ax, ay, az, bx, by, bz):
    return ax * bx + ay * by + az * bz


@numba.njit(cache=True, inline="always")
def _closest_on_segment(px, py, pz, ax, ay, az, bx, by, bz):
    dx, dy, dz = bx - ax, by - ay, bz - az
    den = dx * dx + dy * dy + dz * dz
    s = 0.0 if den == 0.0 else min(max(((px - ax) * dx + (py - ay) * dy + (pz - az) * dz) / den, 0.0), 1.0)
    return ax + s * dx, ay + s * dy, az + s * dz


@numba.njit(cache=True)
def _closest_point_degenerate(px, py, pz, tri, t):
    """Closest point of a zero-area triangle: the nearest of its three edges as segments."""
    best = np.inf
    rx, ry, rz = 0.0, 0.0, 0.0
    for e in range(3):
        a, b = e, (e + 1) % 3
        qx, qy, qz = _closest_on_segment(px, py, pz, tri[t, a, 0], tri[t, a, 1], tri[t, a, 2],
                                         tri[t, b, 0], tri[t, b, 1], tri[t, b, 2])
        d = (px - qx) ** 2 + (py - qy) ** 2 + (pz - qz) ** 2
        if d < best:
            best, rx, ry, rz = d, qx, qy, qz
    return rx, ry, rz


@numba.njit(cache=True)
def _closest_point(px, py, pz, tri, t):
    """Closest point of triangle t to p: in the interior, on an edge or at a vertex, the region
    picked from the signs of dot products (barycentric regions)."""
    ax, ay, az = tri[t, 0, 0], tri[t, 0, 1], tri[t, 0, 2]
    bx, by, bz = tri[t, 1, 0], tri[t, 1, 1], tri[t, 1, 2]
    cx, cy, cz = tri[t, 2, 0], tri[t, 2, 1], tri[t, 2, 2]
    abx, aby, abz = bx - ax, by - ay, bz - az
    acx, acy, acz = cx - ax, cy - ay, cz - az
    nx, ny, nz = aby * acz - abz * acy, abz * acx - abx * acz, abx * acy - aby * acx
    if nx * nx + ny * ny + nz * nz <= 1e-24 * _dot(abx, aby, abz, abx, aby, abz) * _dot(acx, acy, acz, acx, acy, acz):
        # Zero area (two corners equal, or all three in a line): the region tests below assume a
        # proper triangle, so take the nearest edge instead.
        return _closest_point_degenerate(px, py, pz, tri, t)
    apx, apy, apz = px - ax, py - ay, pz - az
    d1 = _dot(abx, aby, abz, apx, apy, apz)
    d2 = _dot(acx, acy, acz, apx, apy, apz)
    if d1 <= 0.0 and d2 <= 0.0:  # vertex a
        qx, qy, qz = ax, ay, az
    else:
        bpx, bpy, bpz = px - bx, py - by, pz - bz
        d3 = _dot(abx, aby, abz, bpx, bpy, bpz)
        d4 = _dot(acx, acy, acz, bpx, bpy, bpz)
        cpx, cpy, cpz = px - cx, py - cy, pz - cz
        d5 = _dot(abx, aby, abz, cpx, cpy, cpz)
        d6 = _dot(acx, acy, acz, cpx, cpy, cpz)
        vc = d1 * d4 - d3 * d2
        vb = d5 * d2 - d1 * d6
        va = d3 * d6 - d5 * d4
        if d3 >= 0.0 and d4 <= d3:  # vertex b
            qx, qy, qz = bx, by, bz
        elif vc <= 0.0 and d1 >= 0.0 and d3 <= 0.0:  # edge ab
            s = d1 / (d1 - d3) if d1 != d3 else 0.0  # equal only for a degenerate edge
            qx, qy, qz = ax + s * abx, ay + s * aby, az + s * abz
        elif d6 >= 0.0 and d5 <= d6:  # vertex c
            qx, qy, qz = cx, cy, cz
        elif vb <= 0.0 and d2 >= 0.0 and d6 <= 0.0:  # edge ac
            s = d2 / (d2 - d6) if d2 != d6 else 0.0
            qx, qy, qz = ax + s * acx, ay + s * acy, az + s * acz
        elif va <= 0.0 and (d4 - d3) >= 0.0 and (d5 - d6) >= 0.0:  # edge bc
            den = (d4 - d3) + (d5 - d6)
            s = (d4 - d3) / den if den != 0.0 else 0.0
            qx, qy, qz = bx + s * (cx - bx), by + s * (cy - by), bz + s * (cz - bz)
        else:  # interior
            den = va + vb + vc
            if den == 0.0:  # degenerate triangle: fall back to vertex a
                qx, qy, qz = ax, ay, az
            else:
                v = vb / den
                w = vc / den
                qx = ax + v * abx + w * acx
                qy = ay + v * aby + w * acy
                qz = az + v * abz + w * acz
    return qx, qy, qz


@numba.njit(cache=True)
def point_triangle_dist2(px, py, pz, tri, t):
    """Squared distance from point ``(px, py, pz)`` to triangle ``t`` of ``tri`` (F, 3, 3) (numba)."""
    qx, qy, qz = _closest_point(px, py, pz, tri, t)
    dx, dy, dz = px - qx, py - qy, pz - qz
    return dx * dx + dy * dy + dz * dz


@numba.njit(cache=True)
def _closest_points(tri, which, pts):
    """(N, 3) closest points on triangles ``which`` (N,) to ``pts`` (N, 3)."""
    out = np.empty_like(pts)
    for n in range(pts.shape[0]):
        qx, qy, qz = _closest_point(pts[n, 0], pts[n, 1], pts[n, 2], tri, which[n])
        out[n, 0], out[n, 1], out[n, 2] = qx, qy, qz
    return out


def closest_points_on_triangles(tri: np.ndarray, which: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 3) float64 closest points on triangles ``tri[which]`` ((F, 3, 3); ``which`` (N,) indices)
    to ``points`` (N, 3)."""
    return _closest_points(np.ascontiguousarray(tri, np.float64), np.ascontiguousarray(which, np.int64),
                           np.ascontiguousarray(points, np.float64))


@numba.njit(cache=True)
def _band_distance(tri, origin, spacing, limit, dist, nearest):
    nx, ny, nz = dist.shape
    lim2 = limit * limit
    for t in range(tri.shape[0]):
        lo0 = min(tri[t, 0, 0], tri[t, 1, 0], tri[t, 2, 0]) - limit
        hi0 = max(tri[t, 0, 0], tri[t, 1, 0], tri[t, 2, 0]) + limit
        lo1 = min(tri[t, 0, 1], tri[t, 1, 1], tri[t, 2, 1]) - limit
        hi1 = max(tri[t, 0, 1], tri[t, 1, 1], tri[t, 2, 1]) + limit
        lo2 = min(tri[t, 0, 2], tri[t, 1, 2], tri[t, 2, 2]) - limit
        hi2 = max(tri[t, 0, 2], tri[t, 1, 2], tri[t, 2, 2]) + limit
        i0 = max(int(np.ceil((lo0 - origin[0]) / spacing[0])), 0)
        i1 = min(int(np.floor((hi0 - origin[0]) / spacing[0])), nx - 1)
        j0 = max(int(np.ceil((lo1 - origin[1]) / spacing[1])), 0)
        j1 = min(int(np.floor((hi1 - origin[1]) / spacing[1])), ny - 1)
        k0 = max(int(np.ceil((lo2 - origin[2]) / spacing[2])), 0)
        k1 = min(int(np.floor((hi2 - origin[2]) / spacing[2])), nz - 1)
        for i in range(i0, i1 + 1):
            px = origin[0] + i * spacing[0]
            for j in range(j0, j1 + 1):
                py = origin[1] + j * spacing[1]
                for k in range(k0, k1 + 1):
                    pz = origin[2] + k * spacing[2]
                    d2 = point_triangle_dist2(px, py, pz, tri, t)
                    if d2 < dist[i, j, k] and d2 < lim2:
                        dist[i, j, k] = d2
                        nearest[i, j, k] = t
