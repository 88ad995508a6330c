"""Analytic antialiasing of silhouette and occlusion edges, with gradients to vertex positions.

The idea of Laine et al. 2020 ("Modular primitives for high-performance differentiable
rendering"): wherever two neighbouring pixels (horizontally or vertically) show different
triangles and a *silhouette* edge of the nearer triangle crosses the segment joining the two
pixel centres, the colours are blended by how far the edge lies past the midpoint. The blend
weight is an analytic function of the edge's projected endpoints, so its gradient moves the
vertices: a mask loss alone pulls a mesh onto a target silhouette.

Geometry along one pixel pair: ``t`` in [0, 1] is where the edge crosses the segment, measured
from the centre of the pixel showing the nearer triangle ``T`` (t = 0) to the other pixel's
centre (t = 1). With a box filter one pixel wide along the segment:

* ``t > 1/2``: ``T`` reaches into the other pixel, which gets ``(t - 1/2)`` of ``T``'s colour;
* ``t < 1/2``: ``T`` stops short of its own pixel's edge, which gets ``(1/2 - t)`` of the other's.

A silhouette edge of ``T`` is one whose neighbouring triangle across it is missing or faces the
other way in this view. Contributions from the (up to four) pairs of a pixel add up.

Each edge is handled by the pixel pairs across its run only: horizontal pairs for edges steeper
than 45 degrees (exactly 45 included), vertical pairs for flatter ones. Blending an edge in both
directions would count the area it sweeps twice: the gradient of the covered area would come out
twice the true one (the tests compare it with finite differences of supersampled coverage).
"""

from __future__ import annotations

import numpy as np
import torch

from stdgen.render import _backend
from stdgen.render.rasterize import cross
from stdgen.utils.checks import check_tensor


def antialias_topology(tri: torch.Tensor, vertices: torch.Tensor | None = None) -> torch.Tensor:
    """Edge adjacency for :func:`antialias`: ``(F, 3)`` int64, for edge k of face f (vertices
    ``tri[f, k] -> tri[f, (k + 1) % 3]``) the other face sharing it, or -1 (boundary or an edge
    shared by more than two faces). Compute once per mesh topology.

    If ``vertices`` (N, 3) is given, vertices at identical positions are welded first, so that
    meshes split along UV seams do not get false silhouettes inside.
    """
    check_tensor(tri, "tri", (None, 3), dtype=(torch.int32, torch.int64))
    t = tri.long()
    if vertices is not None:
        _, weld = torch.unique(vertices.detach().reshape(-1, 3), dim=0, return_inverse=True)
        t = weld[t]
    f = t.shape[0]
    a = t
    b = t[:, [1, 2, 0]]
    lo, hi = torch.minimum(a, b).reshape(-1), torch.maximum(a, b).reshape(-1)
    n = int(t.max()) + 1 if t.numel() else 1
    key = lo * n + hi  # (3F,)
    order = torch.argsort(key)
    sk = key[order]
    # Group sizes of equal keys.
    uniq, inverse, counts = torch.unique_consecutive(sk, return_inverse=True, return_counts=True)
    nbr = torch.full((3 * f,), -1, dtype=torch.long, device=tri.device)
    pair = counts[inverse] == 2
    # In a group of exactly two, each half-edge's neighbour is the other one's face.
    pos_in_sorted = torch.arange(3 * f, device=tri.device)
    first_of_group = torch.cumsum(counts, 0) - counts
    start = first_of_group[inverse]
    partner = torch.where(pos_in_sorted == start, start + 1, start)
    face_of = order // 3
    nbr_sorted = torch.where(pair, face_of[partner.clamp(max=3 * f - 1)], torch.full_like(partner, -1))
    nbr[order] = nbr_sorted
    return nbr.view(f, 3)


def antialias_topology_numpy(faces: np.ndarray, vertices: np.ndarray | None = None) -> np.ndarray:
    """:func:`antialias_topology` on the host: the same ``(F, 3)`` int64 neighbours for ``faces``
    (F, 3) and optional ``vertices`` (N, 3) (welded first, as float32), in numpy, which sorts much
    faster than torch on the CPU. Tests check the two agree."""
    t = np.asarray(faces, np.int64).reshape(-1, 3)
    if len(t) == 0:
        return np.zeros((0, 3), np.int64)
    if vertices is not None:
        v = np.ascontiguousarray(np.asarray(vertices, np.float32) + np.float32(0))  # -0.0 -> 0.0
        _, weld = np.unique(v.view(np.dtype((np.void, 12))).ravel(), return_inverse=True)
        t = weld.reshape(-1)[t]
    b = t[:, [1, 2, 0]]
    n = int(t.max()) + 1
    key = (np.minimum(t, b) * n + np.maximum(t, b)).ravel()
    order = np.argsort(key, kind="stable")
    sk = key[order]
    start = np.concatenate([[True], sk[1:] != sk[:-1]])
    group = np.cumsum(start) - 1
    first = np.flatnonzero(start)[group]
    pair = np.bincount(group)[group] == 2
    partner = np.where(np.arange(len(sk)) == first, first + 1, first)
    nbr_sorted = np.where(pair, order[np.minimum(partner, len(sk) - 1)] // 3, -1)
    nbr = np.empty(len(sk), np.int64)
    nbr[order] = nbr_sorted
    return nbr.reshape(-1, 3)


def antialias(
    color: torch.Tensor,
    rast: torch.Tensor,
    pos: torch.Tensor,
    tri: torch.Tensor,
    topology: torch.Tensor | None = None,
    *,
    ranges: torch.Tensor | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Antialias silhouette and occlusion edges of a rendered image.

    Args:
        color: ``(V, H, W, C)`` shaded image (e.g. interpolated colours, or a 0/1 mask).
        rast: ``(V, H, W, 4)`` from :func:`~stdgen.render.rasterize` for the same ``pos``/``tri``.
        pos: clip positions ``(V, N, 4)``, or ``(N, 4)`` in range mode.
        tri: ``(F, 3)`` triangles that were rasterised.
        topology: ``(F, 3)`` from :func:`antialias_topology`; computed here if omitted (pass it in
            loops to save the work).
        ranges: ``(V, 2)`` face ranges when ``pos`` is in range mode (as for ``rasterize``).
        backend: ``"auto"`` (the fast path for the device where there is one), ``"torch"`` (the
            reference, :func:`antialias_torch`) or a backend name.

    Returns:
        ``(V, H, W, C)`` antialiased image, differentiable with respect to ``color`` and ``pos``.
    """
    check_tensor(color, "color", (None, None, None, None))
    check_tensor(rast, "rast", (color.shape[0], color.shape[1], color.shape[2], 4))
    if topology is None:
        topology = antialias_topology(tri)
    check_tensor(topology, "topology", (tri.shape[0], 3), dtype=(torch.int32, torch.int64))
    if color.dtype in (torch.float32, torch.float64) and rast.device == color.device == pos.device:
        fast = _backend.pick("antialias", backend, color.device)
        if fast is not None:
            return fast(color, rast, pos, tri, topology, ranges)
    return antialias_torch(color, rast, pos, tri, topology, ranges=ranges)


def antialias_torch(
    color: torch.Tensor,
    rast: torch.Tensor,
    pos: torch.Tensor,
    tri: torch.Tensor,
    topology: torch.Tensor,
    *,
    ranges: torch.Tensor | None = None,
) -> torch.Tensor:
    """Reference :func:`antialias` in plain PyTorch (differentiable by autograd)."""
    views, h, w, ch = color.shape
    tri = tri.long()
    fid = rast[..., 3].detach().long() - 1  # (V, H, W)
    zbuf = rast[..., 2].detach()
    flat_color = color.reshape(-1, ch)
    deltas = []
    indices = []
    for axis in (2, 1):  # horizontal pairs (along W), then vertical pairs (along H)
        if color.shape[axis] < 2:
            continue
        fa = fid.narrow(axis, 0, fid.shape[axis] - 1)
        fb = fid.narrow(axis, 1, fid.shape[axis] - 1)
        diff = torch.nonzero(fa != fb)  # (K, 3): v, i, j of the first pixel
        if diff.numel() == 0:
            continue
        vv, ii, jj = diff.unbind(1)
        ib, jb = (ii, jj + 1) if axis == 2 else (ii + 1, jj)
        f_a, f_b = fid[vv, ii, jj], fid[vv, ib, jb]
        z_a, z_b = zbuf[vv, ii, jj], zbuf[vv, ib, jb]
        a_front = (f_b < 0) | ((f_a >= 0) & (z_a < z_b))
        face_t = torch.where(a_front, f_a, f_b)
        # Pixel centres (column x, row y) of T's pixel and the other pixel.
        xa, ya = jj.to(pos.dtype) + 0.5, ii.to(pos.dtype) + 0.5
        xb, yb = jb.to(pos.dtype) + 0.5, ib.to(pos.dtype) + 0.5
        clip_t = _clip_of(pos, tri, face_t, vv, ranges)  # (K, 3, 4)
        scr = _to_pixels(clip_t, h, w)  # (K, 3, 2)
        valid_w = clip_t[..., 3] > 1e-8  # (K, 3)
        facing_t = _facing(clip_t)
        nbr = topology[face_t]  # (K, 3)
        best_t = torch.full_like(xa, -1.0)
        found = torch.zeros_like(xa, dtype=torch.bool)
        for k in range(3):
            p, q = scr[:, k], scr[:, (k + 1) % 3]
            n_k = nbr[:, k]
            has_n = n_k >= 0
            facing_n = _facing(_clip_of(pos, tri, n_k.clamp(min=0), vv, ranges))
            silhouette = ~has_n | (facing_n != facing_t)
            ok_w = valid_w[:, k] & valid_w[:, (k + 1) % 3]
            run = (q - p).detach().abs()  # (K, 2): the edge's extent in columns and rows
            if axis == 2:  # segment along x at row y = ya; edges at least as steep as 45 degrees
                at, c_line = _crossing(p[:, 0], q[:, 0], p[:, 1], q[:, 1], ya)
                start = torch.where(a_front, xa, xb)
                step = torch.where(a_front, xb - xa, xa - xb)
                steep = run[:, 1] >= run[:, 0]
            else:  # segment along y at column x = xa; edges flatter than 45 degrees
                at, c_line = _crossing(p[:, 1], q[:, 1], p[:, 0], q[:, 0], xa)
                start = torch.where(a_front, ya, yb)
                step = torch.where(a_front, yb - ya, ya - yb)
                steep = run[:, 0] > run[:, 1]
            t = (at - start) / step
            crosses = c_line & steep & (t >= 0) & (t <= 1)
            take = crosses & silhouette & ok_w & ~found
            best_t = torch.where(take, t, best_t)
            found = found | take
        if not bool(found.any()):
            continue
        sel = torch.nonzero(found).squeeze(1)
        t = best_t[sel]
        front = a_front[sel]
        idx_a = (vv[sel] * h + ii[sel]) * w + jj[sel]
        idx_b = (vv[sel] * h + ib[sel]) * w + jb[sel]
        idx_t = torch.where(front, idx_a, idx_b)
        idx_o = torch.where(front, idx_b, idx_a)
        col_t, col_o = flat_color[idx_t], flat_color[idx_o]
        reach = (t - 0.5)[:, None]
        # t > 1/2: the other pixel takes (t - 1/2) of T; t < 1/2: T's pixel takes (1/2 - t) of the other.
        into_other = reach > 0
        delta = torch.where(into_other, reach * (col_t - col_o), -reach * (col_o - col_t))
        target = torch.where(into_other.squeeze(1), idx_o, idx_t)
        deltas.append(delta)
        indices.append(target)
    if not deltas:
        return color
    out = flat_color.index_add(0, torch.cat(indices), torch.cat(deltas).to(flat_color.dtype))
    return out.view(views, h, w, ch)


def _crossing(pa, qa, pc, qc, line):
    """Where the edge p->q meets the line ``c = line`` (``a``: the coordinate along the pixel pair,
    ``c``: across it). Returns (the along-coordinate of the crossing, whether the edge crosses)."""
    crosses = (pc < line) != (qc < line)
    dc = qc - pc
    safe = torch.where(crosses, dc, torch.ones_like(dc))
    return pa + (line - pc) * (qa - pa) / safe, crosses


def _clip_of(pos, tri, faces, views, ranges):
    verts = tri[faces]  # (K, 3)
    if ranges is None:
        return pos[views[:, None], verts]
    return pos[verts]


def _to_pixels(clip: torch.Tensor, h: int, w: int) -> torch.Tensor:
    wv = clip[..., 3:4]
    wv = torch.where(wv.abs() > 1e-12, wv, torch.full_like(wv, 1e-12))
    ndc = clip[..., :2] / wv
    col = (ndc[..., 0] + 1) * 0.5 * w
    row = (1 - ndc[..., 1]) * 0.5 * h
    return torch.stack([col, row], -1)


def _facing(clip: torch.Tensor) -> torch.Tensor:
    """True where a triangle (K, 3, 4) is counter-clockwise (front-facing) in NDC."""
    c = clip.detach()[..., [0, 1, 3]]
    det = (cross(c[:, 0], c[:, 1]) * c[:, 2]).sum(-1)
    return det > 0
