"""Fast, non-differentiable surface extraction: scikit-image's marching cubes (Lewiner et al.).

Same input and output types as :func:`stdgen.geometry.flexicubes.flexicubes`, for inference and
for previews where gradients are not needed.
"""

from __future__ import annotations

import numpy as np
import torch

from stdgen.geometry.grid import Grid, IsoSurface

__all__ = ["marching_cubes"]


def marching_cubes(sdf: torch.Tensor | np.ndarray, grid: Grid) -> IsoSurface:
    """Zero level set of ``sdf`` ``(X, Y, Z)`` (negative inside) on ``grid``.

    Returns an :class:`IsoSurface` on the device of ``sdf`` (CPU for numpy input), triangles
    counter-clockwise seen from outside, no degenerate triangles, ``l_dev`` zero. Like FlexiCubes,
    surfaces reaching the grid boundary stay open there.
    """
    from skimage.measure import marching_cubes as sk_marching_cubes

    is_torch = isinstance(sdf, torch.Tensor)
    dev = sdf.device if is_torch else torch.device("cpu")
    dt = sdf.dtype if is_torch and sdf.is_floating_point() else torch.float32
    vol = sdf.detach().cpu().numpy() if is_torch else np.asarray(sdf)
    if vol.shape != grid.shape:
        raise ValueError(f"sdf: expected shape {grid.shape} for the grid, got {vol.shape}")
    vol = vol.astype(np.float32, copy=False)
    if not (vol.min() < 0 < vol.max()):
        return IsoSurface.empty(dev, dt)
    # 'descent': values decrease into the object (negative inside), which makes skimage's
    # triangles counter-clockwise seen from outside.
    v, f, _, _ = sk_marching_cubes(vol, 0.0, spacing=grid.spacing, gradient_direction="descent",
                                   allow_degenerate=False)
    v = v.astype(np.float64) + np.asarray(grid.origin)
    return IsoSurface(torch.as_tensor(v, dtype=dt, device=dev), torch.as_tensor(f.astype(np.int64), device=dev),
                      torch.zeros((), dtype=dt, device=dev))
