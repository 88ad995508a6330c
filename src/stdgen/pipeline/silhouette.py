"""Generated views fitted to silhouettes the picture fixes exactly.

The six generation views are orthographic at elevation 0, so two silhouettes are known without the
multi-view model: the front (azimuth 0) is the picture's own alpha, and the back (azimuth 180) sees the
same rays from the other side — its silhouette is the front's mirrored left to right (on 12 validation
characters the mirrored picture's alpha overlaps the true back by IoU 0.997; the multi-view model's
generated back by 0.91). Every row of an elevation-0 orthographic view is one height of the character,
so a generated view is carried onto a target silhouette row by row: each target run of foreground
pixels takes the colours of the matching run of the generated view, stretched linearly.

:func:`row_warp` computes that map, :func:`apply_row_warp` samples an image through it, and
:func:`fit_to_silhouette` does both.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Runs of foreground shorter than this (pixels) are noise, not a limb, when runs are matched.
MIN_RUN = 2


def _runs(row: np.ndarray) -> list[tuple[float, float]]:
    """Foreground runs of a bool row as ``(left edge, right edge)`` in pixel-edge coordinates."""
    d = np.diff(np.concatenate([[0], row.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    return [(float(s), float(e)) for s, e in zip(starts, ends) if e - s >= MIN_RUN]


def row_warp(source_fg: np.ndarray, target_fg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each pixel of the target silhouette takes its colour in the source image.

    ``source_fg`` / ``target_fg`` ``(H, W)`` bool. Returns ``(ys, xs)`` ``(H, W)`` float source pixel
    coordinates (identity off the target silhouette). Row ``y`` of the target reads row ``y`` of the
    source (the nearest row with foreground where the source's row is empty). Where both rows have the
    same number of runs (arms, legs and torso apart), the ``k``-th target run reads the ``k``-th source
    run, stretched linearly; a row whose runs do not pair up takes the horizontal shift of the nearest
    paired rows above and below (blended linearly; none: the identity).
    """
    source_fg = np.asarray(source_fg, bool)
    target_fg = np.asarray(target_fg, bool)
    if source_fg.shape != target_fg.shape or source_fg.ndim != 2:
        raise ValueError(f"row_warp: expected two (H, W) masks of one shape, got {source_fg.shape} and "
                         f"{target_fg.shape}")
    h, w = target_fg.shape
    ys, xs = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    src_rows = np.flatnonzero(source_fg.any(1))
    if not len(src_rows):
        return ys, xs
    centres = np.arange(w) + 0.5
    matched, unmatched = [], []
    for y in np.flatnonzero(target_fg.any(1)):
        t_runs = _runs(target_fg[y])
        sy = int(src_rows[np.argmin(np.abs(src_rows - y))])
        ys[y] = sy
        s_runs = _runs(source_fg[sy])
        if not t_runs or len(s_runs) != len(t_runs):
            unmatched.append(y)
            continue
        matched.append(y)
        for (a, b), (c, d) in zip(s_runs, t_runs):
            sel = slice(int(c), int(d))
            xs[y, sel] = a + (centres[sel] - c) * (b - a) / (d - c) - 0.5
    # A row whose runs do not pair up (a hand meeting the skirt in one view and not the other) takes
    # the shift of the nearest paired rows above and below, blended: a whole-row stretch there would
    # tear the image along that row.
    if matched and unmatched:
        shift = xs - np.arange(w)[None]
        m = np.asarray(matched)
        for y in unmatched:
            k = np.searchsorted(m, y)
            above, below = (m[k - 1] if k > 0 else None), (m[k] if k < len(m) else None)
            if above is None or below is None:
                xs[y] += shift[above if below is None else below]
            else:
                t = (y - above) / (below - above)
                xs[y] += (1 - t) * shift[above] + t * shift[below]
    return ys, xs


def apply_row_warp(image: np.ndarray, source_fg: np.ndarray, warp: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Sample ``image`` ``(C, H, W)`` at the ``warp`` coordinates (from :func:`row_warp`), bilinearly.

    The source's background never bleeds in: before sampling, each background pixel takes the value
    of the nearest foreground pixel of ``source_fg`` ``(H, W)``.
    """
    image = np.asarray(image, np.float64)
    source_fg = np.asarray(source_fg, bool)
    if source_fg.any():
        _, (iy, ix) = ndimage.distance_transform_edt(~source_fg, return_indices=True)
        image = image[:, iy, ix]
    coords = np.stack(warp)
    return np.stack([ndimage.map_coordinates(c, coords, order=1, mode="nearest") for c in image])


def fit_to_silhouette(image: np.ndarray, source_alpha: np.ndarray, target_alpha: np.ndarray) -> np.ndarray:
    """``image`` ``(C, H, W)`` (straight colour, normals, ...) whose silhouette is ``source_alpha``
    ``(H, W)``, carried row by row onto ``target_alpha`` ``(H, W)`` (both in [0, 1], foreground above
    0.5). The caller pairs the result with ``target_alpha``."""
    src = np.asarray(source_alpha) > 0.5
    warp = row_warp(src, np.asarray(target_alpha) > 0.5)
    return apply_row_warp(image, src, warp)
