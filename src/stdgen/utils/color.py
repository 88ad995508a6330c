"""sRGB transfer functions (IEC 61966-2-1), on arrays of values in [0, 1]."""

from __future__ import annotations

import numpy as np


def srgb_to_linear(c) -> np.ndarray:
    """sRGB-encoded values -> linear values, float64."""
    c = np.asarray(c, np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c) -> np.ndarray:
    """Linear values (clipped to [0, 1]) -> sRGB-encoded values, float64."""
    c = np.clip(np.asarray(c, np.float64), 0, 1)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1 / 2.4) - 0.055)
