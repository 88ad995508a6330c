"""Bilinear lookup in a triplane (three axis-aligned feature planes), as the S-LRM's field uses.

Planes are stored ``(B, 3, C, H, W)`` in the order XY, XZ, YZ. Plane ``XY`` is indexed by
``(x, y)``: x runs along its width (W, left to right) and y along its height (H, top row = -bound);
likewise ``XZ`` by ``(x, z)`` and ``YZ`` by ``(y, z)``. Points inside the box
``[-bound, bound]^3`` map linearly to ``[-1, 1]`` plane coordinates with ``align_corners=False``
(a texel's centre sits at the middle of its cell); points outside read zeros.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stdgen.utils.checks import check_tensor

__all__ = ["PLANE_AXES", "sample_triplane"]

#: World axes (width axis, height axis) of each plane, in storage order.
PLANE_AXES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2))


def sample_triplane(
    planes: torch.Tensor,
    points: torch.Tensor,
    bound: float = 1.0,
    *,
    reduce: str = "concat",
) -> torch.Tensor:
    """Features of ``points`` from ``planes``.

    Args:
        planes: ``(B, 3, C, H, W)`` feature planes (XY, XZ, YZ).
        points: ``(B, N, 3)`` world points.
        bound: half the side of the cube the planes cover.
        reduce: ``"concat"`` -> ``(B, N, 3C)`` (plane order XY, XZ, YZ), ``"sum"`` or ``"mean"`` ->
            ``(B, N, C)``.

    Returns:
        The bilinearly interpolated features; differentiable in ``planes`` and ``points``.
    """
    check_tensor(planes, "planes", (None, 3, None, None, None))
    check_tensor(points, "points", (planes.shape[0], None, 3))
    if reduce not in ("concat", "sum", "mean"):
        raise ValueError(f"reduce: expected concat, sum or mean, got {reduce!r}")
    b, _, c, h, w = planes.shape
    uv = points / bound  # (B, N, 3) in [-1, 1] inside the box
    feats = []
    for k, (a0, a1) in enumerate(PLANE_AXES):
        grid = torch.stack([uv[..., a0], uv[..., a1]], -1)[:, None]  # (B, 1, N, 2): (x->W, y->H)
        f = F.grid_sample(planes[:, k], grid.to(planes.dtype), mode="bilinear", padding_mode="zeros",
                          align_corners=False)  # (B, C, 1, N)
        feats.append(f[:, :, 0].transpose(1, 2))  # (B, N, C)
    if reduce == "concat":
        return torch.cat(feats, -1)
    out = feats[0] + feats[1] + feats[2]
    return out / 3.0 if reduce == "mean" else out
