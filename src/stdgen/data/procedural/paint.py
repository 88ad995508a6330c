"""2D and solid painting helpers: anti-aliased shapes from signed distances, colour blending,
patterns (stripes, checks, dots) as functions of coordinates.

Images are float32 ``(H, W, 3)`` in [0, 1] sRGB while painting; shapes are given as signed distances
(negative inside) in the same units as ``pixel`` (the size of one texel), so edges are anti-aliased
over one texel whatever the units.
"""

from __future__ import annotations

import colorsys

import numpy as np


def coverage(d: np.ndarray, pixel: float) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of a shape with signed distance ``d`` (negative inside)."""
    return np.clip(0.5 - d / pixel, 0.0, 1.0)


def blend(img: np.ndarray, color, alpha) -> None:
    """In place: ``img = img * (1 - alpha) + color * alpha``; ``color`` (3,) or per-pixel (..., 3).

    Only pixels with ``alpha > 0`` are touched (shapes usually cover a small part of a texture)."""
    alpha = np.asarray(alpha, np.float32)
    color = np.asarray(color, np.float32)
    if alpha.ndim == 0:
        img *= 1.0 - alpha
        img += color * alpha
        return
    mask = alpha > 0
    count = np.count_nonzero(mask)
    if count == 0:
        return
    if count > mask.size // 4:  # mostly covered: dense is cheaper than gathering
        a = alpha[..., None]
        img *= 1.0 - a
        img += color * a
        return
    idx = np.nonzero(mask)
    a = alpha[idx][:, None]
    c = color[idx] if color.ndim > 1 else color
    img[idx] = img[idx] * (1.0 - a) + c * a


def ellipse_sd(x: np.ndarray, y: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    """Approximate signed distance to an axis-aligned ellipse (exact on the axes)."""
    k = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
    return (k - 1.0) * min(rx, ry)


def rotated(x: np.ndarray, y: np.ndarray, cx: float, cy: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates relative to (cx, cy), rotated by ``-angle`` (radians), so shapes drawn in the
    result appear rotated by ``angle``."""
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = x - cx, y - cy
    return c * dx + s * dy, -s * dx + c * dy


def stroke_sd(x: np.ndarray, y: np.ndarray, curve_y: np.ndarray, half_width: np.ndarray) -> np.ndarray:
    """Signed distance (vertical approximation) to a band of half-width ``half_width`` around the
    curve ``y = curve_y(x)`` (both given per pixel)."""
    return np.abs(y - curve_y) - half_width


def smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1))), np.float32)


def shade(color, factor: float) -> np.ndarray:
    """Darker (< 1) or lighter (> 1, towards white) version of a colour."""
    c = np.asarray(color, np.float32)
    if factor <= 1:
        return c * factor
    return c + (1 - c) * min(factor - 1, 1.0)


def mix(a, b, t) -> np.ndarray:
    return np.asarray(a, np.float32) * (1 - t) + np.asarray(b, np.float32) * t


# -- patterns: 1 on the pattern's ink, 0 elsewhere, anti-aliased; coordinates in metres --------------------
def stripes(s: np.ndarray, period: float, duty: float, pixel: float) -> np.ndarray:
    """Parallel stripes across coordinate ``s``: ink where ``s mod period < duty * period``."""
    t = np.mod(s, period)
    half = 0.5 * duty * period
    d = np.abs(t - half) - half
    return coverage(d, pixel)


def checks(s: np.ndarray, t: np.ndarray, period: float) -> np.ndarray:
    """Checkerboard (hard edges are fine: texel-aligned enough at garment scale)."""
    return (np.floor(s / period) + np.floor(t / period)) % 2


def tartan(s: np.ndarray, t: np.ndarray, period: float, pixel: float) -> np.ndarray:
    """A plaid in [0, 1]: overlapping broad and thin bands in two directions (0.5 where one crosses)."""
    a = 0.5 * stripes(s, period, 0.35, pixel) + 0.5 * stripes(t, period, 0.35, pixel)
    thin = np.maximum(stripes(s + 0.5 * period, period, 0.06, pixel), stripes(t + 0.5 * period, period, 0.06, pixel))
    return np.maximum(a, thin)


def dots(s: np.ndarray, t: np.ndarray, period: float, radius: float, pixel: float) -> np.ndarray:
    """Polka dots on a staggered grid."""
    row = np.floor(t / period)
    ss = s + 0.5 * period * (row % 2)
    ds = np.mod(ss, period) - 0.5 * period
    dt = np.mod(t, period) - 0.5 * period
    return coverage(np.sqrt(ds * ds + dt * dt) - radius, pixel)
