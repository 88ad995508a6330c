"""Texture sampling: :func:`texture` (one texture per image, differentiable) and the batched
renderer's :func:`sample_bank` (each sample from its own texture of a bank, the same values)."""

from __future__ import annotations

import numpy as np
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


def texture_bank(textures: list[np.ndarray], device) -> tuple[torch.Tensor, torch.Tensor]:
    """All textures flattened into one (T, 3) uint8 tensor, and (K, 3) int64 rows
    ``(offset, width, height)``."""
    if not textures:
        return torch.zeros(1, 3, dtype=torch.uint8, device=device), torch.zeros(1, 3, dtype=torch.long, device=device)
    sizes = np.array([[t.shape[1], t.shape[0]] for t in textures], np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes[:, 0] * sizes[:, 1])[:-1]])
    info = np.concatenate([offsets[:, None], sizes], 1)
    # Upload texture by texture and join on the device: a batch holds ~200 MB of textures, and one
    # host-side concatenation of them cost more than the whole GPU render.
    flat = torch.cat([_shared_tensor(t).to(device).reshape(-1, 3) for t in textures])
    return flat, torch.from_numpy(info).to(device)


def _shared_tensor(a: np.ndarray) -> torch.Tensor:
    """A tensor sharing ``a``'s memory where torch allows it (read-only arrays are copied)."""
    return torch.from_numpy(np.ascontiguousarray(a) if a.flags.writeable else np.array(a))


def sample_bank(bank: torch.Tensor, info: torch.Tensor, tex: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear texture lookups with clamped edges, each sample from its own texture.

    ``bank`` (T, 3) uint8 texels, ``info`` (K, 3) ``(offset, width, height)``, ``tex`` (P,) texture
    index per sample, ``uv`` (P, 2) glTF UVs (texel centres at ``(i + 0.5) / size``). Returns
    (P, 3) float32 in [0, 1] (the same values as :func:`stdgen.render.texture` gives one texture).
    """
    off, w, h = info[tex, 0], info[tex, 1], info[tex, 2]
    x = uv[:, 0] * w - 0.5
    y = uv[:, 1] * h - 0.5
    xf, yf = torch.floor(x), torch.floor(y)
    fx, fy = (x - xf)[:, None], (y - yf)[:, None]
    x0, y0 = xf.long(), yf.long()
    # Clamp each neighbour index once (clamp-to-edge), then gather the four texels.
    x1 = torch.minimum(torch.clamp(x0 + 1, min=0), w - 1)
    y1 = torch.minimum(torch.clamp(y0 + 1, min=0), h - 1)
    x0 = torch.minimum(torch.clamp(x0, min=0), w - 1)
    y0 = torch.minimum(torch.clamp(y0, min=0), h - 1)
    r0, r1 = off + y0 * w, off + y1 * w
    top = bank[r0 + x0].float() * (1 - fx) + bank[r0 + x1].float() * fx
    bottom = bank[r1 + x0].float() * (1 - fx) + bank[r1 + x1].float() * fx
    return (top * (1 - fy) + bottom * fy) * (1.0 / 255.0)
