"""Rays of a batch of cameras, and where they cross an axis-aligned box.

Cameras are given as plain matrices (``world_to_cam`` and ``proj``, OpenGL conventions, see
``docs/conventions.md``), orthographic (``proj[3, 3] == 1``) or perspective. A ray is
``origin + t * direction`` with a unit ``direction``; ``t_per_depth`` converts a camera-space depth
(distance along the viewing axis, what depth maps store) into ``t``: ``t = depth * t_per_depth``.
Pixel ``(i, j)`` of an ``(H, W)`` image has its centre at NDC ``x = (2j+1)/W - 1``,
``y = 1 - (2i+1)/H`` (row 0 at the top).
"""

from __future__ import annotations

import torch

from stdgen.utils.checks import check_tensor

__all__ = ["box_intersection", "camera_rays", "normalizing_transform", "pixel_ndc", "plucker"]


def pixel_ndc(height: int, width: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """``(H, W, 2)`` NDC (x, y) of the pixel centres."""
    j = (2 * torch.arange(width, device=device, dtype=dtype) + 1) / width - 1
    i = 1 - (2 * torch.arange(height, device=device, dtype=dtype) + 1) / height
    return torch.stack(torch.broadcast_tensors(j[None, :], i[:, None]), -1)


def camera_rays(world_to_cam: torch.Tensor, proj: torch.Tensor, ndc: torch.Tensor):
    """Rays through NDC points.

    Args:
        world_to_cam: ``(..., 4, 4)`` view matrices.
        proj: ``(..., 4, 4)`` projections (same leading shape, or broadcastable).
        ndc: ``(..., R, 2)`` NDC points per camera (leading shape as the matrices').

    Returns:
        ``origins (..., R, 3)``, unit ``directions (..., R, 3)``, ``t_per_depth (..., R)``.
        Orthographic rays start on the plane through the eye; perspective ones at the eye.
    """
    check_tensor(world_to_cam, "world_to_cam", min_dims=2)
    check_tensor(proj, "proj", min_dims=2)
    if world_to_cam.shape[-2:] != (4, 4) or proj.shape[-2:] != (4, 4):
        raise ValueError(f"world_to_cam/proj: expected (..., 4, 4), got {tuple(world_to_cam.shape)} and "
                         f"{tuple(proj.shape)}")
    with torch.autocast(ndc.device.type, enabled=False):  # never in bf16: eye planes sit ~15 box units away
        return _camera_rays(world_to_cam, proj, ndc.float())


def _camera_rays(world_to_cam: torch.Tensor, proj: torch.Tensor, ndc: torch.Tensor):
    cam_to_world = torch.linalg.inv(world_to_cam.double()).to(ndc.dtype)
    p = proj.to(ndc.dtype)
    ortho = (p[..., 3, 3] == 1)[..., None]  # (..., 1)
    # Camera space: orthographic rays start at (x, y, 0) and run along (0, 0, -1); perspective ones
    # start at the eye and run through (x, y, -1) (symmetric frusta: no off-centre terms).
    x_o = (ndc[..., 0] - p[..., None, 0, 3]) / p[..., None, 0, 0]
    y_o = (ndc[..., 1] - p[..., None, 1, 3]) / p[..., None, 1, 1]
    x_p = ndc[..., 0] / p[..., None, 0, 0]
    y_p = ndc[..., 1] / p[..., None, 1, 1]
    zeros, ones = torch.zeros_like(x_o), torch.ones_like(x_o)
    o_cam = torch.where(ortho[..., None], torch.stack([x_o, y_o, zeros], -1), torch.zeros_like(ndc[..., :1]).expand(
        *x_o.shape, 3))
    d_cam = torch.where(ortho[..., None], torch.stack([zeros, zeros, -ones], -1), torch.stack([x_p, y_p, -ones], -1))
    rot = cam_to_world[..., None, :3, :3]
    origins = (rot @ o_cam[..., None])[..., 0] + cam_to_world[..., None, :3, 3]
    d = (rot @ d_cam[..., None])[..., 0]
    norm = d.norm(dim=-1)
    return origins, d / norm[..., None], norm


def normalizing_transform(center: torch.Tensor, half_size: torch.Tensor) -> torch.Tensor:
    """``(..., 4, 4)`` matrix ``M`` taking normalised points to world ones, ``p_w = c + h p_n``; a
    camera's ``world_to_cam @ M`` sees the normalised frame (the character's box is ``[-1, 1]^3``)."""
    m = torch.zeros(*center.shape[:-1], 4, 4, dtype=center.dtype, device=center.device)
    m[..., 0, 0] = m[..., 1, 1] = m[..., 2, 2] = half_size
    m[..., :3, 3] = center
    m[..., 3, 3] = 1
    return m


def box_intersection(origins: torch.Tensor, directions: torch.Tensor, bound: float = 1.0):
    """Entry and exit ``t`` ``(...)`` of rays through ``[-bound, bound]^3`` (``near >= 0``); rays that
    miss have ``near >= far``."""
    inv = 1.0 / torch.where(directions.abs() < 1e-9, torch.full_like(directions, 1e-9), directions)
    t0 = (-bound - origins) * inv
    t1 = (bound - origins) * inv
    near = torch.minimum(t0, t1).amax(-1).clamp_min(0.0)
    far = torch.maximum(t0, t1).amin(-1)
    return near, far


def plucker(origins: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """``(..., 6)`` Plücker coordinates ``(d, o x d)`` of rays (independent of where on the ray ``o`` is)."""
    return torch.cat([directions, torch.cross(origins, directions, dim=-1)], -1)
