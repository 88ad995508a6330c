"""Helpers over rasteriser outputs: masks, normals, depth, and flat / Lambert / toon shading.

All take and return plain tensors with the layouts of :mod:`stdgen.render`; images are
``(V, H, W, C)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stdgen.render.camera import Cameras
from stdgen.render.interpolate import interpolate

#: Default world-space direction *towards* the key light: from the front, above, slightly left.
DEFAULT_LIGHT = (0.35, 0.75, 0.55)


def mask(rast: torch.Tensor) -> torch.Tensor:
    """``(V, H, W, 1)`` float 1 where a triangle covers the pixel centre (no gradient; pass it
    through :func:`~stdgen.render.antialias` for silhouette gradients)."""
    return (rast[..., 3:4] > 0).to(rast.dtype)


def face_normals(vertices: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """``(F, 3)`` unit face normals of ``(N, 3)`` (or ``(V, N, 3)`` -> ``(V, F, 3)``) vertices; differentiable."""
    t = tri.long()
    v0, v1, v2 = vertices[..., t[:, 0], :], vertices[..., t[:, 1], :], vertices[..., t[:, 2], :]
    return F.normalize(torch.linalg.cross(v1 - v0, v2 - v0), dim=-1, eps=1e-20)


def vertex_normals(vertices: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """``(N, 3)`` unit area-weighted vertex normals (``(V, N, 3)`` batched); differentiable."""
    t = tri.long()
    v0, v1, v2 = vertices[..., t[:, 0], :], vertices[..., t[:, 1], :], vertices[..., t[:, 2], :]
    fn = torch.linalg.cross(v1 - v0, v2 - v0)  # length = 2 * area
    vn = torch.zeros_like(vertices)
    for k in range(3):
        vn = vn.index_add(vertices.dim() - 2, t[:, k], fn)
    return F.normalize(vn, dim=-1, eps=1e-20)


def encode_normals(normals: torch.Tensor, alpha: torch.Tensor | None = None, background: float = 0.5) -> torch.Tensor:
    """Unit normals in [-1, 1] -> RGB in [0, 1] as normal maps store them (``(n + 1) / 2``);
    ``background`` where ``alpha`` is 0."""
    rgb = normals * 0.5 + 0.5
    if alpha is not None:
        rgb = rgb * alpha + background * (1 - alpha)
    return rgb


def decode_normals(rgb: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] -> unit normals."""
    return F.normalize(rgb * 2 - 1, dim=-1, eps=1e-12)


def world_to_camera_normals(normals: torch.Tensor, cameras: Cameras) -> torch.Tensor:
    """``(V, H, W, 3)`` world-space normals -> camera space (+X right, +Y up, +Z towards the viewer)."""
    rot = cameras.world_to_cam[:, :3, :3].to(normals.dtype)
    return torch.einsum("vab,vhwb->vhwa", rot, normals)


def pixel_normals(vertices: torch.Tensor, tri: torch.Tensor, rast: torch.Tensor, smooth: bool = True) -> torch.Tensor:
    """``(V, H, W, 3)`` unit world-space normals per pixel (0 on background): interpolated vertex
    normals (``smooth``) or face normals; differentiable."""
    if smooth:
        n = interpolate(vertex_normals(vertices, tri), rast, tri)
    else:
        fid = rast[..., 3].long() - 1
        n = face_normals(vertices, tri)[fid.clamp(min=0)] * (fid >= 0)[..., None]
    return F.normalize(n, dim=-1, eps=1e-20)


def linear_depth(vertices: torch.Tensor, tri: torch.Tensor, rast: torch.Tensor, cameras: Cameras) -> torch.Tensor:
    """``(V, H, W, 1)`` camera-space depth in metres (distance along the viewing axis), 0 on
    background; perspective-correct and differentiable."""
    z = -cameras.to_camera(vertices)[..., 2:3]  # (V, N, 1)
    return interpolate(z, rast, tri)


def shade_flat(albedo: torch.Tensor) -> torch.Tensor:
    """Unlit: the albedo itself."""
    return albedo


def shade_lambert(
    albedo: torch.Tensor, normals: torch.Tensor, light_dir=DEFAULT_LIGHT, ambient: float = 0.35
) -> torch.Tensor:
    """Lambert shading with one directional light (``light_dir`` points towards the light, world)."""
    light = F.normalize(torch.as_tensor(light_dir, dtype=normals.dtype, device=normals.device), dim=0)
    ndl = (normals * light).sum(-1, keepdim=True).clamp(min=0)
    return albedo * (ambient + (1 - ambient) * ndl)


def shade_toon(albedo: torch.Tensor, normals: torch.Tensor, light_dir=DEFAULT_LIGHT, *, threshold: float = 0.15,
               softness: float = 0.08, shadow: float = 0.72, rim: float = 0.0,
               view_dir: torch.Tensor | None = None) -> torch.Tensor:
    """Anime (cel) shading: lit colour and a shadow band with a soft step, as MToon does.

    ``shadow`` scales the albedo in the shade; the shade is also tinted slightly towards warm red,
    the usual anime skin-shadow look. ``rim`` adds a view-dependent rim light (needs ``view_dir``,
    unit vectors from the surface towards the camera, broadcastable to ``normals``).
    """
    light = F.normalize(torch.as_tensor(light_dir, dtype=normals.dtype, device=normals.device), dim=0)
    ndl = (normals * light).sum(-1, keepdim=True)
    lit = torch.sigmoid((ndl - threshold) / max(softness, 1e-4))
    tint = torch.tensor([1.0, 0.92, 0.95], dtype=albedo.dtype, device=albedo.device)
    shade = albedo * shadow * tint
    out = shade + (albedo - shade) * lit
    if rim > 0 and view_dir is not None:
        ndv = (normals * view_dir).sum(-1, keepdim=True).clamp(0, 1)
        out = out + rim * (1 - ndv) ** 4
    return out.clamp(0, 1)


def composite(rgb: torch.Tensor, alpha: torch.Tensor, background=1.0) -> torch.Tensor:
    """Alpha-composite ``(V, H, W, 3)`` over a constant or per-pixel background."""
    bg = torch.as_tensor(background, dtype=rgb.dtype, device=rgb.device)
    return rgb * alpha + bg * (1 - alpha)
