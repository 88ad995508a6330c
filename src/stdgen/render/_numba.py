"""CPU fast path: numba kernels for visibility and for the differentiable ops.

Registers the visibility backend ``"numba"`` and the CPU implementations of
``barycentrics``, ``interpolate`` and ``antialias`` (custom ``torch.autograd.Function`` s with
analytic backward passes). Each kernel computes what the plain PyTorch reference in
``rasterize.py`` / ``interpolate.py`` / ``antialias.py`` computes, pixel by pixel, without the
reference's compaction, gathers and temporaries; tests compare the two on values and on
vector-Jacobian products.

Parallelism: every kernel is a serial, GIL-free (``nogil``) loop over a range ``[lo, hi)`` of work
items, and :func:`_run` splits the items over a small thread pool (as many threads as
``torch.get_num_threads()``). Forward kernels run over image rows; kernels that accumulate into
vertex gradients run over views, each view into its own slice (instanced mode) or its own buffer
(range mode, summed afterwards), so no two threads ever add into the same memory. The visibility
pass runs over (view, row band) items, each a z-buffer over its band, so a single large image is
split across cores too. (Serial kernels compile several times faster than numba's ``parallel=True``
ones, and pool threads block instead of spinning when the cores are oversubscribed.)

Imported lazily by :func:`stdgen.render.rasterize._load_fast_backends`; missing numba just leaves
the reference in place.
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numba as nb
import numpy as np
import torch
from torch.autograd.function import once_differentiable

from stdgen.render import _backend
from stdgen.render.rasterize import VISIBILITY_BACKENDS

# The kernels hold no prange: they are serial loops over [lo, hi) run by the pool below. They are
# compiled with parallel=True all the same, because numba's parallel pipeline optimises these
# loops about twice as well (measured on the antialias kernel: 0.14 s against 0.28 s); numba then
# warns that it found nothing to parallelise, which is expected here and silenced in _compiled.
_NO_PARFOR = "(?s).*no transformation for parallel execution was possible"
_WARMED: set = set()

_F32 = np.float32
#: Below this much work (pixels, or pixels + faces x views) a kernel runs on the calling thread:
#: handing it to the pool would cost more than it saves.
_PARALLEL_MIN_WORK = 1 << 17

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1), thread_name_prefix="stdgen-render")
        return _POOL


def _forget_pool() -> None:
    """After a fork the child has no pool threads: start a new pool there when needed."""
    global _POOL
    _POOL = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _threads() -> int:
    return max(1, torch.get_num_threads())


def _compiled(kernel, args) -> None:
    """Compile ``kernel`` for these argument types on the calling thread (an empty range), with
    numba's expected "nothing to parallelise" warning silenced."""
    key = (kernel, tuple((a.dtype.str, a.ndim) if isinstance(a, np.ndarray) else type(a) for a in args))
    if key in _WARMED:
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_NO_PARFOR, category=nb.NumbaPerformanceWarning)
        kernel(*args, 0, 0)
    _WARMED.add(key)


def _run(kernel, items: int, work: int, *args) -> list:
    """``kernel(*args, lo, hi)`` over ``[0, items)``, split over up to ``_threads()`` pool threads
    (the calling thread alone for small ``work``). Returns the kernels' return values."""
    _compiled(kernel, args)
    threads = min(_threads(), items) if work >= _PARALLEL_MIN_WORK else 1
    if threads <= 1:
        return [kernel(*args, 0, items)]
    chunks = min(items, 2 * threads)  # a few more chunks than threads: uneven rows balance out
    bounds = [items * k // chunks for k in range(chunks + 1)]
    pool = _pool()
    futures = [pool.submit(kernel, *args, lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]
    return [f.result() for f in futures]


# --------------------------------------------------------------------------------------------
# Visibility
# --------------------------------------------------------------------------------------------
@nb.njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def _visibility_kernel(clip, pos_index, tri, fstart, fcount, h, w, cull, bands, face_out, depth_out, lo, hi):
    """Z-buffer per (view, row band). Arithmetic in float32 in the reference's order, so that
    depth keys and inside tests agree with :func:`visibility_torch` bit for bit in most pixels.

    clip (P, N, 4) float32; pos_index (V,) which clip row each view reads; tri (F, 3) int32;
    fstart, fcount (V,) the faces of each view; face_out (V, H, W) int32; depth_out (V, H, W)
    float32 scratch (depth mapped to [0, 1]).
    """
    one = _F32(1.0)
    half = _F32(0.5)
    tiny = _F32(1e-12)
    fh = _F32(h)
    fw = _F32(w)
    for item in range(lo, hi):
        v = item // bands
        band = item % bands
        r0 = band * h // bands
        r1 = (band + 1) * h // bands - 1  # inclusive
        for i in range(r0, r1 + 1):
            for j in range(w):
                face_out[v, i, j] = -1
                depth_out[v, i, j] = _F32(2.0)  # beyond any depth in [0, 1]
        if r1 < r0:
            continue
        p = pos_index[v]
        for f in range(fstart[v], fstart[v] + fcount[v]):
            i0 = tri[f, 0]
            i1 = tri[f, 1]
            i2 = tri[f, 2]
            x0 = clip[p, i0, 0]
            y0 = clip[p, i0, 1]
            z0 = clip[p, i0, 2]
            w0 = clip[p, i0, 3]
            x1 = clip[p, i1, 0]
            y1 = clip[p, i1, 1]
            z1 = clip[p, i1, 2]
            w1 = clip[p, i1, 3]
            x2 = clip[p, i2, 0]
            y2 = clip[p, i2, 1]
            z2 = clip[p, i2, 2]
            w2 = clip[p, i2, 3]
            # Trivial reject: wholly beyond one clip plane.
            if (x0 > w0 and x1 > w1 and x2 > w2) or (x0 < -w0 and x1 < -w1 and x2 < -w2):
                continue
            if (y0 > w0 and y1 > w1 and y2 > w2) or (y0 < -w0 and y1 < -w1 and y2 < -w2):
                continue
            if (z0 > w0 and z1 > w1 and z2 > w2) or (z0 < -w0 and z1 < -w1 and z2 < -w2):
                continue
            if w0 <= 0 and w1 <= 0 and w2 <= 0:
                continue
            # Homogeneous edge functions: row k is c_{k+1} x c_{k+2} with c = (x, y, w).
            e00 = y1 * w2 - w1 * y2
            e01 = w1 * x2 - x1 * w2
            e02 = x1 * y2 - y1 * x2
            e10 = y2 * w0 - w2 * y0
            e11 = w2 * x0 - x2 * w0
            e12 = x2 * y0 - y2 * x0
            e20 = y0 * w1 - w0 * y1
            e21 = w0 * x1 - x0 * w1
            e22 = x0 * y1 - y0 * x1
            det = e00 * x0 + e01 * y0 + e02 * w0
            if det == 0 or (cull and det < 0):
                continue
            if w0 > tiny and w1 > tiny and w2 > tiny:
                c0 = (x0 / w0 + one) * half * fw - half
                c1 = (x1 / w1 + one) * half * fw - half
                c2 = (x2 / w2 + one) * half * fw - half
                q0 = (one - y0 / w0) * half * fh - half
                q1 = (one - y1 / w1) * half * fh - half
                q2 = (one - y2 / w2) * half * fh - half
                bx0 = max(0, min(w, int(math.ceil(min(c0, c1, c2)))))
                bx1 = max(-1, min(w - 1, int(math.floor(max(c0, c1, c2)))))
                by0 = max(0, min(h, int(math.ceil(min(q0, q1, q2)))))
                by1 = max(-1, min(h - 1, int(math.floor(max(q0, q1, q2)))))
            else:  # a vertex behind the eye: the projection is unbounded, test every pixel
                bx0, bx1, by0, by1 = 0, w - 1, 0, h - 1
            by0 = max(by0, r0)
            by1 = min(by1, r1)
            for py in range(by0, by1 + 1):
                yn = one - _F32(2 * py + 1) / fh
                for px in range(bx0, bx1 + 1):
                    xn = _F32(2 * px + 1) / fw - one
                    b0 = e00 * xn + e01 * yn + e02
                    b1 = e10 * xn + e11 * yn + e12
                    b2 = e20 * xn + e21 * yn + e22
                    s = b0 + b1 + b2
                    if s == 0 or b0 * s < 0 or b1 * s < 0 or b2 * s < 0:
                        continue
                    l0 = b0 / s
                    l1 = b1 / s
                    l2 = b2 / s
                    wc = l0 * w0 + l1 * w1 + l2 * w2
                    if not wc > 0:
                        continue
                    depth = (l0 * z0 + l1 * z1 + l2 * z2) / wc
                    if not (depth >= -one and depth <= one):
                        continue
                    d01 = min(max((depth + one) * half, _F32(0.0)), one)
                    # Faces run in increasing order: a strict test leaves ties to the lower index.
                    if d01 < depth_out[v, py, px]:
                        depth_out[v, py, px] = d01
                        face_out[v, py, px] = f
    return 0


def _views_layout(pos: torch.Tensor, tri: torch.Tensor, ranges: torch.Tensor | None):
    """(pos_index, fstart, fcount) int64 arrays of the unified per-view layout, and clip as (P, N, 4)."""
    if ranges is None:
        views = pos.shape[0]
        return (pos, np.arange(views, dtype=np.int64), np.zeros(views, np.int64),
                np.full(views, tri.shape[0], np.int64))
    r = ranges.detach().cpu().numpy().astype(np.int64).reshape(-1, 2)
    if len(r) and (r.min() < 0 or (r[:, 0] + r[:, 1]).max() > tri.shape[0]):
        raise ValueError(f"ranges: face ranges must lie in [0, {tri.shape[0]}]")
    return pos.unsqueeze(0), np.zeros(len(r), np.int64), r[:, 0].copy(), r[:, 1].copy()


def _tri_np(tri: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(tri.detach().cpu().numpy(), dtype=np.int32)


def _bands(views: int, h: int) -> int:
    """Row bands per view so that there are a few work items per thread (load balance)."""
    want = 4 * _threads()
    return int(max(1, min(h, -(-want // max(views, 1)))))


def visibility_numba(pos, tri, resolution, ranges=None, cull_backfaces=False):
    """Visibility backend ``"numba"``: the reference's face ids (ties to the lower index)."""
    h, w = resolution
    clip, pos_index, fstart, fcount = _views_layout(pos, tri, ranges)
    clip = np.ascontiguousarray(clip.detach().cpu().numpy(), dtype=np.float32)
    views = len(fstart)
    face = np.empty((views, h, w), np.int32)
    depth = np.empty((views, h, w), np.float32)
    if views:
        bands = _bands(views, h)
        _run(_visibility_kernel, views * bands, views * h * w + int(fcount.sum()), clip, pos_index, _tri_np(tri),
             fstart, fcount, h, w, bool(cull_backfaces), bands, face, depth)
    return torch.from_numpy(face)


# --------------------------------------------------------------------------------------------
# Barycentrics (the differentiable half of rasterize)
# --------------------------------------------------------------------------------------------
@nb.njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def _bary_fwd_kernel(clip, pos_index, tri, face, out, lo, hi):
    """out (V, H, W, 4) = (u, v, z/w, face + 1), zeros on background; rows lo..hi of all views."""
    views, h, w = face.shape
    for row in range(lo, hi):
        v = row // h
        i = row % h
        p = pos_index[v]
        yn = 1.0 - (2 * i + 1) / h
        for j in range(w):
            f = face[v, i, j]
            if f < 0:
                for c in range(4):
                    out[v, i, j, c] = 0
                continue
            xn = (2 * j + 1) / w - 1.0
            a = tri[f, 0]
            b = tri[f, 1]
            c_ = tri[f, 2]
            x0, y0, z0, w0 = clip[p, a, 0], clip[p, a, 1], clip[p, a, 2], clip[p, a, 3]
            x1, y1, z1, w1 = clip[p, b, 0], clip[p, b, 1], clip[p, b, 2], clip[p, b, 3]
            x2, y2, z2, w2 = clip[p, c_, 0], clip[p, c_, 1], clip[p, c_, 2], clip[p, c_, 3]
            b0 = (y1 * w2 - w1 * y2) * xn + (w1 * x2 - x1 * w2) * yn + (x1 * y2 - y1 * x2)
            b1 = (y2 * w0 - w2 * y0) * xn + (w2 * x0 - x2 * w0) * yn + (x2 * y0 - y2 * x0)
            b2 = (y0 * w1 - w0 * y1) * xn + (w0 * x1 - x0 * w1) * yn + (x0 * y1 - y0 * x1)
            s = b0 + b1 + b2
            u = b0 / s
            vv = b1 / s
            t = 1.0 - u - vv
            zc = u * z0 + vv * z1 + t * z2
            wc = u * w0 + vv * w1 + t * w2
            out[v, i, j, 0] = u
            out[v, i, j, 1] = vv
            out[v, i, j, 2] = zc / wc
            out[v, i, j, 3] = f + 1
    return 0


@nb.njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def _bary_bwd_kernel(clip, pos_index, tri, face, grad, gbuf, lo, hi):
    """Accumulate d loss / d clip into gbuf (V, N, 4) (one slice per view) from grad (V, H, W, >=3)
    of (u, v, z/w). The forward is u = b0 / s, v = b1 / s with b_k = (c_{k+1} x c_{k+2}) . p,
    p = (x, y, 1), c = (x, y, w) per vertex, and z/w = (sum l_k z_k) / (sum l_k w_k)."""
    views, h, w = face.shape
    for v in range(lo, hi):
        p = pos_index[v]
        for i in range(h):
            yn = 1.0 - (2 * i + 1) / h
            for j in range(w):
                f = face[v, i, j]
                if f < 0:
                    continue
                gu = grad[v, i, j, 0]
                gv = grad[v, i, j, 1]
                gz = grad[v, i, j, 2]
                if gu == 0 and gv == 0 and gz == 0:
                    continue
                xn = (2 * j + 1) / w - 1.0
                ia = tri[f, 0]
                ib = tri[f, 1]
                ic = tri[f, 2]
                x0, y0, z0, w0 = clip[p, ia, 0], clip[p, ia, 1], clip[p, ia, 2], clip[p, ia, 3]
                x1, y1, z1, w1 = clip[p, ib, 0], clip[p, ib, 1], clip[p, ib, 2], clip[p, ib, 3]
                x2, y2, z2, w2 = clip[p, ic, 0], clip[p, ic, 1], clip[p, ic, 2], clip[p, ic, 3]
                b0 = (y1 * w2 - w1 * y2) * xn + (w1 * x2 - x1 * w2) * yn + (x1 * y2 - y1 * x2)
                b1 = (y2 * w0 - w2 * y0) * xn + (w2 * x0 - x2 * w0) * yn + (x2 * y0 - y2 * x0)
                b2 = (y0 * w1 - w0 * y1) * xn + (w0 * x1 - x0 * w1) * yn + (x0 * y1 - y0 * x1)
                s = b0 + b1 + b2
                u = b0 / s
                vv = b1 / s
                t = 1.0 - u - vv
                zc = u * z0 + vv * z1 + t * z2
                wc = u * w0 + vv * w1 + t * w2
                zw = zc / wc
                # Total gradients on u and v (through z/w too), then on b0, b1, b2.
                gU = gu + gz * ((z0 - z2) - zw * (w0 - w2)) / wc
                gV = gv + gz * ((z1 - z2) - zw * (w1 - w2)) / wc
                gb0 = (gU * (1.0 - u) - gV * vv) / s
                gb1 = (gV * (1.0 - vv) - gU * u) / s
                gb2 = -(gU * u + gV * vv) / s
                # d b / d c: dc0 = (gb2 c1 - gb1 c2) x p, dc1 = (gb0 c2 - gb2 c0) x p,
                # dc2 = (gb1 c0 - gb0 c1) x p, with p = (xn, yn, 1).
                ax = gb2 * x1 - gb1 * x2
                ay = gb2 * y1 - gb1 * y2
                aw = gb2 * w1 - gb1 * w2
                bx = gb0 * x2 - gb2 * x0
                by = gb0 * y2 - gb2 * y0
                bw = gb0 * w2 - gb2 * w0
                cx = gb1 * x0 - gb0 * x1
                cy = gb1 * y0 - gb0 * y1
                cw = gb1 * w0 - gb0 * w1
                gzw = gz / wc
                gbuf[v, ia, 0] += ay - aw * yn
                gbuf[v, ia, 1] += aw * xn - ax
                gbuf[v, ia, 3] += ax * yn - ay * xn - gzw * zw * u
                gbuf[v, ia, 2] += gzw * u
                gbuf[v, ib, 0] += by - bw * yn
                gbuf[v, ib, 1] += bw * xn - bx
                gbuf[v, ib, 3] += bx * yn - by * xn - gzw * zw * vv
                gbuf[v, ib, 2] += gzw * vv
                gbuf[v, ic, 0] += cy - cw * yn
                gbuf[v, ic, 1] += cw * xn - cx
                gbuf[v, ic, 3] += cx * yn - cy * xn - gzw * zw * t
                gbuf[v, ic, 2] += gzw * t
    return 0


class _Barycentrics(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pos, tri, face_index, ranges):
        clip_t, pos_index, _, _ = _views_layout(pos, tri, ranges)
        clip = np.ascontiguousarray(clip_t.detach().numpy())
        tri_np = _tri_np(tri)
        face = np.ascontiguousarray(face_index.numpy(), dtype=np.int32)
        views, h, w = face.shape
        out = torch.empty((views, h, w, 4), dtype=pos.dtype)
        _run(_bary_fwd_kernel, views * h, face.size, clip, pos_index, tri_np, face, out.numpy())
        ctx.save_for_backward(pos, tri, face_index)
        ctx.ranges = ranges
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        pos, tri, face_index = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        clip_t, pos_index, _, _ = _views_layout(pos, tri, ctx.ranges)
        clip = np.ascontiguousarray(clip_t.detach().numpy())
        face = np.ascontiguousarray(face_index.numpy(), dtype=np.int32)
        views = face.shape[0]
        g = np.ascontiguousarray(grad.detach().numpy(), dtype=clip.dtype)
        gbuf = np.zeros((views,) + clip.shape[1:], clip.dtype)
        _run(_bary_bwd_kernel, views, face.size, clip, pos_index, _tri_np(tri), face, g, gbuf)
        gpos = torch.from_numpy(gbuf)
        if ctx.ranges is not None:
            gpos = gpos.sum(0)
        return gpos, None, None, None


def barycentrics_numba(pos, tri, face_index, ranges=None):
    """CPU barycentrics (see :func:`stdgen.render.rasterize.barycentrics`)."""
    return _Barycentrics.apply(pos, tri, face_index.to(torch.int32), ranges)


# --------------------------------------------------------------------------------------------
# Interpolate
# --------------------------------------------------------------------------------------------
@nb.njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def _interp_fwd_kernel(attr, attr_index, rast, tri, out, lo, hi):
    """out (V, H, W, C) = u a0 + v a1 + (1 - u - v) a2. attr (A, N, C); attr_index (V,). Returns
    the largest face id referred to (for the caller's range check)."""
    views, h, w, ch = out.shape
    worst = np.int64(-1)
    for row in range(lo, hi):
        v = row // h
        i = row % h
        a = attr_index[v]
        for j in range(w):
            f = np.int64(rast[v, i, j, 3]) - 1
            if f < 0:
                for c in range(ch):
                    out[v, i, j, c] = 0
                continue
            if f >= tri.shape[0]:
                worst = max(worst, f)
                continue
            u = rast[v, i, j, 0]
            vv = rast[v, i, j, 1]
            t = 1 - u - vv
            k0 = tri[f, 0]
            k1 = tri[f, 1]
            k2 = tri[f, 2]
            for c in range(ch):
                out[v, i, j, c] = u * attr[a, k0, c] + vv * attr[a, k1, c] + t * attr[a, k2, c]
    return worst


@nb.njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def _interp_bwd_rast_kernel(attr, attr_index, rast, tri, grad, grast, lo, hi):
    """grast (V, H, W, 4): d loss / d (u, v) = grad . (a0 - a2), grad . (a1 - a2)."""
    views, h, w, ch = grad.shape
    for row in range(lo, hi):
        v = row // h
        i = row % h
        a = attr_index[v]
        for j in range(w):
            f = np.int64(rast[v, i, j, 3]) - 1
            gu = 0.0
            gv = 0.0
            if f >= 0:
                k0 = tri[f, 0]
                k1 = tri[f, 1]
                k2 = tri[f, 2]
                for c in range(ch):
                    g = grad[v, i, j, c]
                    a2 = attr[a, k2, c]
                    gu += g * (attr[a, k0, c] - a2)
                    gv += g * (attr[a, k1, c] - a2)
            grast[v, i, j, 0] = gu
            grast[v, i, j, 1] = gv
            grast[v, i, j, 2] = 0
            grast[v, i, j, 3] = 0
    return 0


@nb.njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def _interp_bwd_attr_kernel(rast, tri, grad, gbuf, lo, hi):
    """gbuf (V, N, C), one slice per view: d loss / d attr."""
    views, h, w, ch = grad.shape
    for v in range(lo, hi):
        for i in range(h):
            for j in range(w):
                f = np.int64(rast[v, i, j, 3]) - 1
                if f < 0:
                    continue
                u = rast[v, i, j, 0]
                vv = rast[v, i, j, 1]
                t = 1 - u - vv
                k0 = tri[f, 0]
                k1 = tri[f, 1]
                k2 = tri[f, 2]
                for c in range(ch):
                    g = grad[v, i, j, c]
                    gbuf[v, k0, c] += u * g
                    gbuf[v, k1, c] += vv * g
                    gbuf[v, k2, c] += t * g
    return 0


def _attr_layout(attr: torch.Tensor, views: int):
    """attr as (A, N, C) and the (V,) index of the slice each view reads."""
    if attr.dim() == 2:
        return attr.unsqueeze(0), np.zeros(views, np.int64)
    if attr.shape[0] == 1:
        return attr, np.zeros(views, np.int64)
    return attr, np.arange(views, dtype=np.int64)


class _Interpolate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, attr, rast, tri):
        views, h, w, _ = rast.shape
        a3, aidx = _attr_layout(attr, views)
        a_np = np.ascontiguousarray(a3.detach().numpy())
        r_np = np.ascontiguousarray(rast.detach().numpy())
        tri_np = _tri_np(tri)
        out = torch.empty((views, h, w, attr.shape[-1]), dtype=attr.dtype)
        worst = max(_run(_interp_fwd_kernel, views * h, views * h * w, a_np, aidx, r_np, tri_np, out.numpy()))
        if worst >= 0:
            raise ValueError(f"rast refers to face {int(worst)} but tri has {tri.shape[0]} faces")
        ctx.save_for_backward(attr, rast, tri)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        attr, rast, tri = ctx.saved_tensors
        views = rast.shape[0]
        a3, aidx = _attr_layout(attr, views)
        a_np = np.ascontiguousarray(a3.detach().numpy())
        r_np = np.ascontiguousarray(rast.detach().numpy())
        tri_np = _tri_np(tri)
        g = np.ascontiguousarray(grad.detach().numpy(), dtype=a_np.dtype)
        gattr = grast = None
        h = rast.shape[1]
        pixels = g.size // max(g.shape[-1], 1)
        if ctx.needs_input_grad[1]:
            grast = torch.empty(rast.shape, dtype=rast.dtype)
            _run(_interp_bwd_rast_kernel, views * h, pixels, a_np, aidx, r_np, tri_np, g, grast.numpy())
        if ctx.needs_input_grad[0]:
            gbuf = np.zeros((views,) + a_np.shape[1:], a_np.dtype)
            _run(_interp_bwd_attr_kernel, views, pixels, r_np, tri_np, g, gbuf)
            gattr = torch.from_numpy(gbuf)
            if attr.dim() == 2:
                gattr = gattr.sum(0)
            elif attr.shape[0] == 1:
                gattr = gattr.sum(0, keepdim=True)
        return gattr, grast, None


def interpolate_numba(attr, rast, tri):
    """CPU interpolate (see :func:`stdgen.render.interpolate.interpolate`)."""
    return _Interpolate.apply(attr, rast, tri)


# --------------------------------------------------------------------------------------------
# Antialias
# --------------------------------------------------------------------------------------------
@nb.njit(cache=True, inline="always", error_model="numpy")
def _facing(clip, p, tri, f):
    """Counter-clockwise in NDC (det of the (x, y, w) rows > 0)."""
    a = tri[f, 0]
    b = tri[f, 1]
    c = tri[f, 2]
    x0, y0, w0 = clip[p, a, 0], clip[p, a, 1], clip[p, a, 3]
    x1, y1, w1 = clip[p, b, 0], clip[p, b, 1], clip[p, b, 3]
    x2, y2, w2 = clip[p, c, 0], clip[p, c, 1], clip[p, c, 3]
    det = x0 * (y1 * w2 - w1 * y2) + y0 * (w1 * x2 - x1 * w2) + w0 * (x1 * y2 - y1 * x2)
    return det > 0


@nb.njit(cache=True, inline="always", error_model="numpy")
def _screen(clip, p, k, h, w):
    """Pixel coordinates (column, row), with pixel centres at half-integers, of vertex k."""
    x = clip[p, k, 0]
    y = clip[p, k, 1]
    wk = clip[p, k, 3]
    if abs(wk) <= 1e-12:
        wk = 1e-12
    col = (x / wk + 1.0) * 0.5 * w
    row = (1.0 - y / wk) * 0.5 * h
    return col, row


@nb.njit(cache=True, inline="always", error_model="numpy")
def _screen_grad(clip, p, k, gcol, grow, h, w, gbuf, v):
    """Chain d loss / d (column, row) of vertex k into gbuf[v, k]: col = (x / w + 1) W / 2 and
    row = (1 - y / w) H / 2."""
    x = clip[p, k, 0]
    y = clip[p, k, 1]
    wk = clip[p, k, 3]
    gbuf[v, k, 0] += gcol * 0.5 * w / wk
    gbuf[v, k, 1] += -grow * 0.5 * h / wk
    gbuf[v, k, 3] += (-gcol * 0.5 * w * x + grow * 0.5 * h * y) / (wk * wk)


@nb.njit(cache=True, inline="always", error_model="numpy")
def _aa_pair(clip, p, tri, topo, rast, v, ia, ja, ib, jb, horizontal, h, w):
    """Evaluate one pixel pair (a = (ia, ja), b = (ib, jb) its right / lower neighbour).

    Returns (found, t, a_front, face_t, k): whether a silhouette edge k of the nearer face
    ``face_t`` crosses the segment between the centres, at ``t`` in [0, 1] from T's pixel.
    """
    fa = np.int64(rast[v, ia, ja, 3]) - 1
    fb = np.int64(rast[v, ib, jb, 3]) - 1
    if fa == fb:
        return False, 0.0, False, np.int64(-1), 0
    a_front = (fb < 0) or (fa >= 0 and rast[v, ia, ja, 2] < rast[v, ib, jb, 2])
    ft = fa if a_front else fb
    xa = ja + 0.5
    ya = ia + 0.5
    xb = jb + 0.5
    yb = ib + 0.5
    facing_t = _facing(clip, p, tri, ft)
    for k in range(3):
        kn = (k + 1) % 3
        va = tri[ft, k]
        vb = tri[ft, kn]
        if not (clip[p, va, 3] > 1e-8 and clip[p, vb, 3] > 1e-8):
            continue
        n = topo[ft, k]
        if n >= 0 and _facing(clip, p, tri, n) == facing_t:
            continue  # an interior edge, not a silhouette
        pcol, prow = _screen(clip, p, va, h, w)
        qcol, qrow = _screen(clip, p, vb, h, w)
        if horizontal:
            pa, qa, pc, qc, line = pcol, qcol, prow, qrow, ya
            start = xa if a_front else xb
            step = (xb - xa) if a_front else (xa - xb)
        else:
            pa, qa, pc, qc, line = prow, qrow, pcol, qcol, xa
            start = ya if a_front else yb
            step = (yb - ya) if a_front else (ya - yb)
        if (pc < line) == (qc < line):
            continue
        # Only pairs across the edge's run: horizontal pairs for edges at least as steep as 45 degrees.
        if horizontal:
            if abs(qc - pc) < abs(qa - pa):
                continue
        elif abs(qc - pc) <= abs(qa - pa):
            continue
        at = pa + (line - pc) * (qa - pa) / (qc - pc)
        t = (at - start) / step
        if t >= 0 and t <= 1:
            return True, t, a_front, ft, k
    return False, 0.0, a_front, ft, 0


@nb.njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def _aa_fwd_kernel(color, rast, clip, pos_index, tri, topo, out, lo, hi):
    """Gather form: each pixel adds the deltas of the (up to four) pairs it takes part in whose
    target it is; no two threads write one pixel."""
    views, h, w, ch = color.shape
    for row in range(lo, hi):
        v = row // h
        i = row % h
        p = pos_index[v]
        for j in range(w):
            for c in range(ch):
                out[v, i, j, c] = color[v, i, j, c]
            for side in range(4):
                if side == 0:  # pair with the left neighbour: this pixel is b
                    if j == 0:
                        continue
                    ia, ja, ib, jb, hz = i, j - 1, i, j, True
                elif side == 1:  # right neighbour: this pixel is a
                    if j == w - 1:
                        continue
                    ia, ja, ib, jb, hz = i, j, i, j + 1, True
                elif side == 2:  # upper neighbour
                    if i == 0:
                        continue
                    ia, ja, ib, jb, hz = i - 1, j, i, j, False
                else:
                    if i == h - 1:
                        continue
                    ia, ja, ib, jb, hz = i, j, i + 1, j, False
                found, t, a_front, ft, k = _aa_pair(clip, p, tri, topo, rast, v, ia, ja, ib, jb, hz, h, w)
                if not found:
                    continue
                # T's pixel and the other one
                if a_front:
                    ti, tj, oi, oj = ia, ja, ib, jb
                else:
                    ti, tj, oi, oj = ib, jb, ia, ja
                reach = t - 0.5
                if reach > 0:
                    if oi == i and oj == j:
                        for c in range(ch):
                            out[v, i, j, c] += reach * (color[v, ti, tj, c] - color[v, oi, oj, c])
                else:
                    if ti == i and tj == j:
                        for c in range(ch):
                            out[v, i, j, c] += -reach * (color[v, oi, oj, c] - color[v, ti, tj, c])
    return 0


@nb.njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def _aa_bwd_kernel(color, rast, clip, pos_index, tri, topo, grad, gcolor, gbuf, want_pos, lo, hi):
    """Per view: gcolor (gather, pixel-local) and d loss / d clip into gbuf (V, N, 4)."""
    views, h, w, ch = color.shape
    for v in range(lo, hi):
        p = pos_index[v]
        for i in range(h):
            for j in range(w):
                for c in range(ch):
                    gcolor[v, i, j, c] += grad[v, i, j, c]
                for side in range(2):  # each pair once, from its first pixel
                    if side == 0:
                        if j == w - 1:
                            continue
                        ia, ja, ib, jb, hz = i, j, i, j + 1, True
                    else:
                        if i == h - 1:
                            continue
                        ia, ja, ib, jb, hz = i, j, i + 1, j, False
                    found, t, a_front, ft, k = _aa_pair(clip, p, tri, topo, rast, v, ia, ja, ib, jb, hz, h, w)
                    if not found:
                        continue
                    if a_front:
                        ti, tj, oi, oj = ia, ja, ib, jb
                    else:
                        ti, tj, oi, oj = ib, jb, ia, ja
                    reach = t - 0.5
                    # target pixel g, and the non-target pixel s
                    if reach > 0:
                        gi, gj, si, sj = oi, oj, ti, tj
                    else:
                        gi, gj, si, sj = ti, tj, oi, oj
                    alpha = abs(reach)
                    gt = 0.0
                    for c in range(ch):
                        g = grad[v, gi, gj, c]
                        gcolor[v, gi, gj, c] -= alpha * g
                        gcolor[v, si, sj, c] += alpha * g
                        gt += g * (color[v, ti, tj, c] - color[v, oi, oj, c])
                    if not want_pos or gt == 0:
                        continue
                    # t = (at - start) / step, at = pa + r (qa - pa), r = (line - pc) / (qc - pc).
                    if hz:
                        step = (jb - ja) if a_front else (ja - jb)
                    else:
                        step = (ib - ia) if a_front else (ia - ib)
                    gat = gt / step
                    va = tri[ft, k]
                    vb = tri[ft, (k + 1) % 3]
                    pcol, prow = _screen(clip, p, va, h, w)
                    qcol, qrow = _screen(clip, p, vb, h, w)
                    if hz:
                        pa, qa, pc, qc, line = pcol, qcol, prow, qrow, ia + 0.5
                    else:
                        pa, qa, pc, qc, line = prow, qrow, pcol, qcol, ja + 0.5
                    slope = (qa - pa) / (qc - pc)
                    r = (line - pc) / (qc - pc)
                    g_pa = gat * (1.0 - r)
                    g_qa = gat * r
                    g_pc = gat * slope * (r - 1.0)
                    g_qc = -gat * slope * r
                    if hz:
                        gpcol, gprow, gqcol, gqrow = g_pa, g_pc, g_qa, g_qc
                    else:
                        gpcol, gprow, gqcol, gqrow = g_pc, g_pa, g_qc, g_qa
                    _screen_grad(clip, p, va, gpcol, gprow, h, w, gbuf, v)
                    _screen_grad(clip, p, vb, gqcol, gqrow, h, w, gbuf, v)
    return 0


class _Antialias(torch.autograd.Function):
    @staticmethod
    def forward(ctx, color, rast, pos, tri, topology, ranges):
        clip_t, pos_index, _, _ = _views_layout(pos, tri, ranges)
        clip = np.ascontiguousarray(clip_t.detach().numpy())
        col = np.ascontiguousarray(color.detach().numpy())
        r_np = np.ascontiguousarray(rast.detach().numpy())
        topo = np.ascontiguousarray(topology.numpy(), dtype=np.int64)
        out = torch.empty(color.shape, dtype=color.dtype)
        views, h = col.shape[:2]
        _run(_aa_fwd_kernel, views * h, col.size // max(col.shape[-1], 1), col, r_np, clip, pos_index, _tri_np(tri),
             topo, out.numpy())
        ctx.save_for_backward(color, rast, pos, tri, topology)
        ctx.ranges = ranges
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        color, rast, pos, tri, topology = ctx.saved_tensors
        clip_t, pos_index, _, _ = _views_layout(pos, tri, ctx.ranges)
        clip = np.ascontiguousarray(clip_t.detach().numpy())
        col = np.ascontiguousarray(color.detach().numpy())
        r_np = np.ascontiguousarray(rast.detach().numpy())
        topo = np.ascontiguousarray(topology.numpy(), dtype=np.int64)
        g = np.ascontiguousarray(grad.detach().numpy(), dtype=col.dtype)
        gcolor = np.zeros_like(col)
        want_pos = bool(ctx.needs_input_grad[2])
        views = rast.shape[0]
        gbuf = np.zeros((views,) + clip.shape[1:] if want_pos else (views, 0, 4), clip.dtype)
        _run(_aa_bwd_kernel, views, col.size // max(col.shape[-1], 1), col, r_np, clip, pos_index, _tri_np(tri), topo,
             g, gcolor, gbuf, want_pos)
        gpos = None
        if want_pos:
            gpos = torch.from_numpy(gbuf).to(pos.dtype)
            if ctx.ranges is not None:
                gpos = gpos.sum(0)
        gcol = torch.from_numpy(gcolor) if ctx.needs_input_grad[0] else None
        return gcol, None, gpos, None, None, None


def antialias_numba(color, rast, pos, tri, topology, ranges=None):
    """CPU antialias (see :func:`stdgen.render.antialias.antialias`)."""
    return _Antialias.apply(color, rast, pos, tri, topology, ranges)


VISIBILITY_BACKENDS["numba"] = visibility_numba
_backend.register("numba", "cpu", barycentrics=barycentrics_numba, interpolate=interpolate_numba,
                  antialias=antialias_numba)
