"""Preprocessing of an input picture: its figure's alpha, then the dataset's framing.

Arrays are numpy, ``(H, W, C)`` with ``C`` 3 (RGB) or 4 (RGBA), uint8 or float in [0, 1]; alphas
``(H, W)`` float32 in [0, 1].

1. :func:`alpha_of`: a user mask wins; else an RGBA picture's own alpha (unless fully opaque);
   else the :class:`~stdgen.models.segment.Segmenter`'s prediction, its edges refined with
   GrabCut when opencv-python-headless is installed (``pip install stdgen[pipeline]``).
2. :func:`frame_figure`: the figure's bounding box (alpha > 0.5) centred, scaled so that its
   height is :data:`FIGURE_HEIGHT` (1 / 1.1 = 91 %) of the image (or its width, for a figure wider
   than tall), padded with transparent pixels and resized: the framing of the dataset's renders
   (``docs/dataset.md``, "Framing"). A picture with less figure than :data:`MIN_FIGURE_PIXELS`
   pixels and :data:`MIN_FIGURE_FRACTION` of the picture is refused with a
   :class:`~stdgen.errors.StdgenError`.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

import numpy as np

from stdgen.errors import StdgenError

log = logging.getLogger(__name__)

#: Figure height / image height after framing (the dataset's margin 1.1).
FIGURE_HEIGHT = 1 / 1.1
#: The least figure (pixels of alpha > 0.5) accepted: at least this many pixels ...
MIN_FIGURE_PIXELS = 64
#: ... and at least this fraction of the picture's pixels (0.2 %: a figure about 1/20 of the side).
MIN_FIGURE_FRACTION = 0.002


def _as_float(image: np.ndarray, name: str = "image") -> np.ndarray:
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] not in (3, 4) or a.shape[0] < 1 or a.shape[1] < 1:
        raise StdgenError(f"{name}: expected an (H, W, 3) or (H, W, 4) picture, got shape {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise StdgenError(f"{name}: has NaN or infinite values")
    return np.clip(a, 0.0, 1.0)


def _read_mask(mask: Any, shape: tuple[int, int]) -> np.ndarray:
    """A mask file (grey levels; a file with transparency gives its alpha) or an ``(H, W)`` array
    (uint8 or float in [0, 1]) -> ``(H, W)`` float32 in [0, 1]."""
    if isinstance(mask, (str, os.PathLike)):
        from stdgen.io.images import read_image

        m = read_image(mask, "auto", what=f"mask {os.fspath(mask)}")
        if m.ndim == 3 and m.shape[2] == 4 and m[..., 3].min() < 255:
            m = m[..., 3]
        elif m.ndim == 3:
            m = (m[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).round().astype(np.uint8)
        label = f"mask {os.fspath(mask)}"
    else:
        m = np.asarray(mask)
        label = "mask"
    if m.ndim != 2:
        raise StdgenError(f"{label}: expected a single-channel (H, W) mask, got shape {m.shape}")
    if m.shape != shape:
        raise StdgenError(f"{label}: {m.shape[1]}x{m.shape[0]} pixels, but the picture is {shape[1]}x{shape[0]}")
    if m.dtype == np.uint8:
        return m.astype(np.float32) / 255.0
    return np.clip(m.astype(np.float32), 0.0, 1.0)


def grabcut_available() -> bool:
    """Whether OpenCV (``opencv-python-headless``, the ``[pipeline]`` extra) is installed."""
    try:
        import cv2  # noqa: F401
    except ImportError:
        return False
    return True


def refine_alpha(rgb: np.ndarray, alpha: np.ndarray, *, iterations: int = 3, sure: float = 0.95,
                 maybe: float = 0.05) -> np.ndarray:
    """Snap a predicted ``alpha`` ``(H, W)`` to the picture's colour edges with OpenCV's GrabCut.
    ``rgb`` ``(H, W, 3)`` float in [0, 1]. Pixels with alpha above ``sure`` are fixed foreground,
    below ``maybe`` fixed background; GrabCut decides the band between (initialised by alpha > 0.5).
    Only the box around ``alpha > maybe`` (plus a margin) is processed. Returns a ``(H, W)`` float32
    mask in {0, 1}; ``alpha`` unchanged without OpenCV or when GrabCut cannot run (no sure foreground
    or background)."""
    try:
        import cv2
    except ImportError:
        return alpha
    fg, bg = alpha >= sure, alpha <= maybe
    if not fg.any() or not bg.any() or (fg | bg).all():
        return alpha
    # Work on the figure's surroundings only (a margin of 10 % of the side, at least 16 px, keeps
    # enough background for GrabCut's colour model): outside it everything is sure background.
    h, w = alpha.shape
    rows, cols = np.flatnonzero((~bg).any(axis=1)), np.flatnonzero((~bg).any(axis=0))
    margin = max(16, round(0.1 * max(h, w)))
    t, b = max(0, rows[0] - margin), min(h, rows[-1] + 1 + margin)
    l, r = max(0, cols[0] - margin), min(w, cols[-1] + 1 + margin)
    m = np.where(alpha[t:b, l:r] > 0.5, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    m[fg[t:b, l:r]] = cv2.GC_FGD
    m[bg[t:b, l:r]] = cv2.GC_BGD
    if not (m == cv2.GC_BGD).any():
        return alpha
    img = np.ascontiguousarray((rgb[t:b, l:r, ::-1] * 255 + 0.5).astype(np.uint8))  # OpenCV wants BGR
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    # GrabCut seeds its colour models' k-means from OpenCV's global random state, which every call
    # advances: reseed it so the same picture gives the same alpha on every call (reproducible runs).
    cv2.setRNGSeed(0)
    try:
        cv2.grabCut(img, m, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error as exc:  # e.g. a degenerate colour model; the prediction stands
        log.warning("GrabCut failed (%s); keeping the segmenter's alpha", exc)
        return alpha
    out = np.zeros_like(alpha, dtype=np.float32)
    out[t:b, l:r] = (m == cv2.GC_FGD) | (m == cv2.GC_PR_FGD)
    return out


def alpha_of(image: np.ndarray, *, mask: Any = None, segmenter: Any = None, refine_edges: bool = True) -> np.ndarray:
    """The figure's alpha ``(H, W)`` float32 in [0, 1] of ``image`` ``(H, W, 3 | 4)``.

    In order: ``mask`` (a path to a mask picture, or an ``(H, W)`` array) if given; else the
    picture's own alpha when it has one that is not fully opaque; else ``segmenter`` (a
    :class:`~stdgen.models.segment.Segmenter`) with its edges refined by :func:`refine_alpha`
    when ``refine_edges``. Raises :class:`StdgenError` when none applies.
    """
    img = _as_float(image)
    if mask is not None:
        return _read_mask(mask, img.shape[:2])
    if img.shape[2] == 4 and img[..., 3].min() < 1.0:
        return img[..., 3].copy()
    if segmenter is None:
        raise StdgenError("image: no transparency and no mask; give a mask (--mask FILE), a picture with an alpha "
                          "channel, or a segmenter to remove the background")
    alpha = np.asarray(segmenter.predict(img[..., :3]), dtype=np.float32)
    if refine_edges:
        alpha = refine_alpha(img[..., :3], alpha)
    return alpha


def rgba_of(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``image`` ``(H, W, 3 | 4)`` with its alpha replaced by ``alpha`` ``(H, W)`` -> ``(H, W, 4)`` float32."""
    img = _as_float(image)
    a = np.asarray(alpha, dtype=np.float32)
    if a.shape != img.shape[:2]:
        raise StdgenError(f"alpha: shape {a.shape} does not match the picture's {img.shape[:2]}")
    return np.concatenate([img[..., :3], np.clip(a, 0, 1)[..., None]], axis=2)


def figure_box(alpha: np.ndarray) -> tuple[int, int, int, int]:
    """``(top, left, bottom, right)`` pixel edges (bottom / right exclusive) of ``alpha > 0.5``;
    :class:`StdgenError` when the figure is under the minimum size (see the module docstring)."""
    fg = np.asarray(alpha) > 0.5
    h, w = fg.shape
    count = int(fg.sum())
    least = max(MIN_FIGURE_PIXELS, math.ceil(MIN_FIGURE_FRACTION * h * w))
    if count < least:
        what = "no figure" if count == 0 else f"only {count} figure pixels"
        raise StdgenError(f"image: {what} found (alpha > 0.5); at least {least} are needed for a {w}x{h} picture. "
                          "Is the picture empty or fully transparent? Give a mask with --mask FILE")
    rows, cols = np.flatnonzero(fg.any(axis=1)), np.flatnonzero(fg.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def frame_figure(rgba: np.ndarray, size: int) -> np.ndarray:
    """Recentre and rescale ``rgba`` ``(H, W, 4)`` (uint8 or float) to the dataset's framing ->
    ``(size, size, 4)`` float32 straight (not premultiplied) RGBA, transparent where empty.

    The bounding box of ``alpha > 0.5`` is centred; the square crop around it has side
    ``1.1 x max(box height, box width)``, so an upright figure's height is 91 % of ``size``; the
    crop extends past the picture with transparent pixels and is resized with an antialiased
    filter on premultiplied colour (no dark or light fringes)."""
    if not isinstance(size, (int, np.integer)) or size < 8:
        raise StdgenError(f"size: expected an integer >= 8, got {size!r}")
    img = _as_float(rgba, "rgba")
    if img.shape[2] != 4:
        raise StdgenError(f"rgba: expected 4 channels (RGB + alpha), got {img.shape[2]}")
    from PIL import Image

    top, left, bottom, right = figure_box(img[..., 3])
    side = max(bottom - top, right - left) / FIGURE_HEIGHT
    cy, cx = (top + bottom) / 2, (left + right) / 2
    pad = int(math.ceil(side))
    prem = np.concatenate([img[..., :3] * img[..., 3:], img[..., 3:]], axis=2)
    prem = np.pad(prem, ((pad, pad), (pad, pad), (0, 0)))
    box = (cx - side / 2 + pad, cy - side / 2 + pad, cx + side / 2 + pad, cy + side / 2 + pad)
    out = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(prem[..., c]), "F")
                               .resize((int(size), int(size)), Image.Resampling.BILINEAR, box=box))
                    for c in range(4)], axis=2)
    out = np.clip(out, 0.0, 1.0)
    a = out[..., 3:]
    rgb = np.where(a > 1e-6, out[..., :3] / np.maximum(a, 1e-6), 0.0)
    return np.concatenate([np.clip(rgb, 0, 1), a], axis=2).astype(np.float32)


def preprocess_image(image: np.ndarray, size: int, *, mask: Any = None, segmenter: Any = None,
                     refine_edges: bool = True) -> np.ndarray:
    """:func:`alpha_of` then :func:`frame_figure`: ``(H, W, 3 | 4)`` -> ``(size, size, 4)`` float32."""
    alpha = alpha_of(image, mask=mask, segmenter=segmenter, refine_edges=refine_edges)
    return frame_figure(rgba_of(image, alpha), size)
