"""Horizontal mask registration, as the paper aligns 3D renders to ground truth before scoring.

For each view, the predicted render is shifted left or right by the whole number of pixels
that maximises the overlap (the sum of the products of the two coverage masks), searching
``|shift| <= max_shift``; ties go to the smallest ``|shift|``. Pixels shifted in from outside
the frame are background. The overlap for every shift is one cross-correlation along image
rows, done with an FFT (``O(H W log W)`` per view).
"""

from __future__ import annotations

import numpy as np
import torch

from stdgen.utils.checks import check_tensor


def overlap_by_shift(ref_mask: torch.Tensor, mov_mask: torch.Tensor) -> torch.Tensor:
    """Overlap of ``ref`` with ``mov`` shifted right by ``s`` pixels, for every ``s`` in ``[-(W-1), W-1]``.

    ``ref_mask``, ``mov_mask``: ``(B, H, W)`` coverage in ``[0, 1]``. Returns ``(B, 2W - 1)`` float64,
    entry ``s + W - 1`` = ``sum_{i,j} ref[i, j] mov[i, j - s]``.
    """
    check_tensor(ref_mask, "ref_mask", (None, None, None))
    check_tensor(mov_mask, "mov_mask", tuple(ref_mask.shape))
    w = ref_mask.shape[-1]
    n = 2 * w  # zero padding so the circular correlation does not wrap
    fr = torch.fft.rfft(ref_mask.double(), n=n, dim=-1)
    fm = torch.fft.rfft(mov_mask.double(), n=n, dim=-1)
    # Sum over rows in the frequency domain: one inverse FFT per view instead of per row.
    corr = torch.fft.irfft((fr * fm.conj()).sum(-2), n=n, dim=-1)  # (B, n); index s (mod n)
    return torch.cat([corr[:, n - (w - 1):], corr[:, :w]], dim=-1)


def horizontal_shifts(ref_mask: torch.Tensor, mov_mask: torch.Tensor, max_shift: int | None = None) -> torch.Tensor:
    """``(B,)`` int64 shifts (pixels, positive = move right) that best align ``mov`` to ``ref``.

    ``max_shift`` bounds ``|shift|`` (default: a quarter of the width). A view whose moving mask
    is empty gets shift 0.
    """
    w = ref_mask.shape[-1]
    if max_shift is None:
        max_shift = w // 4
    max_shift = int(min(max(max_shift, 0), w - 1))
    score = overlap_by_shift(ref_mask, mov_mask)[:, w - 1 - max_shift: w + max_shift]  # shifts -S..S
    shifts = torch.arange(-max_shift, max_shift + 1, device=score.device)
    best = score.max(dim=1, keepdim=True).values
    # Ties (within FFT round-off) go to the smallest |shift|.
    tol = 1e-9 * best.abs().clamp(min=1.0)
    candidates = score >= best - tol
    cost = torch.where(candidates, shifts.abs().double(), torch.full_like(score, float("inf")))
    return shifts[cost.argmin(dim=1)]


def shift_images(images: torch.Tensor, shifts: torch.Tensor, fill=0) -> torch.Tensor:
    """Shift each ``(B, H, W, ...)`` image right by ``shifts[b]`` pixels (left if negative), filling with ``fill``."""
    check_tensor(images, "images", min_dims=3)
    w = images.shape[2]
    cpu = images.device.type == "cpu"
    # On the CPU numpy's slice copies are ~20x faster than torch's for these strided blocks.
    src = images.detach().numpy() if cpu else images
    if cpu:
        out = np.full_like(src, fill)
    else:
        out = torch.empty_like(src)
        out.fill_(fill)
    for b, s in enumerate(shifts.tolist()):
        s = int(s)
        if s >= w or -s >= w:
            continue
        if s >= 0:
            out[b, :, s:] = src[b, :, : w - s]
        else:
            out[b, :, : w + s] = src[b, :, -s:]
    return torch.from_numpy(out) if cpu else out
