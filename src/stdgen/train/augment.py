"""Image augmentations on the GPU for conditioning images (plain functions, batched, seeded through
an optional ``torch.Generator`` on the images' device, no host synchronisation).

Images are ``(B, 3, H, W)`` colour in [0, 1] composited over white, ``alpha`` ``(B, 1, H, W)``,
``normal`` ``(B, 3, H, W)`` unit world normals and ``depth`` ``(B, 1, H, W)`` metres (both 0 off
the coverage); per-sample parameters are
``(B,)`` tensors on the same device. Every function returns a new tensor of its input's shape with
values in [0, 1] (colour) and leaves the background white where it says so.

Real pictures are illustrations and toon renders, not our cel-shaded renders: :func:`style_augment`
composes outlines (from silhouette and normal edges, of random width), posterised toon bands,
hue / saturation / brightness shifts, blur or sharpening and JPEG-like block artefacts.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_LUMA = (0.299, 0.587, 0.114)


_CONSTANTS: dict = {}


def _const(name: str, values, device, dtype=torch.float32) -> torch.Tensor:
    """A constant tensor built once per device and dtype: ``torch.tensor(list, device=cuda)`` copies
    from pageable host memory, which waits for the GPU's queue (a host sync in the training step)."""
    key = (name, torch.device(device), dtype)
    t = _CONSTANTS.get(key)
    if t is None:
        t = _CONSTANTS[key] = torch.tensor(values, dtype=dtype).to(device)
    return t


def _rand(n: int, device, generator: torch.Generator | None, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, device=device, generator=generator)


def _col(t: torch.Tensor) -> torch.Tensor:  # (B,) -> (B, 1, 1, 1)
    return t.reshape(-1, 1, 1, 1)


def affine_jitter(images: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Zoom every ``(B, C, H, W)`` image about its centre by ``scale`` ``(B,)`` (> 1 enlarges) and
    move it by ``shift`` ``(B, 2)`` (x, y) in fractions of the image side. Edge pixels extend
    outwards (our renders have background at the border)."""
    b = images.shape[0]
    theta = torch.zeros(b, 2, 3, device=images.device, dtype=images.dtype)
    inv = 1.0 / scale.to(images.dtype)
    theta[:, 0, 0] = inv
    theta[:, 1, 1] = inv
    theta[:, :, 2] = -2.0 * shift.to(images.dtype) * inv[:, None]
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def edge_map(alpha: torch.Tensor, normal: torch.Tensor, depth: torch.Tensor | None = None, *,
             depth_jump: float = 0.05, crease: float = 1.6) -> torch.Tensor:
    """``(B, 1, H, W)`` in {0, 1}: toon-style contour lines. The silhouette's edge, depth jumps of
    more than ``depth_jump`` (metres; ``depth`` ``(B, 1, H, W)``, 0 off the coverage) between
    neighbouring covered pixels (an arm in front of the body), and creases where neighbouring unit
    normals differ by more than ``crease`` (chord length: 1.6 is about 106 degrees; lower values
    outline every strand of hair and every facet of a low-polygon mesh)."""
    def diffs(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = F.pad(x, (0, 1, 0, 1), mode="replicate")
        return p[..., :-1, 1:] - p[..., :-1, :-1], p[..., 1:, :-1] - p[..., :-1, :-1]

    ax, ay = diffs(alpha)
    edge = (ax.abs() + ay.abs()) > 0.5
    inside = alpha > 0.5
    nx, ny = diffs(normal)
    edge |= ((nx.norm(dim=1, keepdim=True) > crease) | (ny.norm(dim=1, keepdim=True) > crease)) & inside
    if depth is not None:
        cx, cy = diffs(inside.to(depth.dtype))
        dx, dy = diffs(depth)
        # Only between two covered pixels (a step onto the background is the silhouette's business).
        jump = ((dx.abs() > depth_jump) & (cx == 0)) | ((dy.abs() > depth_jump) & (cy == 0))
        edge |= jump & inside
    return edge.to(alpha.dtype)


def dilate(mask: torch.Tensor, width: torch.Tensor, max_width: int = 3) -> torch.Tensor:
    """Grow ``(B, 1, H, W)`` masks by ``width`` ``(B,)`` integer pixels (0 .. ``max_width``) each."""
    steps = [mask]
    for _ in range(max_width):
        steps.append(F.max_pool2d(steps[-1], 3, stride=1, padding=1))
    stack = torch.stack(steps)  # (max_width + 1, B, 1, H, W)
    idx = width.long().clamp(0, max_width).reshape(1, -1, 1, 1, 1).expand(1, *mask.shape)
    return stack.gather(0, idx)[0]


def outline(rgb: torch.Tensor, edges: torch.Tensor, ink: torch.Tensor, opacity: torch.Tensor) -> torch.Tensor:
    """Draw ``edges`` ``(B, 1, H, W)`` over ``rgb`` in colour ``ink`` ``(B, 3)`` with ``opacity`` ``(B,)``."""
    e = edges * _col(opacity)
    return rgb * (1 - e) + ink[:, :, None, None] * e


def posterize(rgb: torch.Tensor, alpha: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Toon bands: quantise the foreground's luminance to ``levels`` ``(B,)`` bands (keeping hue and
    saturation: the colour is scaled by quantised / original luminance); background unchanged."""
    w = _const("luma", _LUMA, rgb.device, rgb.dtype).reshape(1, 3, 1, 1)
    lum = (rgb * w).sum(1, keepdim=True)
    lv = _col(levels.to(rgb.dtype))
    q = (torch.floor(lum * lv) + 0.5) / lv
    out = (rgb * (q / lum.clamp_min(1e-3))).clamp(0, 1)
    return out * alpha + rgb * (1 - alpha)


def hue_saturation_matrices(hue_deg: torch.Tensor, saturation: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """``(B, 3, 3)`` linear RGB maps: rotate the hue about the grey axis by ``hue_deg``, scale the
    distance from grey by ``saturation`` and everything by ``value`` (all ``(B,)``)."""
    dev, dt = hue_deg.device, hue_deg.dtype
    k = 1 / math.sqrt(3)
    grey = torch.full((3, 3), k * k, device=dev, dtype=dt)
    # Cross-product matrix of the grey axis (k, k, k), from host floats (no device-to-host reads).
    kx = _const("grey_cross", [[0.0, -k, k], [k, 0.0, -k], [-k, k, 0.0]], dev, dt)
    a = torch.deg2rad(hue_deg)[:, None, None]
    eye = torch.eye(3, device=dev, dtype=dt)
    rot = torch.cos(a) * eye + torch.sin(a) * kx + (1 - torch.cos(a)) * grey
    return value[:, None, None] * (grey + saturation[:, None, None] * rot @ (eye - grey))


def color_shift(rgb: torch.Tensor, alpha: torch.Tensor, hue_deg: torch.Tensor, saturation: torch.Tensor,
                value: torch.Tensor) -> torch.Tensor:
    """Hue / saturation / brightness change of the foreground (background unchanged)."""
    m = hue_saturation_matrices(hue_deg.float(), saturation.float(), value.float()).to(rgb.dtype)
    out = torch.einsum("bij,bjhw->bihw", m, rgb).clamp(0, 1)
    return out * alpha + rgb * (1 - alpha)


def gaussian_blur(rgb: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Separable Gaussian blur (radius ``ceil(2 sigma)``, replicate padding)."""
    r = max(1, math.ceil(2 * sigma))
    x = torch.arange(-r, r + 1, device=rgb.device, dtype=rgb.dtype)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    g = g / g.sum()
    c = rgb.shape[1]
    out = F.conv2d(F.pad(rgb, (r, r, 0, 0), mode="replicate"), g.reshape(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(out, (0, 0, r, r), mode="replicate"), g.reshape(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def blur_sharpen(rgb: torch.Tensor, amount: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """``rgb + amount (rgb - blur(rgb))`` per sample: ``amount`` ``(B,)`` -1 blurs fully, 0 keeps,
    > 0 sharpens (unsharp mask)."""
    blurred = gaussian_blur(rgb, sigma)
    return (rgb + _col(amount.to(rgb.dtype)) * (rgb - blurred)).clamp(0, 1)


_JPEG_LUMA_Q = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)
_JPEG_CHROMA_Q = (17, 18, 24, 47) + (99,) * 4 + (18, 21, 26, 66) + (99,) * 4 + (24, 26, 56) + (99,) * 5 + (47, 66) \
    + (99,) * 6 + (99,) * 32


_TO_YCC = ((0.299, 0.587, 0.114), (-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312))
_FROM_YCC = ((1.0, 0.0, 1.402), (1.0, -0.344136, -0.714136), (1.0, 1.772, 0.0))


def _dct_matrix(n: int, device, dtype) -> torch.Tensor:
    """``(n, n)`` orthonormal DCT-II matrix (rows are frequencies)."""
    k = torch.arange(n, device=device, dtype=dtype)[:, None]
    i = torch.arange(n, device=device, dtype=dtype)[None]
    m = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
    m[0] = m[0] / math.sqrt(2)
    return m


def jpeg_like(rgb: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """JPEG's lossy step without the entropy coding: YCbCr, 8 x 8 block DCT, quantisation with the
    standard tables scaled for ``quality`` ``(B,)`` in [1, 100] (libjpeg's scaling), back to RGB.
    Sides that are not multiples of 8 are padded (replicate) and cropped back."""
    b, _, h, w = rgb.shape
    ph, pw = (-h) % 8, (-w) % 8
    x = F.pad(rgb.float(), (0, pw, 0, ph), mode="replicate") * 255.0
    to_ycc = _const("to_ycc", _TO_YCC, rgb.device)
    ycc = torch.einsum("ij,bjhw->bihw", to_ycc, x)
    ycc[:, 0] -= 128.0
    hh, ww = ycc.shape[-2:]
    blocks = ycc.reshape(b, 3, hh // 8, 8, ww // 8, 8).permute(0, 1, 2, 4, 3, 5)  # (B, 3, bh, bw, 8, 8)
    d = _dct_matrix(8, rgb.device, torch.float32)
    coef = d @ blocks @ d.T
    q = quality.float().clamp(1, 100)
    scale = torch.where(q < 50, 5000.0 / q, 200.0 - 2.0 * q) / 100.0  # (B,)
    # Quantisation steps per channel (Y, Cb, Cr): (3, 8, 8).
    table = _const("jpeg_tables", [_JPEG_LUMA_Q, _JPEG_CHROMA_Q, _JPEG_CHROMA_Q], rgb.device).reshape(3, 8, 8)
    step = (table[None] * scale[:, None, None, None]).clamp(min=1.0)[:, :, None, None]  # (B, 3, 1, 1, 8, 8)
    coef = torch.round(coef / step) * step
    back = (d.T @ coef @ d).permute(0, 1, 2, 4, 3, 5).reshape(b, 3, hh, ww)
    back[:, 0] += 128.0
    from_ycc = _const("from_ycc", _FROM_YCC, rgb.device)
    out = torch.einsum("ij,bjhw->bihw", from_ycc, back) / 255.0
    return out[..., :h, :w].clamp(0, 1).to(rgb.dtype)


def style_augment(rgb: torch.Tensor, alpha: torch.Tensor, normal: torch.Tensor, depth: torch.Tensor | None = None,
                  *, probability: float = 0.5, generator: torch.Generator | None = None,
                  max_outline: int | None = None) -> torch.Tensor:
    """Random style changes of ``(B, 3, H, W)`` conditioning images: each of outlines, toon bands,
    colour shift, blur / sharpen and JPEG is applied to each sample with ``probability`` (a sample
    may get several, or none). Selection is by per-sample masks, so the work is the same every call
    and nothing waits on the host. ``depth`` ``(B, 1, H, W)`` adds depth-jump contours to the
    outlines; ``max_outline`` is the widest outline's extra pixels (default ``H // 256``: 1-pixel
    lines at 128 px, up to 3 pixels wide at 256)."""
    b, dev = rgb.shape[0], rgb.device
    if max_outline is None:
        max_outline = rgb.shape[-2] // 256

    def chosen() -> torch.Tensor:  # (B, 1, 1, 1) 0/1
        return _col((_rand(b, dev, generator) < probability).to(rgb.dtype))

    out = rgb
    k = chosen()
    levels = torch.floor(_rand(b, dev, generator, 2, 6))
    out = k * posterize(out, alpha, levels) + (1 - k) * out
    k = chosen()
    shifted = color_shift(out, alpha, _rand(b, dev, generator, -40, 40), _rand(b, dev, generator, 0.6, 1.4),
                          _rand(b, dev, generator, 0.8, 1.15))
    out = k * shifted + (1 - k) * out
    k = chosen()
    edges = dilate(edge_map(alpha, normal, depth), torch.floor(_rand(b, dev, generator, 0, max_outline + 1)),
                   max_outline)
    ink = _rand(b, dev, generator, 0.0, 0.35)[:, None] * torch.ones(1, 3, device=dev)
    out = k * outline(out, edges, ink.to(rgb.dtype), _rand(b, dev, generator, 0.6, 1.0)) + (1 - k) * out
    k = chosen()
    out = k * blur_sharpen(out, _rand(b, dev, generator, -1.0, 1.5)) + (1 - k) * out
    k = chosen()
    out = k * jpeg_like(out, _rand(b, dev, generator, 20, 90)) + (1 - k) * out
    return out.clamp(0, 1)
