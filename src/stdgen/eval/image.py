"""Image metrics over batches of channels-last images (torch, any device).

Images are ``(B, H, W, C)`` floats in ``[0, data_range]``; masks ``(B, H, W)`` bool or float
(> 0.5 counts as covered). Every function returns one value per image, ``(B,)`` float64 on the
inputs' device, so callers can average over views, characters or a validation batch as they
wish.

- :func:`ssim` is Wang et al. 2004 with an 11-tap Gaussian window (sigma 1.5), K1 = 0.01,
  K2 = 0.03, population (not sample) covariances; per channel, averaged over channels, over the
  pixels whose window lies inside the image (a 5-pixel border is left out). That is exactly
  scikit-image's ``structural_similarity(..., gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1, channel_axis=-1)`` (a test checks it to 1e-4).
  With a ``mask``, the SSIM map is averaged over the masked pixels instead.
- :func:`psnr` is ``10 log10(range^2 / MSE)``, capped at :data:`PSNR_CAP_DB` (identical images
  would give infinity, which no mean survives).
- :func:`normal_angle_error` is the mean angle in degrees between unit normals.
- :func:`mask_iou` is intersection over union of two masks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from stdgen.utils.checks import check_tensor

#: PSNR of identical images (an MSE floor of 1e-10 for range 1).
PSNR_CAP_DB = 100.0
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA, *, dtype=torch.float64,
                    device=None) -> torch.Tensor:
    """``(size,)`` normalised 1D Gaussian taps centred on the middle tap."""
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    check_tensor(a, "a", (None, None, None, None))
    check_tensor(b, "b", tuple(a.shape))


def _as_mask(mask: torch.Tensor, shape: tuple[int, ...], name: str = "mask") -> torch.Tensor:
    check_tensor(mask, name, shape)
    return mask > 0.5 if mask.dtype.is_floating_point else mask.bool()


def _filter(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """'Valid' Gaussian filter of every channel of ``(1, N, H, W)`` -> ``(1, N, H - k + 1, W - k + 1)``.

    A depthwise (grouped) convolution with the full k x k kernel: on the CPU it is several times
    faster than a 1-channel convolution over a batch of N, and as fast as two separable passes.
    """
    k, n = g.numel(), x.shape[1]
    kernel = (g[:, None] * g[None, :]).expand(n, 1, k, k).contiguous()
    return F.conv2d(x, kernel, groups=n)


def ssim_map(a: torch.Tensor, b: torch.Tensor, *, data_range: float = 1.0, window: int = SSIM_WINDOW,
             sigma: float = SSIM_SIGMA, background: float | None = None) -> torch.Tensor:
    """Per-pixel SSIM averaged over channels, ``(B, H - window + 1, W - window + 1)``.

    Only pixels whose whole window lies inside the image are returned, so no padding rule
    enters the result; pixel ``(i, j)`` of the map is image pixel ``(i + r, j + r)``,
    ``r = window // 2``. Computed in float32 (float64 inputs stay float64).

    ``background``: when both images are this constant outside some region (renders over a
    plain background), windows that see only background in both have SSIM exactly 1 (equal
    means, zero variances); the map is then computed only over each view's bounding box of
    non-background pixels (grown by the window) and set to 1 elsewhere, which gives the same
    values several times faster.
    """
    _check_pair(a, b)
    bsz, h, w, c = a.shape
    if h < window or w < window:
        raise ValueError(f"ssim: images of {h}x{w} are smaller than the {window}-pixel window")
    if background is None:
        return _ssim_map(a, b, data_range, window, sigma)
    out = torch.ones(bsz, h - window + 1, w - window + 1, dtype=torch.float64 if a.dtype == torch.float64
                     else torch.float32, device=a.device)
    busy = ((a != background) | (b != background)).any(-1)  # (B, H, W)
    rows, cols = busy.any(2), busy.any(1)
    for i in range(bsz):
        r = torch.nonzero(rows[i])[:, 0]
        q = torch.nonzero(cols[i])[:, 0]
        if len(r) == 0:
            continue
        # Map pixel (y, x) sees image rows y .. y + window - 1: those touching [r0, r1] are
        # y in [r0 - window + 1, r1]; take image rows [y0, y1 + window - 1] to compute them.
        y0, y1 = max(int(r[0]) - window + 1, 0), min(int(r[-1]), h - window)
        x0, x1 = max(int(q[0]) - window + 1, 0), min(int(q[-1]), w - window)
        crop = (slice(i, i + 1), slice(y0, y1 + window), slice(x0, x1 + window))
        out[i, y0:y1 + 1, x0:x1 + 1] = _ssim_map(a[crop], b[crop], data_range, window, sigma)[0]
    return out


def _ssim_map(a: torch.Tensor, b: torch.Tensor, data_range: float, window: int, sigma: float) -> torch.Tensor:
    bsz, h, w, c = a.shape
    dtype = torch.float64 if a.dtype == torch.float64 else torch.float32
    # Variances are E[x^2] - E[x]^2, which cancels badly in float32 on flat regions (a render's
    # white background); centring the values on 0 first cuts that error ~40x (to ~1e-7 in SSIM).
    # Variances and covariances do not change with the shift; the means get it added back.
    shift = 0.5 * data_range
    x = (a.to(dtype) - shift).permute(0, 3, 1, 2).reshape(1, bsz * c, h, w)
    y = (b.to(dtype) - shift).permute(0, 3, 1, 2).reshape(1, bsz * c, h, w)
    g = gaussian_window(window, sigma, dtype=dtype, device=a.device)
    mx, my, mxx, myy, mxy = _filter(torch.cat([x, y, x * x, y * y, x * y], 1), g).chunk(5, dim=1)
    vx = mxx - mx * mx
    vy = myy - my * my
    cxy = mxy - mx * my
    mx = mx + shift
    my = my + shift
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.view(bsz, c, s.shape[-2], s.shape[-1]).mean(1)


def ssim(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None, *, data_range: float = 1.0,
         window: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """``(B,)`` mean SSIM of ``(B, H, W, C)`` image pairs; over ``mask`` ``(B, H, W)`` when given
    (NaN where a mask is empty inside the border)."""
    m = ssim_map(a, b, data_range=data_range, window=window, sigma=sigma)
    return reduce_ssim_map(m, mask, window)


def reduce_ssim_map(m: torch.Tensor, mask: torch.Tensor | None = None, window: int = SSIM_WINDOW) -> torch.Tensor:
    """``(B,)`` mean of an :func:`ssim_map` over all its pixels, or over the image ``mask`` ``(B, H, W)``
    (cropped to the map). Lets one map give both the plain and the masked SSIM."""
    if mask is None:
        return m.flatten(1).mean(1).double()
    r = window // 2
    keep = _as_mask(mask, (m.shape[0], m.shape[1] + 2 * r, m.shape[2] + 2 * r))
    keep = keep[:, r:r + m.shape[1], r:r + m.shape[2]].to(m.dtype)
    return ((m * keep).flatten(1).sum(1) / keep.flatten(1).sum(1)).double()


def squared_error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)`` float64 squared error per pixel, averaged over channels."""
    _check_pair(a, b)
    return (a.float() - b.float()).pow(2).mean(-1).double()


def mse(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None, *,
        error: torch.Tensor | None = None) -> torch.Tensor:
    """``(B,)`` mean squared error over all pixels and channels (or over ``mask``; NaN if empty).
    ``error`` may pass a precomputed :func:`squared_error` of the pair."""
    d = squared_error(a, b) if error is None else error
    if mask is None:
        return d.flatten(1).mean(1)
    keep = _as_mask(mask, tuple(a.shape[:3])).double()
    return (d * keep).flatten(1).sum(1) / keep.flatten(1).sum(1)


def psnr_from_mse(e: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR in dB of mean squared errors, capped at :data:`PSNR_CAP_DB`."""
    floor = data_range**2 * 10 ** (-PSNR_CAP_DB / 10)
    return 10 * torch.log10(data_range**2 / e.clamp(min=floor))


def psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None, *,
         data_range: float = 1.0) -> torch.Tensor:
    """``(B,)`` PSNR in dB (over ``mask`` when given), capped at :data:`PSNR_CAP_DB`."""
    return psnr_from_mse(mse(a, b, mask), data_range)


def normal_angle_error(pred: torch.Tensor, true: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(B,)`` mean angle in degrees between ``(B, H, W, 3)`` unit normals over ``mask`` (NaN if empty).

    Inputs are renormalised, so decoded 8-bit normal maps can be passed as they are.
    """
    _check_pair(pred, true)
    keep = _as_mask(mask, tuple(pred.shape[:3]))
    # Only the masked pixels are worked on (a character covers a fraction of the frame).
    idx = torch.nonzero(keep.flatten())[:, 0]
    p = F.normalize(pred.reshape(-1, 3)[idx].double(), dim=-1, eps=1e-12)
    t = F.normalize(true.reshape(-1, 3)[idx].double(), dim=-1, eps=1e-12)
    # atan2(|p x t|, p . t) is accurate at small angles, where acos(p . t) is not.
    ang = torch.atan2(torch.linalg.cross(p, t).norm(dim=-1), (p * t).sum(-1)) * (180.0 / math.pi)
    bsz, per = pred.shape[0], keep[0].numel()
    total = torch.zeros(bsz, dtype=torch.float64, device=pred.device).index_add_(0, idx // per, ang)
    return total / keep.flatten(1).sum(1).double()


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(B,)`` intersection over union of ``(B, H, W)`` masks; NaN where both are empty."""
    check_tensor(a, "a", (None, None, None))
    ma = _as_mask(a, tuple(a.shape), "a")
    mb = _as_mask(b, tuple(a.shape), "b")
    inter = (ma & mb).flatten(1).sum(1).double()
    union = (ma | mb).flatten(1).sum(1).double()
    return inter / union


def composite(rgb: torch.Tensor, alpha: torch.Tensor, background: float = 1.0, *,
              premultiplied: bool = False) -> torch.Tensor:
    """``(B, H, W, 3)`` colour over a constant background; ``alpha`` ``(B, H, W)`` or ``(B, H, W, 1)``."""
    if alpha.dim() == rgb.dim() - 1:
        alpha = alpha.unsqueeze(-1)
    if premultiplied:
        return rgb + background * (1 - alpha)
    return rgb * alpha + background * (1 - alpha)
