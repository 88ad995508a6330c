"""Small numba kernels of the procedural generator."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def rasterize_triangles_2d(px, py, tris, face, bary):
    """Rasterize 2D triangles (corner pixel coordinates ``px``, ``py`` with pixel centres at
    integers) into ``face`` (H, W) (triangle index, last writer wins) and ``bary`` (H, W, 3)."""
    height, width = face.shape
    for t in range(tris.shape[0]):
        i0, i1, i2 = tris[t, 0], tris[t, 1], tris[t, 2]
        x0, y0, x1, y1, x2, y2 = px[i0], py[i0], px[i1], py[i1], px[i2], py[i2]
        det = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        if abs(det) < 1e-14:
            continue
        xmin = max(int(np.floor(min(x0, min(x1, x2)))), 0)
        xmax = min(int(np.ceil(max(x0, max(x1, x2)))), width - 1)
        ymin = max(int(np.floor(min(y0, min(y1, y2)))), 0)
        ymax = min(int(np.ceil(max(y0, max(y1, y2)))), height - 1)
        for y in range(ymin, ymax + 1):
            for x in range(xmin, xmax + 1):
                b1 = ((x - x0) * (y2 - y0) - (x2 - x0) * (y - y0)) / det
                b2 = ((x1 - x0) * (y - y0) - (x - x0) * (y1 - y0)) / det
                b0 = 1.0 - b1 - b2
                if b0 >= -1e-6 and b1 >= -1e-6 and b2 >= -1e-6:
                    face[y, x] = t
                    bary[y, x, 0] = b0
                    bary[y, x, 1] = b1
                    bary[y, x, 2] = b2


@numba.njit(cache=True)
def closest_signed(points, nn, v, f, vn, vf_start, vf_face, out_d, out_n):
    """Signed distance from each point to the triangles around its nearest vertices ``nn`` (N, K):
    the exact closest point, signed by the vertex normals interpolated there (negative inside);
    the interpolated unit normal goes to ``out_n``."""
    for i in range(points.shape[0]):
        px, py, pz = points[i, 0], points[i, 1], points[i, 2]
        best = 1e30
        bq0, bq1, bq2 = 0.0, 0.0, 0.0
        bw0, bw1, bw2 = 1.0, 0.0, 0.0
        bf = -1
        for j in range(nn.shape[1]):
            vert = nn[i, j]
            for s in range(vf_start[vert], vf_start[vert + 1]):
                t = vf_face[s]
                a, b, c = f[t, 0], f[t, 1], f[t, 2]
                ax, ay, az = v[a, 0], v[a, 1], v[a, 2]
                abx, aby, abz = v[b, 0] - ax, v[b, 1] - ay, v[b, 2] - az
                acx, acy, acz = v[c, 0] - ax, v[c, 1] - ay, v[c, 2] - az
                apx, apy, apz = px - ax, py - ay, pz - az
                d1 = abx * apx + aby * apy + abz * apz
                d2 = acx * apx + acy * apy + acz * apz
                # Barycentric region tests (Voronoi regions of the triangle).
                bpx, bpy, bpz = px - v[b, 0], py - v[b, 1], pz - v[b, 2]
                d3 = abx * bpx + aby * bpy + abz * bpz
                d4 = acx * bpx + acy * bpy + acz * bpz
                cpx, cpy, cpz = px - v[c, 0], py - v[c, 1], pz - v[c, 2]
                d5 = abx * cpx + aby * cpy + abz * cpz
                d6 = acx * cpx + acy * cpy + acz * cpz
                va = d3 * d6 - d5 * d4
                vb = d5 * d2 - d1 * d6
                vc = d1 * d4 - d3 * d2
                if d1 <= 0 and d2 <= 0:
                    w0, w1, w2 = 1.0, 0.0, 0.0
                elif d3 >= 0 and d4 <= d3:
                    w0, w1, w2 = 0.0, 1.0, 0.0
                elif d6 >= 0 and d5 <= d6:
                    w0, w1, w2 = 0.0, 0.0, 1.0
                elif vc <= 0 and d1 >= 0 and d3 <= 0:
                    tt = d1 / (d1 - d3) if d1 - d3 != 0 else 0.0
                    w0, w1, w2 = 1 - tt, tt, 0.0
                elif vb <= 0 and d2 >= 0 and d6 <= 0:
                    tt = d2 / (d2 - d6) if d2 - d6 != 0 else 0.0
                    w0, w1, w2 = 1 - tt, 0.0, tt
                elif va <= 0 and (d4 - d3) >= 0 and (d5 - d6) >= 0:
                    den = (d4 - d3) + (d5 - d6)
                    tt = (d4 - d3) / den if den != 0 else 0.0
                    w0, w1, w2 = 0.0, 1 - tt, tt
                else:
                    den = va + vb + vc
                    if den == 0:
                        den = 1e-30
                    w1 = vb / den
                    w2 = vc / den
                    w0 = 1 - w1 - w2
                qx = ax + abx * w1 + acx * w2
                qy = ay + aby * w1 + acy * w2
                qz = az + abz * w1 + acz * w2
                dd = (px - qx) ** 2 + (py - qy) ** 2 + (pz - qz) ** 2
                if dd < best:
                    best = dd
                    bq0, bq1, bq2 = qx, qy, qz
                    bw0, bw1, bw2 = w0, w1, w2
                    bf = t
        if bf < 0:
            out_d[i] = 1e30
            continue
        a, b, c = f[bf, 0], f[bf, 1], f[bf, 2]
        nx = bw0 * vn[a, 0] + bw1 * vn[b, 0] + bw2 * vn[c, 0]
        ny = bw0 * vn[a, 1] + bw1 * vn[b, 1] + bw2 * vn[c, 1]
        nz = bw0 * vn[a, 2] + bw1 * vn[b, 2] + bw2 * vn[c, 2]
        nl = np.sqrt(nx * nx + ny * ny + nz * nz)
        if nl < 1e-20:
            nl = 1e-20
        nx, ny, nz = nx / nl, ny / nl, nz / nl
        dist = np.sqrt(best)
        if (px - bq0) * nx + (py - bq1) * ny + (pz - bq2) * nz < 0:
            dist = -dist
        out_d[i] = dist
        out_n[i, 0], out_n[i, 1], out_n[i, 2] = nx, ny, nz
