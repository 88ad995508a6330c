"""Texture sampling."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stdgen.utils.checks import check_tensor


def texture(tex: torch.Tensor, uv: torch.Tensor, *, filter_mode: str = "bilinear",
            boundary_mode: str = "clamp") -> torch.Tensor:
    """Sample a texture at per-pixel UVs.

    Args:
        tex: ``(Ht, Wt, C)`` one texture for all images, or ``(V, Ht, Wt, C)``; row 0 at the top.
        uv: ``(V, H, W, 2)`` in the glTF convention: ``(0, 0)`` is the top-left corner of the
            texture, u to the right, v down; texel centres at ``(i + 0.5) / size``.
        filter_mode: ``"bilinear"`` or ``"nearest"``.
        boundary_mode: ``"clamp"`` (edge texels repeat) or ``"wrap"`` (UVs taken modulo 1).

    Returns:
        ``(V, H, W, C)`` samples; differentiable with respect to ``tex`` and (bilinear) ``uv``.
    """
    check_tensor(uv, "uv", (None, None, None, 2))
    if tex.dim() == 3:
        tex = tex.unsqueeze(0)
    check_tensor(tex, "tex", (None, None, None, None))
    views = uv.shape[0]
    if tex.shape[0] not in (1, views):
        raise ValueError(f"tex: batch {tex.shape[0]} does not match uv's {views}")
    if filter_mode not in ("bilinear", "nearest"):
        raise ValueError(f"filter_mode: expected 'bilinear' or 'nearest', got {filter_mode!r}")
    if boundary_mode == "wrap":
        uv = uv - torch.floor(uv)
    elif boundary_mode != "clamp":
        raise ValueError(f"boundary_mode: expected 'clamp' or 'wrap', got {boundary_mode!r}")
    grid = uv * 2 - 1  # grid_sample: (-1, -1) is the top-left corner with align_corners=False
    inp = tex.permute(0, 3, 1, 2).expand(views, -1, -1, -1)
    out = F.grid_sample(inp, grid.to(inp.dtype), mode=filter_mode, padding_mode="border", align_corners=False)
    return out.permute(0, 2, 3, 1)
