"""The body: a template meshed once from the canonical body's SDF, deformed per character.

Meshing an SDF for every character would cost seconds; instead the canonical body (average
female sliders) is meshed once per process by marching cubes, decimated, skinned, and UV-mapped
(a planar face chart for the painted face plus an xatlas atlas for the rest). A character's body
is the template with its vertices moved: first by per-bone affine maps from the canonical to the
character's skeleton (a good start), then by Newton steps onto the zero level set of the
character's own SDF. The topology, UVs and skin weights stay the template's, so the result is
watertight and manifold whenever the template is, and garments and textures can be defined once
in template space.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from stdgen.data.procedural import sdf
from stdgen.data.procedural.anatomy import Anatomy, anatomy, body_primitives
from stdgen.data.procedural.params import BodyParams
from stdgen.structures.mesh import vertex_normals

#: Primitives remembered per template vertex (those within blending range matter).
SUBSET_SIZE = 6
#: Marching-cubes cell size for the canonical 1.6 m body (metres) and decimation target.
TEMPLATE_STEP = 0.0055
TEMPLATE_FACES = 24000
#: Side of the face chart and of the body atlas in the template UV layout (texels per side).
UV_TILE = 512


@dataclass
class BodyTemplate:
    """The canonical body mesh and everything derived from it once.

    ``vertices`` (N, 3) float64 T-pose positions; ``faces`` (F, 3) int32; ``subsets`` (N, K) the
    primitives near each vertex; ``skin_joints``/``skin_weights`` (N, 4); ``bone`` (N,) dominant
    bone index; ``uvs`` (M, 2) and ``uv_faces`` (F, 3) in the layout ``[face chart | body atlas]``
    (u in [0, 0.5) is the face, [0.5, 1] the rest); ``texel_pos`` (S, 2S, 3) the template position
    under every texel (dilated into the gutters so painting never bleeds background);
    ``face_chart`` (4,) x0, y0, size (metres) of the face chart's square in the XY plane and the
    face's z; ``params``/``anatomy``/``prims`` the canonical body. ``garment_*``: a second layout
    (S, S) with every triangle in the per-bone atlas (no face chart), used by layers cut from the
    body (garments, the scalp cap), with its own texel maps.
    """

    params: BodyParams
    anatomy: Anatomy
    prims: sdf.Primitives
    vertices: np.ndarray
    faces: np.ndarray
    subsets: np.ndarray
    skin_joints: np.ndarray
    skin_weights: np.ndarray
    bone: np.ndarray
    uvs: np.ndarray
    uv_faces: np.ndarray
    texel_pos: np.ndarray
    texel_face: np.ndarray
    texel_normal: np.ndarray
    texel_bone: np.ndarray
    face_chart: np.ndarray
    adjacency: sp.csr_matrix
    garment_uvs: np.ndarray
    garment_uv_faces: np.ndarray
    garment_texel_pos: np.ndarray
    garment_texel_normal: np.ndarray
    garment_texel_bone: np.ndarray


# -- meshing -----------------------------------------------------------------------------------------
def mesh_sdf(prims: sdf.Primitives, lo: np.ndarray, hi: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes of the field's zero level set inside the box ``[lo, hi]`` at cell size ``step``.

    The field is computed exactly only near the surface: first on a grid 4x coarser, then at the
    fine points of coarse cells within reach of the surface, each with the few primitives nearest
    its coarse cell (the others add nothing to the smooth union there). Elsewhere the fine grid
    takes the coarse value (only its sign matters to marching cubes). Returns vertices (N, 3) and
    outward-wound faces (F, 3).
    """
    from skimage.measure import marching_cubes

    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    coarse = 4
    shape = np.ceil((hi - lo) / step).astype(int) + 1
    cshape = (shape + coarse - 1) // coarse
    caxes = [lo[i] + step * coarse * (np.arange(cshape[i]) + 0.5) for i in range(3)]  # coarse cell centres
    cgrid = np.stack(np.meshgrid(*caxes, indexing="ij"), -1).reshape(-1, 3)
    dist = sdf.primitive_distances(prims, cgrid)
    cf = sdf.evaluate(prims, cgrid)[0]
    reach = np.sqrt(3) * 0.5 * step * coarse + 0.01
    near_cells = np.flatnonzero(np.abs(cf) < reach)
    k = 10
    subsets = np.argsort(dist[near_cells], 1)[:, :k].astype(np.int32)
    f = np.repeat(np.repeat(np.repeat(cf.reshape(tuple(cshape)), coarse, 0), coarse, 1), coarse, 2)
    f = f[: shape[0], : shape[1], : shape[2]].copy()
    cidx = np.stack(np.unravel_index(near_cells, tuple(cshape)), 1)
    off = np.stack(np.meshgrid(*[np.arange(coarse)] * 3, indexing="ij"), -1).reshape(-1, 3)
    fidx = (cidx[:, None, :] * coarse + off[None]).reshape(-1, 3)
    inside = np.all(fidx < shape, axis=1)
    fidx = fidx[inside]
    fsub = np.repeat(subsets, len(off), axis=0)[inside]
    f[fidx[:, 0], fidx[:, 1], fidx[:, 2]] = sdf.evaluate(prims, lo + fidx * step, fsub)[0]
    verts, faces, _, _ = marching_cubes(f.astype(np.float32), 0.0, spacing=(step, step, step))
    return verts.astype(np.float64) + lo, faces.astype(np.int32)


def vertex_adjacency(faces: np.ndarray, n: int) -> sp.csr_matrix:
    """(N, N) symmetric 0/1 adjacency of mesh vertices."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    a = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n)).tocsr()
    a = ((a + a.T) > 0).astype(np.float64)
    return a.tocsr()


def smooth_vertices(v: np.ndarray, adjacency: sp.csr_matrix, iterations: int, lam: float = 0.5) -> np.ndarray:
    """Uniform Laplacian smoothing (used to even out vertex spacing before projecting back)."""
    deg = np.asarray(adjacency.sum(1)).reshape(-1, 1)
    for _ in range(iterations):
        v = v + lam * (adjacency @ v / np.maximum(deg, 1) - v)
    return v


def relax_folds(v: np.ndarray, faces: np.ndarray, adjacency: sp.csr_matrix, prims: sdf.Primitives,
                subsets: np.ndarray, rounds: int = 4, min_cos: float = 0.2) -> np.ndarray:
    """Smooth away folded triangles (whose normal disagrees with the SDF gradient, which happens
    where a projection crowds vertices into a crease such as the armpit): their vertices and
    neighbours move towards their neighbours' average and back onto the surface."""
    v = v.copy()
    deg = np.maximum(np.asarray(adjacency.sum(1)).reshape(-1), 1)
    check = np.arange(len(faces))  # faces to test: all at first, then those around moved vertices
    for _ in range(rounds):
        ff = faces[check]
        fn = np.cross(v[ff[:, 1]] - v[ff[:, 0]], v[ff[:, 2]] - v[ff[:, 0]])
        fn /= np.maximum(np.linalg.norm(fn, axis=1, keepdims=True), 1e-20)
        _, g = sdf.evaluate(prims, v[ff].mean(1), subsets[ff[:, 0]], grad=True)
        g /= np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-20)
        bad = check[(fn * g).sum(1) < min_cos]
        if not len(bad):
            break
        sel = np.zeros(len(v), bool)
        sel[faces[bad].reshape(-1)] = True
        sel |= (adjacency @ sel.astype(np.float64)) > 0  # and their neighbours
        idx = np.flatnonzero(sel)
        check = np.flatnonzero(sel[faces].any(1))
        avg = (adjacency[idx] @ v) / deg[idx, None]
        v[idx] = sdf.project_to_level(prims, 0.3 * v[idx] + 0.7 * avg, 0.0, subsets[idx], iterations=3,
                                      max_step=0.01)
    return v


# -- skin weights ------------------------------------------------------------------------------------
def _initial_bones(v: np.ndarray, prims: sdf.Primitives, dominant: np.ndarray, an: Anatomy,
                   bone_names: list[str]) -> np.ndarray:
    """Each vertex's bone before smoothing, from the primitive that shapes it and where it lies."""
    j = an.joints
    out = np.empty(len(v), np.int32)
    idx = {n: i for i, n in enumerate(bone_names)}
    for i in range(len(v)):
        name = prims.names[dominant[i]]
        bone = prims.bones[dominant[i]]
        x, y, z = v[i]
        side = "left" if x > 0 else "right"
        if bone in ("chest", "spine", "hips", "upperChest") or name == "neck":
            if name == "neck" and y > j["neck"][1]:
                bone = "neck" if y < j["head"][1] else "head"
            elif abs(x) > abs(j[f"{side}Shoulder"][0]) + 0.03 * an.H and y > an.landmarks["y_shoulder"] - 0.05 * an.H:
                bone = f"{side}Shoulder"
            elif y > j["upperChest"][1]:
                bone = "upperChest"
            elif y > j["chest"][1]:
                bone = "chest"
            elif y > j["spine"][1]:
                bone = "spine"
            else:
                bone = "hips"
        elif "Arm" in bone:
            bone = f"{side}UpperArm" if abs(x) < abs(j[f"{side}LowerArm"][0]) else f"{side}LowerArm"
        elif "Leg" in bone:
            bone = f"{side}UpperLeg" if y > j[f"{side}LowerLeg"][1] else f"{side}LowerLeg"
        elif bone.endswith("Foot") or bone.endswith("Toes"):
            bone = f"{side}Toes" if z > j[f"{side}Toes"][2] - 0.012 * an.H else f"{side}Foot"
        out[i] = idx[bone]
    return out


def diffuse_weights(labels: np.ndarray, num_bones: int, adjacency: sp.csr_matrix, iterations: int,
                    influences: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Smooth one-hot bone labels over the mesh graph; keep the ``influences`` largest, normalised.

    Returns skin_joints (N, K) int32 and skin_weights (N, K) float32 (non-negative, summing to 1).
    """
    n = len(labels)
    w = np.zeros((n, num_bones))
    w[np.arange(n), labels] = 1.0
    deg = np.asarray(adjacency.sum(1)).reshape(-1, 1)
    for _ in range(iterations):
        w = 0.5 * w + 0.5 * (adjacency @ w) / np.maximum(deg, 1)
    order = np.argsort(-w, axis=1)[:, :influences]
    top = np.take_along_axis(w, order, 1)
    top[top < 0.02] = 0.0  # drop faint influences: they only blur joints
    top /= top.sum(1, keepdims=True)
    return order.astype(np.int32), top.astype(np.float32)


# -- UVs ---------------------------------------------------------------------------------------------
def face_chart_square(an: Anatomy) -> np.ndarray:
    """(x0, y0, size, z) of the face chart: a square in the XY plane, centred on the face below the
    eyes (row 0 of the chart at y0 + size, the top)."""
    h = an.h
    size = 0.92 * h
    cy = an.landmarks["y_chin"] + 0.43 * h
    return np.array([-size / 2, cy - size / 2, size, 0.0])


def _face_chart_faces(v: np.ndarray, faces: np.ndarray, normals: np.ndarray, prims: sdf.Primitives,
                      dominant: np.ndarray, an: Anatomy) -> np.ndarray:
    """(F,) bool: triangles that get the planar face chart (the front of the head)."""
    head = np.isin(dominant, [prims.index(n) for n in ("cranium", "face", "nose")])
    x0, y0, size, _ = face_chart_square(an)
    inside = (np.abs(v[:, 0]) < 0.48 * size) & (v[:, 1] > y0 + 0.02 * size) & (v[:, 1] < y0 + 0.98 * size)
    ok = head & inside & (normals[:, 2] > 0.25) & (v[:, 2] > an.landmarks["head_center"][2])
    return ok[faces].all(1)


_BONE_AXIS = {
    "hips": (0, 1, 0), "spine": (0, 1, 0), "chest": (0, 1, 0), "upperChest": (0, 1, 0), "neck": (0, 1, 0),
    "head": (0, 1, 0), "Shoulder": (1, 0, 0), "Arm": (1, 0, 0), "Hand": (1, 0, 0), "Leg": (0, 1, 0),
    "Foot": (0, 0, 1), "Toes": (0, 0, 1),
}  # fmt: skip


def _bone_axis(name: str) -> np.ndarray:
    for key, axis in _BONE_AXIS.items():
        if key in name:
            a = np.array(axis, np.float64)
            if name.startswith("right") and axis[0]:
                a = -a
            return a
    return np.array([0.0, 1.0, 0.0])


def _region_charts(v: np.ndarray, f: np.ndarray, tri_normals: np.ndarray, tris: np.ndarray, center: np.ndarray,
                   axis: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Charts of one body region: a cylinder unwrap around ``axis`` for the sides, planar
    projections for the two caps. Returns [(triangle indices, corner uvs (T, 3, 2) in metres)]."""
    ref = np.array([0.0, 0.0, 1.0]) if abs(axis[2]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = ref - axis * (ref @ axis)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(axis, e1)
    along = tri_normals[tris] @ axis
    out = []
    side = tris[np.abs(along) < 0.7]
    if len(side):
        p = v[f[side]] - center  # (T, 3, 3)
        t = p @ axis
        phi = np.arctan2(p @ e2, p @ e1)
        wrap = (phi.max(1) - phi.min(1)) > np.pi
        phi[wrap] = np.where(phi[wrap] < 0, phi[wrap] + 2 * np.pi, phi[wrap])
        radial = np.linalg.norm(p - t[..., None] * axis, axis=-1)
        r = float(np.median(radial))
        out.append((side, np.stack([phi * r, -t], -1)))
    for sign in (1.0, -1.0):
        cap = tris[sign * along >= 0.7]
        if len(cap):
            p = v[f[cap]] - center
            out.append((cap, np.stack([p @ e1, -(p @ e2) * sign], -1)))
    return out


def _pack_charts(sizes: np.ndarray, pad: float) -> tuple[np.ndarray, float]:
    """Shelf-pack rectangles (C, 2) (width, height) into the smallest square found; return their
    lower corners (C, 2) and the square's side. ``pad`` is the gap as a fraction of the side."""
    order = np.argsort(-sizes[:, 1])
    side = float(np.sqrt((sizes[:, 0] * sizes[:, 1]).sum()) * 1.1)
    while True:
        g = pad * side
        corners = np.zeros_like(sizes)
        x = y = shelf = 0.0
        ok = True
        for i in order:
            w, h = sizes[i]
            if x + w + g > side:
                x, y, shelf = 0.0, y + shelf + g, 0.0
            if w + 2 * g > side or y + h + 2 * g > side:
                ok = False
                break
            corners[i] = (x + g, y + g)
            x += w + g
            shelf = max(shelf, h)
        if ok:
            return corners, side
        side *= 1.04


@functools.lru_cache(maxsize=4)
def _raster_tables(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Texel centre coordinates of a (size, 2 size) texture in UV units."""
    u = (np.arange(2 * size) + 0.5) / (2 * size)
    v = (np.arange(size) + 0.5) / size
    return u, v


def rasterize_uv(uvs: np.ndarray, uv_faces: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Which triangle covers each texel centre, and where.

    Returns ``face`` (H, W) int32 (-1 where none) and ``bary`` (H, W, 3) barycentric weights of the
    triangle's three corners.
    """
    return _rasterize_uv(np.ascontiguousarray(uvs, np.float64), np.ascontiguousarray(uv_faces, np.int32),
                         width, height)


def _rasterize_uv(uvs, uv_faces, width, height):
    from stdgen.data.procedural._kernels import rasterize_triangles_2d

    face = np.full((height, width), -1, np.int32)
    bary = np.zeros((height, width, 3), np.float64)
    px = uvs[:, 0] * width - 0.5
    py = uvs[:, 1] * height - 0.5
    rasterize_triangles_2d(px, py, uv_faces, face, bary)
    return face, bary


def dilate_nearest(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Fill invalid texels with the value of the nearest valid one (so sampling near chart borders,
    and at lower mip levels, stays on the surface's own colours)."""
    from scipy.ndimage import distance_transform_edt

    if valid.all():
        return values
    _, (iy, ix) = distance_transform_edt(~valid, return_indices=True)
    return values[iy, ix]


# -- the template ------------------------------------------------------------------------------------
def canonical_params() -> BodyParams:
    return BodyParams()


@functools.lru_cache(maxsize=1)
def body_template() -> BodyTemplate:
    """Build (once per process) the canonical body template."""
    import fast_simplification

    from stdgen.structures.character import HUMANOID_BONES

    p = canonical_params()
    an = anatomy(p)
    prims = body_primitives(p, an)
    reach = abs(an.joints["leftHand"][0]) + an.landmarks["hand_length"] + 0.03
    lo = np.array([-reach, -0.01, -0.2])
    hi = np.array([reach, p.height + 0.02, 0.25])
    v, f = mesh_sdf(prims, lo, hi, TEMPLATE_STEP)
    v, f = fast_simplification.simplify(v, f, target_count=TEMPLATE_FACES, agg=5)
    v, f = _clean_mesh(np.asarray(v, np.float64), np.asarray(f, np.int32))
    adjacency = vertex_adjacency(f, len(v))
    # Even out the decimated vertex spacing, then pull everything back onto the surface.
    dist = sdf.primitive_distances(prims, v)
    subsets = np.argsort(dist, 1)[:, :SUBSET_SIZE].astype(np.int32)
    for _ in range(2):
        v = smooth_vertices(v, adjacency, 2, 0.4)
        v = sdf.project_to_level(prims, v, 0.0, subsets, iterations=3, max_step=0.01)
    dist = sdf.primitive_distances(prims, v)
    subsets = np.argsort(dist, 1)[:, :SUBSET_SIZE].astype(np.int32)
    v = relax_folds(v, f, adjacency, prims, subsets, rounds=8)
    dominant = subsets[:, 0]
    # Below the crotch each leg is shaped by its own primitives only: thick thighs may touch, but
    # the two legs never fuse into a web that would tear when they move apart.
    legs = v[:, 1] < an.landmarks["y_crotch"] - 0.02 * an.H
    subsets[legs] = one_side_subsets(prims, subsets[legs], v[legs, 0])

    names = list(HUMANOID_BONES)
    labels = _initial_bones(v, prims, dominant, an, names)
    skin_joints, skin_weights = diffuse_weights(labels, len(names), adjacency, iterations=40)

    normals = vertex_normals(v, f)
    face_tris = _face_chart_faces(v, f, normals, prims, dominant, an)
    uvs, uv_faces = _body_uvs(v, f, face_tris, an, labels, names)
    pos, nrm, face_id = _texel_maps(v, f, normals, uvs, uv_faces, 2 * UV_TILE, UV_TILE)
    g_uvs, g_uv_faces = _atlas_uvs(v, f, np.arange(len(f)), an, labels, names)
    g_pos, g_nrm, g_face = _texel_maps(v, f, normals, g_uvs, g_uv_faces, UV_TILE, UV_TILE)
    return BodyTemplate(params=p, anatomy=an, prims=prims, vertices=v, faces=f, subsets=subsets,
                        skin_joints=skin_joints, skin_weights=skin_weights, bone=labels, uvs=uvs,
                        uv_faces=uv_faces, texel_pos=pos, texel_face=face_id, texel_normal=nrm,
                        texel_bone=labels[f[face_id, 0]], face_chart=face_chart_square(an), adjacency=adjacency,
                        garment_uvs=g_uvs, garment_uv_faces=g_uv_faces, garment_texel_pos=g_pos,
                        garment_texel_normal=g_nrm, garment_texel_bone=labels[f[g_face, 0]])


def _texel_maps(v: np.ndarray, f: np.ndarray, normals: np.ndarray, uvs: np.ndarray, uv_faces: np.ndarray,
                width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Template position (H, W, 3), normal (H, W, 3) and triangle (H, W) under every texel of a UV
    layout, dilated into the gaps between charts."""
    face_id, bary = rasterize_uv(uvs, uv_faces, width, height)
    valid = face_id >= 0
    fid = np.maximum(face_id, 0)
    pos = dilate_nearest(np.einsum("hwc,hwcd->hwd", bary, v[f[fid]]), valid)
    nrm = np.einsum("hwc,hwcd->hwd", bary, normals[f[fid]])
    nrm = dilate_nearest(nrm / np.maximum(np.linalg.norm(nrm, axis=-1, keepdims=True), 1e-12), valid)
    return pos.astype(np.float32), nrm.astype(np.float32), dilate_nearest(face_id, valid)


def _atlas_uvs(v: np.ndarray, f: np.ndarray, tris_in: np.ndarray, an: Anatomy, labels: np.ndarray,
               bone_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per-bone cylinder / cap charts of triangles ``tris_in`` packed into the unit square.
    Returns uvs (M, 2) and uv_faces (F, 3) (rows of triangles not in ``tris_in`` are zero)."""
    tri_n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    tri_n /= np.maximum(np.linalg.norm(tri_n, axis=1, keepdims=True), 1e-20)
    corner_labels = labels[f]
    # Majority bone of each triangle (first corner on a three-way tie).
    tri_label = np.where(corner_labels[:, 1] == corner_labels[:, 2], corner_labels[:, 1], corner_labels[:, 0])
    charts: list[tuple[np.ndarray, np.ndarray]] = []
    for b in np.unique(tri_label[tris_in]):
        tris = tris_in[tri_label[tris_in] == b]
        name = bone_names[b]
        charts += _region_charts(v, f, tri_n, tris, an.joints[name], _bone_axis(name))
    lo = np.array([c[1].reshape(-1, 2).min(0) for c in charts])
    hi = np.array([c[1].reshape(-1, 2).max(0) for c in charts])
    corners, side = _pack_charts(hi - lo, pad=4.0 / UV_TILE)
    uvs = []
    uv_faces = np.zeros_like(f)
    count = 0
    for (tris, cuv), l0, c0 in zip(charts, lo, corners):
        uv = (cuv.reshape(-1, 2) - l0 + c0) / side
        # Corners of one vertex inside one chart share their UV (a seam only where charts meet or a
        # cylinder unwrap wraps), so files split vertices only along real seams.
        key = np.concatenate([f[tris].reshape(-1, 1).astype(np.float64), np.round(uv * 2**20)], 1)
        _, first, inv = np.unique(key, axis=0, return_index=True, return_inverse=True)
        uvs.append(uv[first])
        uv_faces[tris] = count + inv.reshape(-1, 3)
        count += len(first)
    return np.concatenate(uvs).astype(np.float32), uv_faces


def _body_uvs(v: np.ndarray, f: np.ndarray, face_tris: np.ndarray, an: Anatomy, labels: np.ndarray,
              bone_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The body's UV layout ``[face chart | body atlas]``: a planar front projection for the face
    triangles (left half), per-bone charts for the rest (right half)."""
    x0, y0, size, _ = face_chart_square(an)
    fverts, finv = np.unique(f[face_tris], return_inverse=True)
    fuv = np.stack([(v[fverts, 0] - x0) / size * 0.5, (y0 + size - v[fverts, 1]) / size], 1)
    rest = np.flatnonzero(~face_tris)
    ruv, ruv_faces = _atlas_uvs(v, f, rest, an, labels, bone_names)
    ruv = np.stack([0.5 + 0.5 * ruv[:, 0], ruv[:, 1]], 1)
    uv_faces = np.empty_like(f)
    uv_faces[face_tris] = finv.reshape(-1, 3)
    uv_faces[rest] = ruv_faces[rest] + len(fuv)
    return np.concatenate([fuv, ruv]).astype(np.float32), uv_faces


def _clean_mesh(v: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop degenerate faces and unreferenced vertices; keep the largest connected piece."""
    import trimesh

    tm = trimesh.Trimesh(v, f, process=True)
    tm.update_faces(tm.nondegenerate_faces())
    tm.remove_unreferenced_vertices()
    parts = tm.split(only_watertight=False)
    if len(parts) > 1:
        tm = max(parts, key=lambda m: len(m.faces))
    return np.asarray(tm.vertices, np.float64), np.asarray(tm.faces, np.int32)


def one_side_subsets(prims: sdf.Primitives, subsets: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Drop the other leg's primitives from each point's subset (points with x > 0 keep the left
    leg, x < 0 the right one); -1 marks a dropped entry."""
    side = np.array([1 if b.startswith("left") and ("Leg" in b or "Foot" in b or "Toes" in b) else
                     -1 if b.startswith("right") and ("Leg" in b or "Foot" in b or "Toes" in b) else 0
                     for b in prims.bones])
    other = side[np.maximum(subsets, 0)] == -np.sign(x)[:, None]
    return np.where(other & (subsets >= 0), -1, subsets).astype(np.int32)


# -- per character -----------------------------------------------------------------------------------
_AXIS_OF_BONE = {"Arm": 0, "Hand": 0, "Shoulder": 0, "Leg": 1, "Foot": 1, "Toes": 2}


def _bone_affines(template: BodyTemplate, an: Anatomy, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per bone a diagonal scale S (J, 3) and the joints (old, new), mapping x -> new + S (x - old)."""
    from stdgen.structures.character import HUMANOID_PARENTS

    old, new = template.anatomy, an
    s_h = new.h / old.h
    s_w = new.H / old.H
    scales = np.empty((len(names), 3))
    children: dict[str, str] = {}
    for n in names:
        p = HUMANOID_PARENTS[n]
        if p is not None and p not in children:
            children[p] = n
    for i, n in enumerate(names):
        if n in ("head", "neck"):
            scales[i] = s_h
            continue
        c = children.get(n)
        axis = next((a for k, a in _AXIS_OF_BONE.items() if k in n), 1)
        s = np.full(3, s_w)
        if c is not None:
            lo = np.linalg.norm(old.joints[c] - old.joints[n])
            ln = np.linalg.norm(new.joints[c] - new.joints[n])
            s[axis] = ln / max(lo, 1e-9)
        scales[i] = s
    return scales, np.stack([old.joints[n] for n in names]), np.stack([new.joints[n] for n in names])


def deform_to(template: BodyTemplate, points: np.ndarray, skin_joints: np.ndarray, skin_weights: np.ndarray,
              an: Anatomy) -> np.ndarray:
    """Move template-space points (N, 3) to a character with anatomy ``an`` by blended per-bone
    affine maps (the start for the projection onto the character's own surface)."""
    from stdgen.structures.character import HUMANOID_BONES

    scales, old, new = _bone_affines(template, an, list(HUMANOID_BONES))
    out = np.zeros_like(points, dtype=np.float64)
    for k in range(skin_joints.shape[1]):
        j = skin_joints[:, k]
        out += skin_weights[:, k : k + 1] * (new[j] + scales[j] * (points - old[j]))
    return out


@dataclass
class BodyShape:
    """One character's body: anatomy, primitives and the deformed template vertices (N, 3)."""

    params: BodyParams
    anatomy: Anatomy
    prims: sdf.Primitives
    vertices: np.ndarray
    _normals: np.ndarray | None = None

    def normals(self, template: BodyTemplate) -> np.ndarray:
        """(N, 3) unit vertex normals of the deformed body (computed once)."""
        if self._normals is None:
            self._normals = vertex_normals(self.vertices, template.faces)
        return self._normals


def make_body_shape(params: BodyParams, template: BodyTemplate | None = None) -> BodyShape:
    """Deform the template to the body with sliders ``params``."""
    template = template or body_template()
    an = anatomy(params)
    prims = body_primitives(params, an)
    v = deform_to(template, template.vertices, template.skin_joints, template.skin_weights, an)
    v = sdf.project_to_level(prims, v, 0.0, template.subsets, iterations=4, max_step=0.02 * an.H)
    v = relax_folds(v, template.faces, template.adjacency, prims, template.subsets)
    return BodyShape(params=params, anatomy=an, prims=prims, vertices=v)
