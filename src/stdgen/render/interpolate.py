"""Interpolation of vertex attributes to pixels."""

from __future__ import annotations

import torch

from stdgen.render import _backend
from stdgen.utils.checks import check_tensor


def interpolate(attr: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
    """Interpolate vertex attributes with the barycentrics in ``rast``.

    Args:
        attr: ``(N, C)`` attributes shared by all images, or ``(V, N, C)`` per image.
        rast: ``(V, H, W, 4)`` output of :func:`~stdgen.render.rasterize`.
        tri: ``(F, 3)`` indices into ``attr`` with the same F (and face order) as the triangles
            rasterised. It may differ from the rasterised index array, e.g. ``uv_faces`` to
            interpolate UVs that have seams of their own.

    Returns:
        ``(V, H, W, C)``: ``u a0 + v a1 + (1 - u - v) a2`` on covered pixels, 0 elsewhere.
        Differentiable with respect to ``attr`` and to ``rast``'s ``u``, ``v`` (hence to the
        vertex positions).

    ``backend``: ``"auto"`` (the fast path for the device where there is one), ``"torch"`` (the
    reference, :func:`interpolate_torch`) or a backend name (see :func:`~stdgen.render.rasterize`).
    """
    check_tensor(rast, "rast", (None, None, None, 4))
    check_tensor(tri, "tri", (None, 3), dtype=(torch.int32, torch.int64))
    check_tensor(attr, "attr", min_dims=2)
    views, h, w, _ = rast.shape
    if attr.dim() == 3 and attr.shape[0] not in (1, views):
        raise ValueError(f"attr: batch {attr.shape[0]} does not match rast's {views} images")
    if attr.dim() not in (2, 3):
        raise ValueError(f"attr: expected (N, C) or (V, N, C), got {tuple(attr.shape)}")
    if attr.dtype in (torch.float32, torch.float64) and rast.device == attr.device:
        fast = _backend.pick("interpolate", backend, attr.device)
        if fast is not None:
            return fast(attr, rast, tri)
    return interpolate_torch(attr, rast, tri)


def interpolate_torch(attr: torch.Tensor, rast: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """Reference :func:`interpolate` in plain PyTorch (differentiable by autograd)."""
    views, h, w, _ = rast.shape
    channels = attr.shape[-1]
    flat = rast.reshape(-1, 4)
    covered = torch.nonzero(flat[:, 3] > 0).squeeze(1)
    out = torch.zeros(views * h * w, channels, dtype=attr.dtype, device=attr.device)
    if covered.numel() == 0:
        return out.view(views, h, w, channels)
    f = flat[covered, 3].long() - 1
    if int(f.max()) >= tri.shape[0]:
        raise ValueError(f"rast refers to face {int(f.max())} but tri has {tri.shape[0]} faces")
    idx = tri.long()[f]  # (P, 3)
    u = flat[covered, 0:1].to(attr.dtype)
    v = flat[covered, 1:2].to(attr.dtype)
    if attr.dim() == 2:
        a0, a1, a2 = attr[idx[:, 0]], attr[idx[:, 1]], attr[idx[:, 2]]
    else:
        view = covered // (h * w) if attr.shape[0] == views else torch.zeros_like(covered)
        a0, a1, a2 = attr[view, idx[:, 0]], attr[view, idx[:, 1]], attr[view, idx[:, 2]]
    vals = u * a0 + v * a1 + (1 - u - v) * a2
    out = out.index_put((covered,), vals)
    return out.view(views, h, w, channels)


def face_attribute(values: torch.Tensor, rast: torch.Tensor, background=0) -> torch.Tensor:
    """Per-face values ``(F, ...)`` looked up per pixel -> ``(V, H, W, ...)``; ``background`` where empty.

    For labels and flat shading; not differentiable with respect to positions.
    """
    fid = rast[..., 3].long() - 1
    out = values[fid.clamp(min=0)]
    bg = torch.as_tensor(background, dtype=values.dtype, device=values.device)
    mask = (fid < 0).reshape(fid.shape + (1,) * (values.dim() - 1))
    return torch.where(mask, bg, out)
