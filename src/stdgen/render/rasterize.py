"""Rasterisation: which triangle covers each pixel, with differentiable barycentrics and depth.

``rasterize`` runs in two passes:

1. **Visibility** (no gradients): per pixel, the index of the nearest triangle covering its
   centre. This pass has interchangeable backends: the plain PyTorch reference (always
   present, CPU and CUDA) and fast paths registered in :data:`VISIBILITY_BACKENDS` (tested
   against the reference).
2. **Barycentrics** (differentiable): for each covered pixel, the perspective-correct
   barycentrics and ``z/w`` of its triangle, recomputed from the clip-space vertices with 2D
   homogeneous edge functions (Olano and Greer 1997). Gradients flow from the output to ``pos``
   through them, which is how ``interpolate`` moves vertices. Reference: :func:`barycentrics_torch`
   (autograd); the fast paths have analytic backward passes, and the Triton one fuses both passes.

Edges are inclusive (a pixel centre exactly on an edge is inside), edge functions of a shared
edge are exact negatives of each other (see :func:`cross`), so a closed mesh shows no cracks;
equal depths go to the lower face index.

Near-plane handling needs no clipping of geometry: the edge functions work in homogeneous
coordinates, and a pixel is kept only where the interpolated point has ``w > 0`` and
``-1 <= z/w <= 1``, so triangles crossing the near plane are cut exactly per pixel.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from stdgen.render import _backend
from stdgen.utils.checks import check_tensor

#: Visibility backends by name. Each is ``fn(pos, tri, resolution, ranges, cull_backfaces) ->
#: face_index (V, H, W) int32`` with -1 where no triangle covers the pixel centre, and must give
#: the triangle that :func:`visibility_torch` gives (ties in depth go to the lower face index).
VISIBILITY_BACKENDS: dict[str, Callable] = {}

_INT64_MAX = torch.iinfo(torch.int64).max


def rasterize(
    pos: torch.Tensor,
    tri: torch.Tensor,
    resolution: tuple[int, int],
    *,
    ranges: torch.Tensor | None = None,
    cull_backfaces: bool = False,
    backend: str = "auto",
) -> torch.Tensor:
    """Rasterise triangles into V images.

    Args:
        pos: clip-space vertex positions, ``(V, N, 4)`` for V views of one mesh (instanced
            mode), or ``(N, 4)`` together with ``ranges`` (range mode: a batch of different meshes
            concatenated, each drawn into its own image).
        tri: ``(F, 3)`` integer vertex indices; counter-clockwise in NDC is front-facing.
        resolution: ``(H, W)``.
        ranges: ``(V, 2)`` int ``[first_face, face_count]`` per image (range mode only).
        cull_backfaces: skip triangles that are clockwise in NDC.
        backend: visibility backend: ``"auto"`` (fastest available for the device), ``"torch"``
            (the reference) or a name in :data:`VISIBILITY_BACKENDS`.

    Returns:
        ``rast`` ``(V, H, W, 4)`` float32: ``(u, v, z/w, face_id + 1)`` per pixel, all zero where
        no triangle covers it. ``u`` weights the face's first vertex and ``v`` its second, so an
        attribute interpolates as ``u a0 + v a1 + (1 - u - v) a2``. ``face_id`` indexes ``tri``
        (globally, in range mode); it is exact in float32 up to 2**24 faces. Differentiable with
        respect to ``pos`` through ``u``, ``v`` and ``z/w``.
    """
    h, w = _check_resolution(resolution)
    pos, tri = _check_inputs(pos, tri, ranges)
    _backend.check_name(backend)
    fused = _backend.pick("rasterize", backend, pos.device)
    if fused is not None:  # a backend that does visibility and barycentrics in one pass
        return fused(pos, tri, (h, w), ranges, cull_backfaces)
    face_index = visibility(pos, tri, (h, w), ranges=ranges, cull_backfaces=cull_backfaces, backend=backend)
    return barycentrics(pos, tri, face_index, ranges=ranges, backend=backend)


def visibility(
    pos: torch.Tensor,
    tri: torch.Tensor,
    resolution: tuple[int, int],
    *,
    ranges: torch.Tensor | None = None,
    cull_backfaces: bool = False,
    backend: str = "auto",
) -> torch.Tensor:
    """The visibility pass alone: ``(V, H, W)`` int32 face index per pixel, -1 for background."""
    h, w = _check_resolution(resolution)
    pos, tri = _check_inputs(pos, tri, ranges)
    fn = _pick_backend(backend, pos.device)
    with torch.no_grad():
        return fn(pos.detach(), tri, (h, w), ranges, cull_backfaces).to(pos.device)


def _pick_backend(name: str, device: torch.device) -> Callable:
    if name == "torch":
        return visibility_torch
    _backend.check_name(name)
    if name == "auto":
        preferred = ("triton",) if device.type == "cuda" else ("numba",)
        for cand in preferred:
            if cand in VISIBILITY_BACKENDS:
                return VISIBILITY_BACKENDS[cand]
        return visibility_torch
    if name not in VISIBILITY_BACKENDS:
        raise ValueError(f"rasteriser backend {name!r} has no visibility pass")
    return VISIBILITY_BACKENDS[name]


def _load_fast_backends() -> None:
    """Import the optional fast-path modules, which register themselves if their library is present."""
    _backend.load()


def _check_resolution(resolution) -> tuple[int, int]:
    try:
        h, w = (int(x) for x in resolution)
    except (TypeError, ValueError):
        raise ValueError(f"resolution: expected (H, W), got {resolution!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"resolution: expected positive (H, W), got {resolution!r}")
    return h, w


def _check_inputs(pos: torch.Tensor, tri: torch.Tensor, ranges: torch.Tensor | None):
    check_tensor(pos, "pos", dtype=(torch.float32, torch.float64))
    check_tensor(tri, "tri", (None, 3), dtype=(torch.int32, torch.int64))
    if ranges is None:
        if pos.dim() != 3 or pos.shape[-1] != 4:
            raise ValueError(f"pos: expected (V, N, 4) clip positions, got {tuple(pos.shape)}")
    else:
        if pos.dim() != 2 or pos.shape[-1] != 4:
            raise ValueError(f"pos: range mode expects (N, 4) clip positions, got {tuple(pos.shape)}")
        check_tensor(ranges, "ranges", (None, 2), dtype=(torch.int32, torch.int64))
    if tri.device != pos.device:
        raise ValueError(f"tri is on {tri.device} but pos is on {pos.device}")
    _check_indices(tri, pos.shape[-2])
    return pos, tri


_CHECKED: dict[tuple, None] = {}


def _check_indices(tri: torch.Tensor, n: int) -> None:
    """Raise if an index in ``tri`` lies outside ``[0, n)``.

    On a GPU reading the answer waits for the device, so an index array already checked (same
    memory, same version counter, same vertex count) is not checked again: the render loop of an
    optimisation then never synchronises. (The GPU kernels also range-check every index they
    read, so a stale entry cannot fault the device; the CPU kernels rely on this check.)
    """
    if tri.numel() == 0:
        return
    key = None
    # Inference-mode tensors have no version counter: check those every time.
    if tri.device.type != "cpu" and not tri.is_inference():
        key = (tri.device, tri.data_ptr(), tri._version, tuple(tri.shape), tri.dtype, n)
        if key in _CHECKED:
            return
    if int(tri.min()) < 0 or int(tri.max()) >= n:
        raise ValueError(f"tri: indices must lie in [0, {n})")
    if key is not None:
        if len(_CHECKED) >= 64:
            _CHECKED.pop(next(iter(_CHECKED), None), None)
        _CHECKED[key] = None


def _view_faces(tri: torch.Tensor, ranges: torch.Tensor | None, view: int) -> torch.Tensor:
    """Global face indices drawn into image ``view``."""
    if ranges is None:
        return torch.arange(tri.shape[0], device=tri.device)
    start, count = (int(x) for x in ranges[view])
    return torch.arange(start, start + count, device=tri.device)


def cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cross product of (..., 3) vectors, written out so that ``cross(a, b) == -cross(b, a)`` holds
    exactly (``torch.linalg.cross`` may fuse multiply-adds and lose that): the two triangles sharing
    an edge then get exactly opposite edge functions, and a pixel centre on the edge is covered by
    one of them, never by neither (no cracks)."""
    a0, a1, a2 = a.unbind(-1)
    b0, b1, b2 = b.unbind(-1)
    return torch.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], -1)


def triangle_setup(clip: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-triangle setup shared by the visibility backends.

    ``clip`` (F, 3, 4) clip-space vertices of F triangles. Returns the edge-function
    coefficients ``E`` (F, 3, 3) (row i dotted with ``(x_ndc, y_ndc, 1)`` gives the unnormalised
    barycentric of vertex i), the determinant ``det`` (F,) (> 0 for counter-clockwise), and the
    trivial-reject mask ``outside`` (F,) of triangles wholly beyond one clip plane.
    """
    c = clip[..., [0, 1, 3]]  # (F, 3, 3): columns x, y, w per vertex
    c0, c1, c2 = c[:, 0], c[:, 1], c[:, 2]
    e = torch.stack([cross(c1, c2), cross(c2, c0), cross(c0, c1)], 1)
    det = (e[:, 0] * c0).sum(-1)
    x, y, z, w = clip.unbind(-1)
    outside = ((x > w).all(1) | (x < -w).all(1) | (y > w).all(1) | (y < -w).all(1)
               | (z > w).all(1) | (z < -w).all(1) | (w <= 0).all(1))
    return {"E": e, "det": det, "outside": outside}


def screen_bbox(clip: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(F, 4) int64 inclusive pixel bounding boxes ``[x0, y0, x1, y1]`` of the pixel centres a triangle
    can cover (empty when x0 > x1); the whole image for triangles with a vertex at ``w <= 0``."""
    wv = clip[..., 3]
    safe = (wv > 1e-12).all(1)
    ndc = clip[..., :2] / torch.where(wv > 1e-12, wv, torch.ones_like(wv))[..., None]
    col = (ndc[..., 0] + 1) * 0.5 * w - 0.5  # continuous pixel index of the centre
    row = (1 - ndc[..., 1]) * 0.5 * h - 0.5
    x0 = torch.ceil(col.min(1).values).clamp(0, w)
    x1 = torch.floor(col.max(1).values).clamp(-1, w - 1)
    y0 = torch.ceil(row.min(1).values).clamp(0, h)
    y1 = torch.floor(row.max(1).values).clamp(-1, h - 1)
    box = torch.stack([x0, y0, x1, y1], 1).long()
    full = torch.tensor([0, 0, w - 1, h - 1], device=clip.device)
    return torch.where(safe[:, None], box, full)


def visibility_torch(
    pos: torch.Tensor,
    tri: torch.Tensor,
    resolution: tuple[int, int],
    ranges: torch.Tensor | None = None,
    cull_backfaces: bool = False,
    *,
    max_candidates: int = 1 << 22,
) -> torch.Tensor:
    """Reference visibility pass in plain PyTorch (CPU and CUDA).

    Every triangle is expanded to the pixel centres of its bounding box (in chunks of at most
    ``max_candidates`` (triangle, pixel) pairs, bounding memory), inside-tested with edge
    functions, depth-tested in ``[-1, 1]``, and reduced per pixel with one ``scatter_reduce(amin)``
    over 64-bit keys ``(depth bits << 32) | face``, so ties go to the lower face index.
    """
    h, w = resolution
    views = pos.shape[0] if ranges is None else ranges.shape[0]
    dev = pos.device
    keys = torch.full((views * h * w,), _INT64_MAX, dtype=torch.int64, device=dev)
    tri = tri.long()
    for v in range(views):
        faces = _view_faces(tri, ranges, v)
        if faces.numel() == 0:
            continue
        clip = (pos[v] if ranges is None else pos)[tri[faces]].float()  # (F, 3, 4)
        setup = triangle_setup(clip)
        keep = ~setup["outside"] & (setup["det"] != 0)
        if cull_backfaces:
            keep &= setup["det"] > 0
        box = screen_bbox(clip, h, w)
        bw = (box[:, 2] - box[:, 0] + 1).clamp(min=0)
        bh = (box[:, 3] - box[:, 1] + 1).clamp(min=0)
        count = torch.where(keep, bw * bh, torch.zeros_like(bw))
        nz = torch.nonzero(count).squeeze(1)
        if nz.numel() == 0:
            continue
        # Chunks of consecutive triangles whose candidate counts sum to at most max_candidates.
        csum = torch.cumsum(count[nz], 0)
        starts = [0]
        limit = max_candidates
        cpu_csum = csum.cpu()
        while starts[-1] < len(nz):
            base = int(cpu_csum[starts[-1] - 1]) if starts[-1] > 0 else 0
            end = int(torch.searchsorted(cpu_csum, base + limit, right=True))
            starts.append(max(end, starts[-1] + 1))
        for a, b in zip(starts[:-1], starts[1:]):
            sel = nz[a:b]
            _rasterize_chunk(sel, faces, box, bw, count, setup, clip, keys, v, h, w)
    face = torch.where(keys == _INT64_MAX, torch.full_like(keys, -1), keys & 0xFFFFFFFF)
    return face.view(views, h, w).to(torch.int32)


def _rasterize_chunk(sel, faces, box, bw, count, setup, clip, keys, view, h, w) -> None:
    n = count[sel]
    tri_local = torch.repeat_interleave(sel, n)
    first = torch.cumsum(n, 0) - n
    local = torch.arange(int(n.sum()), device=sel.device) - torch.repeat_interleave(first, n)
    width = bw[tri_local]
    px = box[tri_local, 0] + local % width
    py = box[tri_local, 1] + local // width
    x = (2 * px + 1).float() / w - 1
    y = 1 - (2 * py + 1).float() / h
    e = setup["E"][tri_local]  # (K, 3, 3)
    b = e[..., 0] * x[:, None] + e[..., 1] * y[:, None] + e[..., 2]  # (K, 3) unnormalised
    s = b.sum(-1)
    inside = (b * s[:, None] >= 0).all(-1) & (s != 0)
    bary = b / torch.where(s != 0, s, torch.ones_like(s))[:, None]
    cl = clip[tri_local]  # (K, 3, 4)
    zc = (bary * cl[..., 2]).sum(-1)
    wc = (bary * cl[..., 3]).sum(-1)
    depth = zc / torch.where(wc != 0, wc, torch.ones_like(wc))
    ok = inside & (wc > 0) & (depth >= -1) & (depth <= 1)
    if not bool(ok.any()):
        return
    d01 = ((depth[ok] + 1) * 0.5).clamp(0, 1).float()
    dbits = d01.view(torch.int32).long()  # monotonic for non-negative floats
    key = (dbits << 32) | faces[tri_local[ok]].long()
    pix = view * h * w + py[ok] * w + px[ok]
    keys.scatter_reduce_(0, pix, key, reduce="amin")


def barycentrics(
    pos: torch.Tensor,
    tri: torch.Tensor,
    face_index: torch.Tensor,
    *,
    ranges: torch.Tensor | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Differentiable second pass: ``(V, H, W, 4)`` rast from a visibility map.

    ``face_index`` (V, H, W) int, -1 for background (from :func:`visibility`). ``backend`` as in
    :func:`rasterize` (the fast path for the device, or ``"torch"`` for the reference).
    """
    check_tensor(face_index, "face_index", (None, None, None), dtype=(torch.int32, torch.int64))
    fast = _backend.pick("barycentrics", backend, pos.device)
    if fast is not None:
        return fast(pos, tri, face_index, ranges)
    return barycentrics_torch(pos, tri, face_index, ranges=ranges)


def barycentrics_torch(
    pos: torch.Tensor, tri: torch.Tensor, face_index: torch.Tensor, *, ranges: torch.Tensor | None = None
) -> torch.Tensor:
    """Reference :func:`barycentrics` in plain PyTorch (differentiable by autograd)."""
    views, h, w = face_index.shape
    flat_face = face_index.reshape(-1)
    covered = torch.nonzero(flat_face >= 0).squeeze(1)
    out = torch.zeros(views * h * w, 4, dtype=pos.dtype, device=pos.device)
    if covered.numel() == 0:
        return out.view(views, h, w, 4)
    f = flat_face[covered].long()
    view = covered // (h * w)
    rem = covered % (h * w)
    py, px = rem // w, rem % w
    x = (2 * px + 1).to(pos.dtype) / w - 1
    y = 1 - (2 * py + 1).to(pos.dtype) / h
    verts = tri.long()[f]  # (P, 3)
    clip = pos[view[:, None], verts] if ranges is None else pos[verts]  # (P, 3, 4)
    c = clip[..., [0, 1, 3]]
    c0, c1, c2 = c[:, 0], c[:, 1], c[:, 2]
    p = torch.stack([x, y, torch.ones_like(x)], -1)
    b0 = (cross(c1, c2) * p).sum(-1)
    b1 = (cross(c2, c0) * p).sum(-1)
    b2 = (cross(c0, c1) * p).sum(-1)
    s = b0 + b1 + b2
    u, v = b0 / s, b1 / s
    bw = 1 - u - v
    zc = u * clip[:, 0, 2] + v * clip[:, 1, 2] + bw * clip[:, 2, 2]
    wc = u * clip[:, 0, 3] + v * clip[:, 1, 3] + bw * clip[:, 2, 3]
    vals = torch.stack([u, v, zc / wc, (f + 1).to(pos.dtype)], -1)
    out = out.index_put((covered,), vals)
    return out.view(views, h, w, 4)


VISIBILITY_BACKENDS["torch"] = visibility_torch
