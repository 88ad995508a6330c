"""GPU fast path: Triton kernels for the whole rasteriser (visibility, barycentrics, interpolate,
antialias), forward and backward.

Registers the visibility backend ``"triton"`` and the CUDA implementations of ``rasterize``
(visibility and barycentrics fused), ``barycentrics``, ``interpolate`` and ``antialias``. The plain
PyTorch code in ``rasterize.py`` / ``interpolate.py`` / ``antialias.py`` is their reference; tests
compare values and vector-Jacobian products. With ``TRITON_INTERPRET=1`` (set before import) the
same kernels run on CPU tensors through Triton's interpreter, which is how the CPU test suite
checks them.

Visibility is a 64-bit atomic-min z-buffer: each covered (triangle, pixel) candidate writes the key
``(depth bits << 32) | face`` with ``atomic_min``, so the nearest triangle wins and ties go to the
lower face index, whatever order the candidates arrive in -- the reference's rule, and the same
trick as visibility-buffer software rasterisers of micro-triangles. Triangles are binned by the
size of their pixel bounding box:

* small (bounding box of at most ``_MAXS * _S`` pixels a side, nearly all triangles of a dense
  mesh): rasterised in the setup kernel itself, a block of triangles times ``_S x _S`` pixel
  lanes per step;
* medium (boxes up to ``_MEDIUM`` pixels a side): appended to a device-side list and rasterised
  by a second kernel in ``_TS x _TS`` pixel tiles, one program per triangle at a time;
* huge (larger boxes, and triangles with a vertex behind the eye, whose projection is unbounded):
  appended to a second list (the same buffer, from its far end) and rasterised by the same kernel
  with each triangle's tiles spread over ``_SPLIT`` programs.

Nothing on the hot path waits for the GPU (no ``.item()``, no ``nonzero``): the list length lives
in device memory and the big-triangle kernel has a fixed grid that loops over it. Kernels that add
into vertex gradients use float atomics, as nvdiffrast does. All atomics are ``relaxed``: they need
atomicity only, and Triton's default (acquire-release) fences every one.

Every index read from user data is range-checked inside the kernels (a lane with an out-of-range
vertex or face index reads nothing and draws nothing), so bad input cannot fault the device.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl
from torch.autograd.function import once_differentiable

from stdgen.render import _backend
from stdgen.render.rasterize import VISIBILITY_BACKENDS

_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
_EMPTY = (1 << 63) - 1  # z-buffer key of an empty pixel

# Launch shapes. The interpreter runs programs one by one in Python: keep its grids tiny.
_BLOCK_TRI = 128  # triangles per program of the setup / small-triangle kernel
_S = 2  # small triangles are stepped over in S x S pixel sub-blocks ...
_MAXS = 8  # ... of which there are at most MAXS along each side (boxes up to 16 x 16 pixels)
_TS = 16  # big triangles: TS x TS pixel tiles
_MEDIUM = 128  # box side (pixels) up to which a triangle is "medium"
_BIG_PROGRAMS = 2 if _INTERPRET else 4096  # programs looping over the medium-triangle list
_HUGE_PROGRAMS = 2 if _INTERPRET else 128  # programs looping over the huge-triangle list ...
_SPLIT = 2 if _INTERPRET else 32  # ... times programs sharing one huge triangle's tiles
_WARPS_TRI = 4
_BLOCK_PIX = 256  # pixels per program of the per-pixel kernels
_TH, _TW = 8, 16  # pixel tiles of the backward and antialias kernels
_AGG = 4  # faces per tile whose gradients are summed before their atomics


# --------------------------------------------------------------------------------------------
# Triangle setup (shared by the two visibility kernels)
# --------------------------------------------------------------------------------------------
@triton.jit
def _setup(pos_ptr, tri_ptr, iv_ptr, if_ptr, item, live, F, N, H, W,
           INSTANCED: tl.constexpr, CULL: tl.constexpr):
    """Per item (a (view, face) pair): view, face, drawable flag, edge functions, clip z and w of
    the corners, and the inclusive pixel box. float32 throughout, in the reference's formulas."""
    if INSTANCED:
        v = item // F
        f = item - v * F
        pbase = v * N
    else:
        v = tl.load(iv_ptr + item, mask=live, other=0).to(tl.int64)
        f = tl.load(if_ptr + item, mask=live, other=0).to(tl.int64)
        pbase = v * 0
    i0 = tl.load(tri_ptr + f * 3 + 0, mask=live, other=0).to(tl.int64)
    i1 = tl.load(tri_ptr + f * 3 + 1, mask=live, other=0).to(tl.int64)
    i2 = tl.load(tri_ptr + f * 3 + 2, mask=live, other=0).to(tl.int64)
    good = live & (i0 >= 0) & (i0 < N) & (i1 >= 0) & (i1 < N) & (i2 >= 0) & (i2 < N)
    a0 = (pbase + i0) * 4
    a1 = (pbase + i1) * 4
    a2 = (pbase + i2) * 4
    x0 = tl.load(pos_ptr + a0 + 0, mask=good, other=0.0).to(tl.float32)
    y0 = tl.load(pos_ptr + a0 + 1, mask=good, other=0.0).to(tl.float32)
    z0 = tl.load(pos_ptr + a0 + 2, mask=good, other=0.0).to(tl.float32)
    w0 = tl.load(pos_ptr + a0 + 3, mask=good, other=0.0).to(tl.float32)
    x1 = tl.load(pos_ptr + a1 + 0, mask=good, other=0.0).to(tl.float32)
    y1 = tl.load(pos_ptr + a1 + 1, mask=good, other=0.0).to(tl.float32)
    z1 = tl.load(pos_ptr + a1 + 2, mask=good, other=0.0).to(tl.float32)
    w1 = tl.load(pos_ptr + a1 + 3, mask=good, other=0.0).to(tl.float32)
    x2 = tl.load(pos_ptr + a2 + 0, mask=good, other=0.0).to(tl.float32)
    y2 = tl.load(pos_ptr + a2 + 1, mask=good, other=0.0).to(tl.float32)
    z2 = tl.load(pos_ptr + a2 + 2, mask=good, other=0.0).to(tl.float32)
    w2 = tl.load(pos_ptr + a2 + 3, mask=good, other=0.0).to(tl.float32)
    out = ((x0 > w0) & (x1 > w1) & (x2 > w2)) | ((x0 < -w0) & (x1 < -w1) & (x2 < -w2))
    out = out | ((y0 > w0) & (y1 > w1) & (y2 > w2)) | ((y0 < -w0) & (y1 < -w1) & (y2 < -w2))
    out = out | ((z0 > w0) & (z1 > w1) & (z2 > w2)) | ((z0 < -w0) & (z1 < -w1) & (z2 < -w2))
    out = out | ((w0 <= 0) & (w1 <= 0) & (w2 <= 0))
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
    ok = good & ~out & (det != 0) & (det == det)  # det == det: no NaN corners
    if CULL:
        ok = ok & (det > 0)
    fw = W.to(tl.float32)
    fh = H.to(tl.float32)
    tiny = 1e-12
    proj = (w0 > tiny) & (w1 > tiny) & (w2 > tiny)
    sw0 = tl.where(proj, w0, 1.0)
    sw1 = tl.where(proj, w1, 1.0)
    sw2 = tl.where(proj, w2, 1.0)
    c0 = (x0 / sw0 + 1.0) * 0.5 * fw - 0.5
    c1 = (x1 / sw1 + 1.0) * 0.5 * fw - 0.5
    c2 = (x2 / sw2 + 1.0) * 0.5 * fw - 0.5
    r0 = (1.0 - y0 / sw0) * 0.5 * fh - 0.5
    r1 = (1.0 - y1 / sw1) * 0.5 * fh - 0.5
    r2 = (1.0 - y2 / sw2) * 0.5 * fh - 0.5
    cmin = tl.minimum(tl.minimum(c0, c1), c2)
    cmax = tl.maximum(tl.maximum(c0, c1), c2)
    rmin = tl.minimum(tl.minimum(r0, r1), r2)
    rmax = tl.maximum(tl.maximum(r0, r1), r2)
    # Clamp in float before converting (huge projected coordinates must not overflow an int).
    bx0 = tl.minimum(tl.maximum(tl.ceil(cmin), 0.0), fw).to(tl.int32)
    bx1 = tl.minimum(tl.maximum(tl.floor(cmax), -1.0), fw - 1.0).to(tl.int32)
    by0 = tl.minimum(tl.maximum(tl.ceil(rmin), 0.0), fh).to(tl.int32)
    by1 = tl.minimum(tl.maximum(tl.floor(rmax), -1.0), fh - 1.0).to(tl.int32)
    bx0 = tl.where(proj, bx0, 0)
    by0 = tl.where(proj, by0, 0)
    bx1 = tl.where(proj, bx1, W - 1)
    by1 = tl.where(proj, by1, H - 1)
    ok = ok & (bx1 >= bx0) & (by1 >= by0)
    return (v, f, ok, e00, e01, e02, e10, e11, e12, e20, e21, e22, z0, z1, z2, w0, w1, w2,
            bx0, bx1, by0, by1)


@triton.jit
def _draw(zbuf_ptr, v, f, px, py, m, e00, e01, e02, e10, e11, e12, e20, e21, e22,
          z0, z1, z2, w0, w1, w2, H, W):
    """Depth-test candidate pixels (px, py) of triangle f in view v: atomic min of the key."""
    xn = (2 * px + 1).to(tl.float32) / W.to(tl.float32) - 1.0
    yn = 1.0 - (2 * py + 1).to(tl.float32) / H.to(tl.float32)
    b0 = e00 * xn + e01 * yn + e02
    b1 = e10 * xn + e11 * yn + e12
    b2 = e20 * xn + e21 * yn + e22
    s = b0 + b1 + b2
    inside = (s != 0) & (b0 * s >= 0) & (b1 * s >= 0) & (b2 * s >= 0)
    ss = tl.where(s != 0, s, 1.0)
    l0 = b0 / ss
    l1 = b1 / ss
    l2 = b2 / ss
    wc = l0 * w0 + l1 * w1 + l2 * w2
    depth = (l0 * z0 + l1 * z1 + l2 * z2) / tl.where(wc != 0, wc, 1.0)
    hit = m & inside & (wc > 0) & (depth >= -1.0) & (depth <= 1.0)
    d01 = tl.minimum(tl.maximum((depth + 1.0) * 0.5, 0.0), 1.0)
    key = (d01.to(tl.int32, bitcast=True).to(tl.int64) << 32) | f
    addr = (v * H + py) * W + px
    tl.atomic_min(zbuf_ptr + addr, key, mask=hit, sem="relaxed")


@triton.jit(do_not_specialize=["n_items", "F", "N", "H", "W"])
def _small_kernel(pos_ptr, tri_ptr, iv_ptr, if_ptr, zbuf_ptr, big_ptr, nbig_ptr, n_items, F, N, H, W,
                  INSTANCED: tl.constexpr, CULL: tl.constexpr, BLOCK: tl.constexpr, S: tl.constexpr,
                  MAXS: tl.constexpr, MEDIUM: tl.constexpr):
    pid = tl.program_id(0)
    item = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    live = item < n_items
    (v, f, ok, e00, e01, e02, e10, e11, e12, e20, e21, e22, z0, z1, z2, w0, w1, w2,
     bx0, bx1, by0, by1) = _setup(pos_ptr, tri_ptr, iv_ptr, if_ptr, item, live, F, N, H, W, INSTANCED, CULL)
    nsx = (bx1 - bx0 + S) // S
    nsy = (by1 - by0 + S) // S
    small = ok & (nsx <= MAXS) & (nsy <= MAXS)
    medium = ok & ~small & (bx1 - bx0 < MEDIUM) & (by1 - by0 < MEDIUM)
    huge = ok & ~small & ~medium
    slot = tl.atomic_add(nbig_ptr + item * 0, 1, mask=medium, sem="relaxed")
    tl.store(big_ptr + slot, item.to(tl.int32), mask=medium)
    slot = tl.atomic_add(nbig_ptr + 1 + item * 0, 1, mask=huge, sem="relaxed")
    tl.store(big_ptr + (n_items - 1 - slot), item.to(tl.int32), mask=huge)
    nsub = tl.where(small, nsx * nsy, 0)
    nsx = tl.where(small, nsx, 1)
    steps = tl.max(nsub, axis=0)
    lane = tl.arange(0, S * S)
    lx = (lane % S)[None, :]
    ly = (lane // S)[None, :]
    for s in range(0, steps):
        sy = s // nsx
        sx = s - sy * nsx
        px = (bx0 + sx * S)[:, None] + lx
        py = (by0 + sy * S)[:, None] + ly
        m = (s < nsub)[:, None] & (px <= bx1[:, None]) & (py <= by1[:, None])
        _draw(zbuf_ptr, v[:, None], f[:, None], px, py, m,
              e00[:, None], e01[:, None], e02[:, None], e10[:, None], e11[:, None], e12[:, None],
              e20[:, None], e21[:, None], e22[:, None], z0[:, None], z1[:, None], z2[:, None],
              w0[:, None], w1[:, None], w2[:, None], H, W)


@triton.jit(do_not_specialize=["n_items", "F", "N", "H", "W"])
def _big_kernel(pos_ptr, tri_ptr, iv_ptr, if_ptr, zbuf_ptr, big_ptr, nbig_ptr, n_items, F, N, H, W,
                INSTANCED: tl.constexpr, CULL: tl.constexpr, TS: tl.constexpr, PROGRAMS: tl.constexpr,
                SPLIT: tl.constexpr, HUGE: tl.constexpr):
    """Rasterise the medium (HUGE=False: list at the front of big_ptr) or huge (HUGE=True: at its
    back) triangles, each in TS x TS tiles; program (pid, part) takes tiles part, part + SPLIT, ..."""
    pid = tl.program_id(0)
    part = tl.program_id(1)
    if HUGE:
        n_big = tl.load(nbig_ptr + 1)
    else:
        n_big = tl.load(nbig_ptr)
    lane = tl.arange(0, TS * TS)
    lx = lane % TS
    ly = lane // TS
    for b in range(pid, n_big, PROGRAMS):
        if HUGE:
            item = tl.load(big_ptr + (n_items - 1 - b)).to(tl.int64)
        else:
            item = tl.load(big_ptr + b).to(tl.int64)
        (v, f, ok, e00, e01, e02, e10, e11, e12, e20, e21, e22, z0, z1, z2, w0, w1, w2,
         bx0, bx1, by0, by1) = _setup(pos_ptr, tri_ptr, iv_ptr, if_ptr, item, item >= 0, F, N, H, W,
                                      INSTANCED, CULL)
        ntx = (bx1 - bx0 + TS) // TS
        nty = (by1 - by0 + TS) // TS
        for t in range(part, ntx * nty, SPLIT):
            ty = t // ntx
            tx = t - ty * ntx
            px = bx0 + tx * TS + lx
            py = by0 + ty * TS + ly
            m = (px <= bx1) & (py <= by1)
            _draw(zbuf_ptr, v, f, px, py, m, e00, e01, e02, e10, e11, e12, e20, e21, e22,
                  z0, z1, z2, w0, w1, w2, H, W)


# --------------------------------------------------------------------------------------------
# Barycentrics: forward (resolve) and backward
# --------------------------------------------------------------------------------------------
@triton.jit
def _tile_coords(pid, H, W, TH: tl.constexpr, TW: tl.constexpr):
    """Program ``pid``'s TH x TW pixel tile: view (scalar), rows, columns, flat offsets, in-image mask.
    Tiles keep a program inside one view and make its pixels share few faces and edges (which the
    gradient aggregation and the antialias early-out exploit)."""
    tiles_x = (W + TW - 1) // TW
    tiles_y = (H + TH - 1) // TH
    per_view = tiles_x * tiles_y
    v = pid // per_view
    rem = pid - v * per_view
    ty = rem // tiles_x
    tx = rem - ty * tiles_x
    lane = tl.arange(0, TH * TW)
    i = ty * TH + lane // TW
    j = tx * TW + lane % TW
    m = (i < H) & (j < W)
    offs = (v.to(tl.int64) * H + i) * W + j
    return v.to(tl.int64), i, j, offs, m


@triton.jit
def _pixel_coords(offs, H, W):
    hw = H * W
    v = offs // hw
    rem = offs - v * hw
    py = rem // W
    px = rem - py * W
    return v, py, px


@triton.jit
def _corners(pos_ptr, tri_ptr, f, cov, pbase, N):
    i0 = tl.load(tri_ptr + f * 3 + 0, mask=cov, other=0).to(tl.int64)
    i1 = tl.load(tri_ptr + f * 3 + 1, mask=cov, other=0).to(tl.int64)
    i2 = tl.load(tri_ptr + f * 3 + 2, mask=cov, other=0).to(tl.int64)
    cov = cov & (i0 >= 0) & (i0 < N) & (i1 >= 0) & (i1 < N) & (i2 >= 0) & (i2 < N)
    a0 = (pbase + i0) * 4
    a1 = (pbase + i1) * 4
    a2 = (pbase + i2) * 4
    x0 = tl.load(pos_ptr + a0 + 0, mask=cov, other=0.0)
    y0 = tl.load(pos_ptr + a0 + 1, mask=cov, other=0.0)
    z0 = tl.load(pos_ptr + a0 + 2, mask=cov, other=0.0)
    w0 = tl.load(pos_ptr + a0 + 3, mask=cov, other=1.0)
    x1 = tl.load(pos_ptr + a1 + 0, mask=cov, other=0.0)
    y1 = tl.load(pos_ptr + a1 + 1, mask=cov, other=0.0)
    z1 = tl.load(pos_ptr + a1 + 2, mask=cov, other=0.0)
    w1 = tl.load(pos_ptr + a1 + 3, mask=cov, other=1.0)
    x2 = tl.load(pos_ptr + a2 + 0, mask=cov, other=0.0)
    y2 = tl.load(pos_ptr + a2 + 1, mask=cov, other=0.0)
    z2 = tl.load(pos_ptr + a2 + 2, mask=cov, other=0.0)
    w2 = tl.load(pos_ptr + a2 + 3, mask=cov, other=1.0)
    return cov, i0, i1, i2, x0, y0, z0, w0, x1, y1, z1, w1, x2, y2, z2, w2


@triton.jit(do_not_specialize=["total", "F", "N", "H", "W"])
def _resolve_kernel(src_ptr, pos_ptr, tri_ptr, rast_ptr, face_ptr, total, F, N, H, W,
                    FROM_KEYS: tl.constexpr, INSTANCED: tl.constexpr, BLOCK: tl.constexpr):
    """rast (V, H, W, 4) = (u, v, z/w, face + 1) and face (V, H, W) int32 from the z-buffer keys
    (or from a face-index map), in pos's precision."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < total
    if FROM_KEYS:
        key = tl.load(src_ptr + offs, mask=m, other=-1)
        f = tl.where(key >= 0, key & 0xFFFFFFFF, -1)
        f = tl.where(key == 0x7FFFFFFFFFFFFFFF, -1, f)
    else:
        f = tl.load(src_ptr + offs, mask=m, other=-1).to(tl.int64)
    cov = m & (f >= 0) & (f < F)
    v, py, px = _pixel_coords(offs, H, W)
    pbase = v * N if INSTANCED else v * 0
    (cov, i0, i1, i2, x0, y0, z0, w0, x1, y1, z1, w1, x2, y2, z2, w2) = _corners(pos_ptr, tri_ptr, f, cov,
                                                                                  pbase, N)
    xn = (2 * px + 1).to(x0.dtype) / W - 1.0
    yn = 1.0 - (2 * py + 1).to(x0.dtype) / H
    b0 = (y1 * w2 - w1 * y2) * xn + (w1 * x2 - x1 * w2) * yn + (x1 * y2 - y1 * x2)
    b1 = (y2 * w0 - w2 * y0) * xn + (w2 * x0 - x2 * w0) * yn + (x2 * y0 - y2 * x0)
    b2 = (y0 * w1 - w0 * y1) * xn + (w0 * x1 - x0 * w1) * yn + (x0 * y1 - y0 * x1)
    s = b0 + b1 + b2
    s = tl.where(cov & (s != 0), s, 1.0)
    u = b0 / s
    vv = b1 / s
    t = 1.0 - u - vv
    wc = u * w0 + vv * w1 + t * w2
    zw = (u * z0 + vv * z1 + t * z2) / tl.where(wc != 0, wc, 1.0)
    zero = tl.zeros_like(u)
    out = rast_ptr + offs * 4
    tl.store(out + 0, tl.where(cov, u, zero), mask=m)
    tl.store(out + 1, tl.where(cov, vv, zero), mask=m)
    tl.store(out + 2, tl.where(cov, zw, zero), mask=m)
    tl.store(out + 3, tl.where(cov, (f + 1).to(u.dtype), zero), mask=m)
    tl.store(face_ptr + offs, tl.where(cov, f, -1).to(tl.int32), mask=m)


@triton.jit
def _agg_add(ptr, val, sel):
    """Add the sum of ``val`` over the lanes ``sel`` into ``*ptr`` (a scalar address) with one atomic."""
    tl.atomic_add(ptr, tl.sum(tl.where(sel, val, 0.0), axis=0), sem="relaxed")


@triton.jit(do_not_specialize=["F", "N", "H", "W"])
def _bary_bwd_kernel(face_ptr, grad_ptr, pos_ptr, tri_ptr, gpos_ptr, F, N, H, W,
                     INSTANCED: tl.constexpr, TH: tl.constexpr, TW: tl.constexpr, AGG: tl.constexpr):
    """d loss / d clip (atomically into gpos) from d loss / d (u, v, z/w) per pixel. Same algebra as
    the numba kernel: u = b0 / s, v = b1 / s, b_k = (c_{k+1} x c_{k+2}) . (x, y, 1).

    Pixels of one large triangle would all add into the same three vertices, and same-address
    atomics serialise: up to AGG times, the tile's lanes showing its lowest remaining face are
    summed in registers first and added with one atomic per component."""
    v, py, px, offs, m = _tile_coords(tl.program_id(0), H, W, TH, TW)
    f = tl.load(face_ptr + offs, mask=m, other=-1).to(tl.int64)
    cov = m & (f >= 0) & (f < F)
    gu = tl.load(grad_ptr + offs * 4 + 0, mask=cov, other=0.0)
    gv = tl.load(grad_ptr + offs * 4 + 1, mask=cov, other=0.0)
    gz = tl.load(grad_ptr + offs * 4 + 2, mask=cov, other=0.0)
    cov = cov & ((gu != 0) | (gv != 0) | (gz != 0))
    pbase = v * N if INSTANCED else v * 0
    (cov, i0, i1, i2, x0, y0, z0, w0, x1, y1, z1, w1, x2, y2, z2, w2) = _corners(pos_ptr, tri_ptr, f, cov,
                                                                                  pbase, N)
    xn = (2 * px + 1).to(x0.dtype) / W - 1.0
    yn = 1.0 - (2 * py + 1).to(x0.dtype) / H
    b0 = (y1 * w2 - w1 * y2) * xn + (w1 * x2 - x1 * w2) * yn + (x1 * y2 - y1 * x2)
    b1 = (y2 * w0 - w2 * y0) * xn + (w2 * x0 - x2 * w0) * yn + (x2 * y0 - y2 * x0)
    b2 = (y0 * w1 - w0 * y1) * xn + (w0 * x1 - x0 * w1) * yn + (x0 * y1 - y0 * x1)
    s = b0 + b1 + b2
    s = tl.where(cov & (s != 0), s, 1.0)
    u = b0 / s
    vv = b1 / s
    t = 1.0 - u - vv
    wc = u * w0 + vv * w1 + t * w2
    wc = tl.where(wc != 0, wc, 1.0)
    zw = (u * z0 + vv * z1 + t * z2) / wc
    gu = gu.to(x0.dtype)
    gv = gv.to(x0.dtype)
    gz = gz.to(x0.dtype)
    gU = gu + gz * ((z0 - z2) - zw * (w0 - w2)) / wc
    gV = gv + gz * ((z1 - z2) - zw * (w1 - w2)) / wc
    gb0 = (gU * (1.0 - u) - gV * vv) / s
    gb1 = (gV * (1.0 - vv) - gU * u) / s
    gb2 = -(gU * u + gV * vv) / s
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
    d00 = ay - aw * yn
    d01 = aw * xn - ax
    d02 = gzw * u
    d03 = ax * yn - ay * xn - gzw * zw * u
    d10 = by - bw * yn
    d11 = bw * xn - bx
    d12 = gzw * vv
    d13 = bx * yn - by * xn - gzw * zw * vv
    d20 = cy - cw * yn
    d21 = cw * xn - cx
    d22 = gzw * t
    d23 = cx * yn - cy * xn - gzw * zw * t
    act = cov
    done = cov & False
    for _ in tl.static_range(AGG):
        fmin = tl.min(tl.where(act, f, 0x7FFFFFFFFFFFFFFF), axis=0)
        sel = act & (f == fmin)
        if tl.sum(sel.to(tl.int32), axis=0) > 1:
            r0 = gpos_ptr + (pbase + tl.max(tl.where(sel, i0, -1), axis=0)) * 4
            r1 = gpos_ptr + (pbase + tl.max(tl.where(sel, i1, -1), axis=0)) * 4
            r2 = gpos_ptr + (pbase + tl.max(tl.where(sel, i2, -1), axis=0)) * 4
            _agg_add(r0 + 0, d00, sel)
            _agg_add(r0 + 1, d01, sel)
            _agg_add(r0 + 2, d02, sel)
            _agg_add(r0 + 3, d03, sel)
            _agg_add(r1 + 0, d10, sel)
            _agg_add(r1 + 1, d11, sel)
            _agg_add(r1 + 2, d12, sel)
            _agg_add(r1 + 3, d13, sel)
            _agg_add(r2 + 0, d20, sel)
            _agg_add(r2 + 1, d21, sel)
            _agg_add(r2 + 2, d22, sel)
            _agg_add(r2 + 3, d23, sel)
            done = done | sel
        act = act & ~sel
    rest = cov & ~done
    g0 = gpos_ptr + (pbase + i0) * 4
    g1 = gpos_ptr + (pbase + i1) * 4
    g2 = gpos_ptr + (pbase + i2) * 4
    tl.atomic_add(g0 + 0, d00, mask=rest, sem="relaxed")
    tl.atomic_add(g0 + 1, d01, mask=rest, sem="relaxed")
    tl.atomic_add(g0 + 2, d02, mask=rest, sem="relaxed")
    tl.atomic_add(g0 + 3, d03, mask=rest, sem="relaxed")
    tl.atomic_add(g1 + 0, d10, mask=rest, sem="relaxed")
    tl.atomic_add(g1 + 1, d11, mask=rest, sem="relaxed")
    tl.atomic_add(g1 + 2, d12, mask=rest, sem="relaxed")
    tl.atomic_add(g1 + 3, d13, mask=rest, sem="relaxed")
    tl.atomic_add(g2 + 0, d20, mask=rest, sem="relaxed")
    tl.atomic_add(g2 + 1, d21, mask=rest, sem="relaxed")
    tl.atomic_add(g2 + 2, d22, mask=rest, sem="relaxed")
    tl.atomic_add(g2 + 3, d23, mask=rest, sem="relaxed")


# --------------------------------------------------------------------------------------------
# Interpolate
# --------------------------------------------------------------------------------------------
@triton.jit(do_not_specialize=["total", "F", "N", "H", "W", "C"])
def _interp_fwd_kernel(attr_ptr, rast_ptr, tri_ptr, out_ptr, total, F, N, H, W, C,
                       PER_VIEW: tl.constexpr, BLOCK: tl.constexpr, CP: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < total
    f = tl.load(rast_ptr + offs * 4 + 3, mask=m, other=0.0).to(tl.int64) - 1
    cov = m & (f >= 0) & (f < F)
    u = tl.load(rast_ptr + offs * 4 + 0, mask=cov, other=0.0)
    vv = tl.load(rast_ptr + offs * 4 + 1, mask=cov, other=0.0)
    k0 = tl.load(tri_ptr + f * 3 + 0, mask=cov, other=0).to(tl.int64)
    k1 = tl.load(tri_ptr + f * 3 + 1, mask=cov, other=0).to(tl.int64)
    k2 = tl.load(tri_ptr + f * 3 + 2, mask=cov, other=0).to(tl.int64)
    cov = cov & (k0 >= 0) & (k0 < N) & (k1 >= 0) & (k1 < N) & (k2 >= 0) & (k2 < N)
    abase = (offs // (H * W)) * N if PER_VIEW else offs * 0
    ch = tl.arange(0, CP)[None, :]
    cm = cov[:, None] & (ch < C)
    a0 = tl.load(attr_ptr + ((abase + k0) * C)[:, None] + ch, mask=cm, other=0.0)
    a1 = tl.load(attr_ptr + ((abase + k1) * C)[:, None] + ch, mask=cm, other=0.0)
    a2 = tl.load(attr_ptr + ((abase + k2) * C)[:, None] + ch, mask=cm, other=0.0)
    uu = u.to(a0.dtype)[:, None]
    vw = vv.to(a0.dtype)[:, None]
    val = uu * a0 + vw * a1 + (1.0 - uu - vw) * a2
    val = tl.where(cm, val, 0.0)
    tl.store(out_ptr + (offs * C)[:, None] + ch, val, mask=m[:, None] & (ch < C))


@triton.jit(do_not_specialize=["F", "N", "H", "W", "C"])
def _interp_bwd_kernel(attr_ptr, rast_ptr, tri_ptr, grad_ptr, grast_ptr, gattr_ptr, F, N, H, W, C,
                       PER_VIEW: tl.constexpr, NEED_RAST: tl.constexpr, NEED_ATTR: tl.constexpr,
                       TH: tl.constexpr, TW: tl.constexpr, AGG: tl.constexpr, CP: tl.constexpr):
    """d loss / d (u, v) per pixel, and d loss / d attr with atomics (the lanes of a tile's most
    common faces summed first, as in ``_bary_bwd_kernel``)."""
    v, py, px, offs, m = _tile_coords(tl.program_id(0), H, W, TH, TW)
    f = tl.load(rast_ptr + offs * 4 + 3, mask=m, other=0.0).to(tl.int64) - 1
    cov = m & (f >= 0) & (f < F)
    u = tl.load(rast_ptr + offs * 4 + 0, mask=cov, other=0.0)
    vv = tl.load(rast_ptr + offs * 4 + 1, mask=cov, other=0.0)
    k0 = tl.load(tri_ptr + f * 3 + 0, mask=cov, other=0).to(tl.int64)
    k1 = tl.load(tri_ptr + f * 3 + 1, mask=cov, other=0).to(tl.int64)
    k2 = tl.load(tri_ptr + f * 3 + 2, mask=cov, other=0).to(tl.int64)
    cov = cov & (k0 >= 0) & (k0 < N) & (k1 >= 0) & (k1 < N) & (k2 >= 0) & (k2 < N)
    abase = v * N if PER_VIEW else v * 0
    ch = tl.arange(0, CP)[None, :]
    cm = cov[:, None] & (ch < C)
    g = tl.load(grad_ptr + (offs * C)[:, None] + ch, mask=cm, other=0.0)
    if NEED_RAST:
        a0 = tl.load(attr_ptr + ((abase + k0) * C)[:, None] + ch, mask=cm, other=0.0)
        a1 = tl.load(attr_ptr + ((abase + k1) * C)[:, None] + ch, mask=cm, other=0.0)
        a2 = tl.load(attr_ptr + ((abase + k2) * C)[:, None] + ch, mask=cm, other=0.0)
        gu = tl.sum(g * (a0 - a2), axis=1)
        gv = tl.sum(g * (a1 - a2), axis=1)
        zero = tl.zeros_like(gu)
        tl.store(grast_ptr + offs * 4 + 0, gu.to(u.dtype), mask=m)
        tl.store(grast_ptr + offs * 4 + 1, gv.to(u.dtype), mask=m)
        tl.store(grast_ptr + offs * 4 + 2, zero.to(u.dtype), mask=m)
        tl.store(grast_ptr + offs * 4 + 3, zero.to(u.dtype), mask=m)
    if NEED_ATTR:
        uu = u.to(g.dtype)[:, None]
        vw = vv.to(g.dtype)[:, None]
        ga0 = uu * g
        ga1 = vw * g
        ga2 = (1.0 - uu - vw) * g
        ch1 = tl.arange(0, CP)
        act = cov
        done = cov & False
        for _ in tl.static_range(AGG):
            fmin = tl.min(tl.where(act, f, 0x7FFFFFFFFFFFFFFF), axis=0)
            sel = act & (f == fmin)
            if tl.sum(sel.to(tl.int32), axis=0) > 1:
                sm = sel[:, None] & (ch < C)
                r0 = gattr_ptr + (abase + tl.max(tl.where(sel, k0, -1), axis=0)) * C + ch1
                r1 = gattr_ptr + (abase + tl.max(tl.where(sel, k1, -1), axis=0)) * C + ch1
                r2 = gattr_ptr + (abase + tl.max(tl.where(sel, k2, -1), axis=0)) * C + ch1
                tl.atomic_add(r0, tl.sum(tl.where(sm, ga0, 0.0), axis=0), mask=ch1 < C, sem="relaxed")
                tl.atomic_add(r1, tl.sum(tl.where(sm, ga1, 0.0), axis=0), mask=ch1 < C, sem="relaxed")
                tl.atomic_add(r2, tl.sum(tl.where(sm, ga2, 0.0), axis=0), mask=ch1 < C, sem="relaxed")
                done = done | sel
            act = act & ~sel
        nz = (cov & ~done)[:, None] & (ch < C) & (g != 0)
        tl.atomic_add(gattr_ptr + ((abase + k0) * C)[:, None] + ch, ga0, mask=nz, sem="relaxed")
        tl.atomic_add(gattr_ptr + ((abase + k1) * C)[:, None] + ch, ga1, mask=nz, sem="relaxed")
        tl.atomic_add(gattr_ptr + ((abase + k2) * C)[:, None] + ch, ga2, mask=nz, sem="relaxed")


# --------------------------------------------------------------------------------------------
# Antialias
# --------------------------------------------------------------------------------------------
@triton.jit(do_not_specialize=["n_items", "F", "N"])
def _facing_kernel(pos_ptr, tri_ptr, facing_ptr, n_items, F, N, BLOCK: tl.constexpr):
    """facing (P * F,) int8: 1 where a face is counter-clockwise in NDC (det of the corners'
    (x, y, w) rows > 0), per view of pos (P = V in instanced mode, 1 in range mode)."""
    item = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = item < n_items
    v = item // F
    f = item - v * F
    (m, i0, i1, i2, x0, y0, z0, w0, x1, y1, z1, w1, x2, y2, z2, w2) = _corners(pos_ptr, tri_ptr, f, m, v * N, N)
    det = x0 * (y1 * w2 - w1 * y2) + y0 * (w1 * x2 - x1 * w2) + w0 * (x1 * y2 - y1 * x2)
    tl.store(facing_ptr + item, (m & (det > 0)).to(tl.int8), mask=item < n_items)


@triton.jit(do_not_specialize=["n_items", "F"])
def _silhouette_kernel(facing_ptr, topo_ptr, sil_ptr, n_items, F, BLOCK: tl.constexpr):
    """sil (P * F,) int8: bit k set where edge k of the face is a silhouette in that view (no
    neighbour across it, or a neighbour facing the other way). Most faces of a dense mesh have
    none, and the antialias kernels then skip them after one byte."""
    item = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = item < n_items
    v = item // F
    f = item - v * F
    mine = tl.load(facing_ptr + item, mask=m, other=0)
    bits = tl.zeros_like(mine)
    for k in tl.static_range(3):
        n = tl.load(topo_ptr + f * 3 + k, mask=m, other=-1).to(tl.int64)
        has_n = (n >= 0) & (n < F)
        theirs = tl.load(facing_ptr + v * F + n, mask=m & has_n, other=0)
        sil = ~has_n | (theirs != mine)
        bits = bits | (sil.to(tl.int8) << k)
    tl.store(sil_ptr + item, bits, mask=m)


@triton.jit
def _aa_pair(rast_ptr, pos_ptr, tri_ptr, sil_ptr, v, pbase, ia, ja, ib, jb, m, F, N, H, W,
             INSTANCED: tl.constexpr, HORIZONTAL: tl.constexpr):
    """One pixel pair per lane (b the right / lower neighbour of a): whether a silhouette edge of
    the nearer face T crosses the segment between the centres, where (t in [0, 1] from T's pixel),
    which of the two pixels shows T, and the edge's corners (index, clip x, y, w) and the crossing
    geometry (pa, qa along the pair, pc, qc across it, the line), as the reference defines them."""
    oa = (v * H + ia) * W + ja
    ob = (v * H + ib) * W + jb
    fa = tl.load(rast_ptr + oa * 4 + 3, mask=m, other=0.0).to(tl.int64) - 1
    fb = tl.load(rast_ptr + ob * 4 + 3, mask=m, other=0.0).to(tl.int64) - 1
    fa = tl.where(fa < F, fa, -1)
    fb = tl.where(fb < F, fb, -1)
    d = m & (fa != fb)
    za = tl.load(rast_ptr + oa * 4 + 2, mask=d, other=0.0)
    zb = tl.load(rast_ptr + ob * 4 + 2, mask=d, other=0.0)
    a_front = (fb < 0) | ((fa >= 0) & (za < zb))
    ft = tl.where(a_front, fa, fb)
    sv = v if INSTANCED else v * 0
    bits = tl.load(sil_ptr + sv * F + ft, mask=d & (ft >= 0), other=0)
    d = d & (bits != 0)
    zero = tl.where(m, tl.load(pos_ptr) * 0, tl.load(pos_ptr) * 0)  # pos's dtype, the lanes' shape
    found = d & False
    t_sel = zero
    va = ft * 0
    vb = ft * 0
    xa_s = zero
    ya_s = zero
    wa_s = zero + 1.0
    xb_s = zero
    yb_s = zero
    wb_s = zero + 1.0
    pa_s = zero
    qa_s = zero
    pc_s = zero
    qc_s = zero + 1.0
    # Most pixel pairs of a tile show no silhouette edge of their nearer face: skip the geometry.
    if tl.max(d.to(tl.int32), axis=0) > 0:
        (d, i0, i1, i2, x0, y0, z0, w0, x1, y1, z1, w1, x2, y2, z2, w2) = _corners(pos_ptr, tri_ptr, ft, d, pbase,
                                                                                    N)
        fw = W.to(x0.dtype)
        fh = H.to(x0.dtype)
        xa = ja.to(x0.dtype) + 0.5
        ya = ia.to(x0.dtype) + 0.5
        xb = jb.to(x0.dtype) + 0.5
        yb = ib.to(x0.dtype) + 0.5
        for k in tl.static_range(3):
            if k == 0:
                ka, kb, px_, py_, pw_, qx_, qy_, qw_ = i0, i1, x0, y0, w0, x1, y1, w1
            elif k == 1:
                ka, kb, px_, py_, pw_, qx_, qy_, qw_ = i1, i2, x1, y1, w1, x2, y2, w2
            else:
                ka, kb, px_, py_, pw_, qx_, qy_, qw_ = i2, i0, x2, y2, w2, x0, y0, w0
            sil = ((bits >> k) & 1) != 0
            ok_w = (pw_ > 1e-8) & (qw_ > 1e-8)
            spw = tl.where(tl.abs(pw_) > 1e-12, pw_, 1e-12)
            sqw = tl.where(tl.abs(qw_) > 1e-12, qw_, 1e-12)
            pcol = (px_ / spw + 1.0) * 0.5 * fw
            prow = (1.0 - py_ / spw) * 0.5 * fh
            qcol = (qx_ / sqw + 1.0) * 0.5 * fw
            qrow = (1.0 - qy_ / sqw) * 0.5 * fh
            if HORIZONTAL:  # pairs across the edge's run: edges at least as steep as 45 degrees
                pa, qa, pc, qc, line = pcol, qcol, prow, qrow, ya
                start = tl.where(a_front, xa, xb)
                step = tl.where(a_front, xb - xa, xa - xb)
                steep = tl.abs(qc - pc) >= tl.abs(qa - pa)
            else:  # edges flatter than 45 degrees
                pa, qa, pc, qc, line = prow, qrow, pcol, qcol, xa
                start = tl.where(a_front, ya, yb)
                step = tl.where(a_front, yb - ya, ya - yb)
                steep = tl.abs(qc - pc) > tl.abs(qa - pa)
            crosses = ((pc < line) != (qc < line)) & steep
            dc = tl.where(crosses, qc - pc, 1.0)
            at = pa + (line - pc) * (qa - pa) / dc
            t = (at - start) / step
            take = d & crosses & (t >= 0) & (t <= 1) & sil & ok_w & ~found
            t_sel = tl.where(take, t, t_sel)
            va = tl.where(take, ka, va)
            vb = tl.where(take, kb, vb)
            xa_s = tl.where(take, px_, xa_s)
            ya_s = tl.where(take, py_, ya_s)
            wa_s = tl.where(take, pw_, wa_s)
            xb_s = tl.where(take, qx_, xb_s)
            yb_s = tl.where(take, qy_, yb_s)
            wb_s = tl.where(take, qw_, wb_s)
            pa_s = tl.where(take, pa, pa_s)
            qa_s = tl.where(take, qa, qa_s)
            pc_s = tl.where(take, pc, pc_s)
            qc_s = tl.where(take, qc, qc_s)
            found = found | take
    return (found, t_sel, a_front, oa, ob, va, vb, xa_s, ya_s, wa_s, xb_s, yb_s, wb_s,
            pa_s, qa_s, pc_s, qc_s)


@triton.jit
def _aa_side(i, j, SIDE: tl.constexpr):
    """Pixel pair of side SIDE of pixel (i, j): 0 left, 1 right, 2 up, 3 down; (a, b) in order."""
    if SIDE == 0:
        return i, j - 1, i, j
    elif SIDE == 1:
        return i, j, i, j + 1
    elif SIDE == 2:
        return i - 1, j, i, j
    else:
        return i, j, i + 1, j


@triton.jit(do_not_specialize=["F", "N", "H", "W", "C"])
def _aa_fwd_kernel(color_ptr, rast_ptr, pos_ptr, tri_ptr, sil_ptr, out_ptr, F, N, H, W, C,
                   INSTANCED: tl.constexpr, TH: tl.constexpr, TW: tl.constexpr, CP: tl.constexpr):
    """Gather form: each pixel adds the deltas of the pairs it takes part in whose target it is."""
    v, i, j, offs, m = _tile_coords(tl.program_id(0), H, W, TH, TW)
    pbase = v * N if INSTANCED else v * 0
    ch = tl.arange(0, CP)[None, :]
    cm = m[:, None] & (ch < C)
    acc = tl.load(color_ptr + (offs * C)[:, None] + ch, mask=cm, other=0.0)
    for side in tl.static_range(4):
        ia, ja, ib, jb = _aa_side(i, j, side)
        if side == 0:
            valid = m & (j > 0)
        elif side == 1:
            valid = m & (j < W - 1)
        elif side == 2:
            valid = m & (i > 0)
        else:
            valid = m & (i < H - 1)
        (found, t, a_front, oa, ob, va, vb, xa_s, ya_s, wa_s, xb_s, yb_s, wb_s,
         pa_s, qa_s, pc_s, qc_s) = _aa_pair(rast_ptr, pos_ptr, tri_ptr, sil_ptr, v, pbase, ia, ja, ib, jb,
                                            valid, F, N, H, W, INSTANCED, side < 2)
        ot = tl.where(a_front, oa, ob)
        oo = tl.where(a_front, ob, oa)
        reach = t - 0.5
        into_other = reach > 0
        target = tl.where(into_other, oo, ot)
        hit = found & (target == offs)
        hm = hit[:, None] & (ch < C)
        ct = tl.load(color_ptr + (ot * C)[:, None] + ch, mask=hm, other=0.0)
        co = tl.load(color_ptr + (oo * C)[:, None] + ch, mask=hm, other=0.0)
        r = reach.to(ct.dtype)[:, None]
        delta = tl.where(into_other[:, None], r * (ct - co), -r * (co - ct))
        acc += tl.where(hm, delta, 0.0)
    tl.store(out_ptr + (offs * C)[:, None] + ch, acc, mask=cm)


@triton.jit(do_not_specialize=["F", "N", "H", "W", "C"])
def _aa_bwd_kernel(color_ptr, rast_ptr, pos_ptr, tri_ptr, sil_ptr, grad_ptr, gcolor_ptr, gpos_ptr,
                   F, N, H, W, C, INSTANCED: tl.constexpr, NEED_POS: tl.constexpr,
                   TH: tl.constexpr, TW: tl.constexpr, CP: tl.constexpr):
    """d loss / d color by gathering per pixel; d loss / d clip from each pair once (from its first
    pixel), atomically."""
    v, i, j, offs, m = _tile_coords(tl.program_id(0), H, W, TH, TW)
    pbase = v * N if INSTANCED else v * 0
    ch = tl.arange(0, CP)[None, :]
    cm = m[:, None] & (ch < C)
    gacc = tl.load(grad_ptr + (offs * C)[:, None] + ch, mask=cm, other=0.0)
    fw = W.to(tl.float32)
    fh = H.to(tl.float32)
    for side in tl.static_range(4):
        ia, ja, ib, jb = _aa_side(i, j, side)
        if side == 0:
            valid = m & (j > 0)
        elif side == 1:
            valid = m & (j < W - 1)
        elif side == 2:
            valid = m & (i > 0)
        else:
            valid = m & (i < H - 1)
        (found, t, a_front, oa, ob, va, vb, xa_s, ya_s, wa_s, xb_s, yb_s, wb_s,
         pa_s, qa_s, pc_s, qc_s) = _aa_pair(rast_ptr, pos_ptr, tri_ptr, sil_ptr, v, pbase, ia, ja, ib, jb,
                                            valid, F, N, H, W, INSTANCED, side < 2)
        ot = tl.where(a_front, oa, ob)
        oo = tl.where(a_front, ob, oa)
        reach = t - 0.5
        into_other = reach > 0
        target = tl.where(into_other, oo, ot)
        alpha = tl.abs(reach)
        fm = found[:, None] & (ch < C)
        gt = tl.load(grad_ptr + (target * C)[:, None] + ch, mask=fm, other=0.0)
        al = alpha.to(gt.dtype)[:, None]
        contrib = tl.where((target == offs)[:, None], -al * gt, al * gt)
        gacc += tl.where(fm, contrib, 0.0)
        if NEED_POS:
            if side == 1 or side == 3:  # this pixel is the pair's first: its clip gradient once
                ct = tl.load(color_ptr + (ot * C)[:, None] + ch, mask=fm, other=0.0)
                co = tl.load(color_ptr + (oo * C)[:, None] + ch, mask=fm, other=0.0)
                g_t = tl.sum(tl.where(fm, gt * (ct - co), 0.0), axis=1).to(xa_s.dtype)
                pm = found & (g_t != 0)
                gat = tl.where(a_front, g_t, -g_t)  # step is +1 when a shows T, else -1
                dcq = tl.where(pm, qc_s - pc_s, 1.0)
                slope = (qa_s - pa_s) / dcq
                if side == 1:
                    line = ia.to(xa_s.dtype) + 0.5
                else:
                    line = ja.to(xa_s.dtype) + 0.5
                r = (line - pc_s) / dcq
                g_pa = gat * (1.0 - r)
                g_qa = gat * r
                g_pc = gat * slope * (r - 1.0)
                g_qc = -gat * slope * r
                if side == 1:
                    gpcol, gprow, gqcol, gqrow = g_pa, g_pc, g_qa, g_qc
                else:
                    gpcol, gprow, gqcol, gqrow = g_pc, g_pa, g_qc, g_qa
                wa = tl.where(pm, wa_s, 1.0)
                wb = tl.where(pm, wb_s, 1.0)
                ga = gpos_ptr + (pbase + va) * 4
                gb = gpos_ptr + (pbase + vb) * 4
                tl.atomic_add(ga + 0, gpcol * 0.5 * fw / wa, mask=pm, sem="relaxed")
                tl.atomic_add(ga + 1, -gprow * 0.5 * fh / wa, mask=pm, sem="relaxed")
                gwa = (-gpcol * 0.5 * fw * xa_s + gprow * 0.5 * fh * ya_s) / (wa * wa)
                tl.atomic_add(ga + 3, gwa, mask=pm, sem="relaxed")
                tl.atomic_add(gb + 0, gqcol * 0.5 * fw / wb, mask=pm, sem="relaxed")
                tl.atomic_add(gb + 1, -gqrow * 0.5 * fh / wb, mask=pm, sem="relaxed")
                gwb = (-gqcol * 0.5 * fw * xb_s + gqrow * 0.5 * fh * yb_s) / (wb * wb)
                tl.atomic_add(gb + 3, gwb, mask=pm, sem="relaxed")
    tl.store(gcolor_ptr + (offs * C)[:, None] + ch, gacc, mask=cm)


# --------------------------------------------------------------------------------------------
# Host side
# --------------------------------------------------------------------------------------------
def _grid(n: int, block: int) -> tuple[int]:
    return (triton.cdiv(n, block),)


def _layout(pos: torch.Tensor, tri: torch.Tensor, ranges: torch.Tensor | None):
    """(instanced, views, items, item_view, item_face) for the visibility kernels."""
    dev = pos.device
    if ranges is None:
        dummy = torch.empty(1, dtype=torch.int32, device=dev)
        return True, pos.shape[0], pos.shape[0] * tri.shape[0], dummy, dummy
    r = ranges.detach().to("cpu", torch.int64).reshape(-1, 2)  # tiny; nvdiffrast keeps ranges on the CPU
    if len(r) and (int(r.min()) < 0 or int((r[:, 0] + r[:, 1]).max()) > tri.shape[0]):
        raise ValueError(f"ranges: face ranges must lie in [0, {tri.shape[0]}]")
    counts = r[:, 1]
    total = int(counts.sum())
    if total >= 2**31:
        raise ValueError("ranges: more than 2**31 - 1 (image, face) pairs in one call")
    # The (image, face) item arrays can hold tens of millions of entries (a batch of characters x
    # views x layer sets): expand them on the device, from per-range values, never on the host.
    counts_d = counts.to(dev, torch.int32, non_blocking=True)
    # face = item index - first item of its range + first face of its range
    offset = (r[:, 0] - (torch.cumsum(counts, 0) - counts)).to(dev, torch.int32, non_blocking=True)
    views = torch.repeat_interleave(torch.arange(len(r), device=dev, dtype=torch.int32), counts_d,
                                    output_size=total)
    faces = torch.arange(total, device=dev, dtype=torch.int32)
    faces += torch.repeat_interleave(offset, counts_d, output_size=total)
    return False, len(r), total, views, faces


def _zbuffer(pos, tri, h, w, ranges, cull):
    """(V * H * W,) int64 keys: (depth bits << 32) | face, or _EMPTY."""
    instanced, views, n_items, iv, if_ = _layout(pos, tri, ranges)
    n = pos.shape[-2]
    zbuf = torch.full((views * h * w,), _EMPTY, dtype=torch.int64, device=pos.device)
    if n_items == 0:
        return zbuf, instanced, views
    nbig = torch.zeros(2, dtype=torch.int32, device=pos.device)  # medium and huge list lengths
    big = torch.empty(n_items, dtype=torch.int32, device=pos.device)
    f = tri.shape[0]
    _small_kernel[_grid(n_items, _BLOCK_TRI)](
        pos, tri, iv, if_, zbuf, big, nbig, n_items, f, n, h, w,
        INSTANCED=instanced, CULL=bool(cull), BLOCK=_BLOCK_TRI, S=_S, MAXS=_MAXS, MEDIUM=_MEDIUM,
        num_warps=_WARPS_TRI)
    for huge, programs, split in ((False, _BIG_PROGRAMS, 1), (True, _HUGE_PROGRAMS, _SPLIT)):
        _big_kernel[(programs, split)](
            pos, tri, iv, if_, zbuf, big, nbig, n_items, f, n, h, w,
            INSTANCED=instanced, CULL=bool(cull), TS=_TS, PROGRAMS=programs, SPLIT=split, HUGE=huge, num_warps=4)
    return zbuf, instanced, views


def _prep(pos: torch.Tensor, tri: torch.Tensor):
    if pos.device.type != "cuda" and not _INTERPRET:
        raise ValueError("the triton backend needs CUDA tensors (or TRITON_INTERPRET=1 set before import)")
    return pos.detach().contiguous(), tri.detach().to(torch.int32).contiguous()


def visibility_triton(pos, tri, resolution, ranges=None, cull_backfaces=False):
    """Visibility backend ``"triton"``: (V, H, W) int32 face ids, -1 for background."""
    h, w = resolution
    p, t = _prep(pos, tri)
    zbuf, _, views = _zbuffer(p, t, h, w, ranges, cull_backfaces)
    face = torch.where(zbuf == _EMPTY, torch.full_like(zbuf, -1), zbuf & 0xFFFFFFFF)
    return face.view(views, h, w).to(torch.int32)


class _Rasterize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pos, tri, h, w, ranges, cull, face_index):
        p, t = _prep(pos, tri)
        if face_index is None:
            src, instanced, views = _zbuffer(p, t, h, w, ranges, cull)
        else:
            views = face_index.shape[0]
            instanced = ranges is None
            src = face_index.contiguous()
        rast = torch.empty((views, h, w, 4), dtype=pos.dtype, device=pos.device)
        face = torch.empty((views, h, w), dtype=torch.int32, device=pos.device)
        total = views * h * w
        if total:
            _resolve_kernel[_grid(total, _BLOCK_PIX)](
                src, p, t, rast, face, total, t.shape[0], p.shape[-2], h, w,
                FROM_KEYS=face_index is None, INSTANCED=instanced, BLOCK=_BLOCK_PIX, num_warps=4)
        ctx.save_for_backward(p, t, face)
        ctx.instanced = instanced
        ctx.mark_non_differentiable(face)
        return rast, face

    @staticmethod
    @once_differentiable
    def backward(ctx, grad, _grad_face):
        p, t, face = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return (None,) * 7
        gpos = torch.zeros(p.shape, dtype=torch.float32 if p.dtype != torch.float64 else p.dtype,
                           device=p.device)
        views, h, w = face.shape
        total = views * h * w
        if total and t.shape[0]:
            _bary_bwd_kernel[(views * triton.cdiv(h, _TH) * triton.cdiv(w, _TW),)](
                face, grad.contiguous(), p, t, gpos, t.shape[0], p.shape[-2], h, w,
                INSTANCED=ctx.instanced, TH=_TH, TW=_TW, AGG=_AGG, num_warps=4)
        return gpos.to(p.dtype), None, None, None, None, None, None


def rasterize_triton(pos, tri, resolution, ranges=None, cull_backfaces=False):
    """Fused visibility + barycentrics (see :func:`stdgen.render.rasterize.rasterize`)."""
    h, w = resolution
    rast, _ = _Rasterize.apply(pos, tri, h, w, ranges, cull_backfaces, None)
    return rast


def barycentrics_triton(pos, tri, face_index, ranges=None):
    """Barycentrics from a given face-index map (see :func:`stdgen.render.rasterize.barycentrics`)."""
    views, h, w = face_index.shape
    rast, _ = _Rasterize.apply(pos, tri, h, w, ranges, False, face_index.to(torch.int32))
    return rast


def _pow2(c: int) -> int:
    return max(1, triton.next_power_of_2(c))


class _Interpolate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, attr, rast, tri):
        views, h, w, _ = rast.shape
        per_view = attr.dim() == 3 and attr.shape[0] == views and views > 1
        a = attr.detach().contiguous()
        r = rast.detach().contiguous()
        t = tri.detach().to(torch.int32).contiguous()
        c = attr.shape[-1]
        out = torch.empty((views, h, w, c), dtype=attr.dtype, device=attr.device)
        total = views * h * w
        if total and c:
            _interp_fwd_kernel[_grid(total, _BLOCK_PIX)](
                a, r, t, out, total, t.shape[0], a.shape[-2], h, w, c,
                PER_VIEW=per_view, BLOCK=_BLOCK_PIX, CP=_pow2(c), num_warps=4)
        ctx.save_for_backward(a, r, t)
        ctx.per_view = per_view
        ctx.attr_shape = attr.shape
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        a, r, t = ctx.saved_tensors
        need_attr, need_rast = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        views, h, w, _ = r.shape
        c = a.shape[-1]
        total = views * h * w
        grast = torch.empty_like(r) if need_rast else r.new_empty(1)
        acc = torch.float64 if a.dtype == torch.float64 else torch.float32
        gattr = torch.zeros(a.shape, dtype=acc, device=a.device) if need_attr else a.new_empty(1)
        if total and c and (need_attr or need_rast):
            _interp_bwd_kernel[(views * triton.cdiv(h, _TH) * triton.cdiv(w, _TW),)](
                a, r, t, grad.contiguous(), grast, gattr, t.shape[0], a.shape[-2], h, w, c,
                PER_VIEW=ctx.per_view, NEED_RAST=need_rast, NEED_ATTR=need_attr, TH=_TH, TW=_TW, AGG=_AGG,
                CP=_pow2(c), num_warps=4)
        elif need_rast:
            grast.zero_()
        return (gattr.to(a.dtype).view(ctx.attr_shape) if need_attr else None,
                grast if need_rast else None, None)


def interpolate_triton(attr, rast, tri):
    """CUDA interpolate (see :func:`stdgen.render.interpolate.interpolate`)."""
    return _Interpolate.apply(attr, rast, tri)


def _silhouettes(p: torch.Tensor, t: torch.Tensor, topology: torch.Tensor, instanced: bool) -> torch.Tensor:
    """(P * F,) int8 silhouette-edge bits per view of pos and face (see ``_silhouette_kernel``)."""
    f = t.shape[0]
    views = p.shape[0] if instanced else 1
    n_items = views * f
    facing = torch.empty(n_items, dtype=torch.int8, device=p.device)
    sil = torch.empty(n_items, dtype=torch.int8, device=p.device)
    if n_items:
        topo = topology.detach().to(device=p.device, dtype=torch.int32).contiguous()
        _facing_kernel[_grid(n_items, 1024)](p, t, facing, n_items, f, p.shape[-2], BLOCK=1024, num_warps=4)
        _silhouette_kernel[_grid(n_items, 1024)](facing, topo, sil, n_items, f, BLOCK=1024, num_warps=4)
    return sil


class _Antialias(torch.autograd.Function):
    @staticmethod
    def forward(ctx, color, rast, pos, tri, topology, ranges):
        views, h, w, c = color.shape
        col = color.detach().contiguous()
        r = rast.detach().contiguous()
        p, t = _prep(pos, tri)
        instanced = ranges is None
        sil = _silhouettes(p, t, topology, instanced)
        out = torch.empty_like(col)
        total = views * h * w
        if total and c:
            _aa_fwd_kernel[(views * triton.cdiv(h, _TH) * triton.cdiv(w, _TW),)](
                col, r, p, t, sil, out, t.shape[0], p.shape[-2], h, w, c,
                INSTANCED=instanced, TH=_TH, TW=_TW, CP=_pow2(c), num_warps=4)
        ctx.save_for_backward(col, r, p, t, sil)
        ctx.instanced = instanced
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        col, r, p, t, sil = ctx.saved_tensors
        need_pos = bool(ctx.needs_input_grad[2])
        views, h, w, c = col.shape
        total = views * h * w
        gcolor = torch.empty_like(col)
        acc = torch.float64 if p.dtype == torch.float64 else torch.float32
        gpos = torch.zeros(p.shape, dtype=acc, device=p.device) if need_pos else p.new_empty(1)
        if total and c:
            _aa_bwd_kernel[(views * triton.cdiv(h, _TH) * triton.cdiv(w, _TW),)](
                col, r, p, t, sil, grad.contiguous(), gcolor, gpos, t.shape[0], p.shape[-2], h, w, c,
                INSTANCED=ctx.instanced, NEED_POS=need_pos, TH=_TH, TW=_TW, CP=_pow2(c), num_warps=4)
        else:
            gcolor.copy_(grad)
        return (gcolor if ctx.needs_input_grad[0] else None, None,
                gpos.to(p.dtype) if need_pos else None, None, None, None)


def antialias_triton(color, rast, pos, tri, topology, ranges=None):
    """CUDA antialias (see :func:`stdgen.render.antialias.antialias`)."""
    return _Antialias.apply(color, rast, pos, tri, topology, ranges)


VISIBILITY_BACKENDS["triton"] = visibility_triton
_backend.register("triton", ("cuda", "cpu") if _INTERPRET else "cuda", rasterize=rasterize_triton,
                  barycentrics=barycentrics_triton, interpolate=interpolate_triton, antialias=antialias_triton)
