"""Cameras: orthographic and perspective, look-at from azimuth / elevation / distance, batched,
and the named view sets the project uses.

Conventions (the one place they are defined; ``docs/conventions.md`` repeats them):

World frame
    Right-handed, metres, **+Y up**, the character **faces +Z**, feet at y = 0. The character's
    left hand is on the +X side.
Azimuth / elevation
    A camera at azimuth ``a`` and elevation ``e`` (degrees) around a centre ``c`` sits at
    ``c + d * (sin a cos e, sin e, cos a cos e)`` and looks at ``c``. Azimuth 0 sees the
    character's front, +90 its left side (camera on +X), 180 its back, -90 its right side.
    Positive elevation looks down from above.
Camera space
    OpenGL's: the camera looks down -Z, +X right, +Y up.
Clip space
    OpenGL's: visible points satisfy -w <= x, y, z <= w; ``z/w`` is -1 at the near plane and +1
    at the far plane. Orthographic cameras have w = 1.
Pixels
    Images are (H, W) with **row 0 at the top** (as stored in PNGs). Pixel (i, j) has its centre
    at NDC ``x = (2 j + 1) / W - 1``, ``y = 1 - (2 i + 1) / H``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from stdgen.utils.checks import check_tensor

#: Azimuths (degrees) of the paper's six generation views (orthographic, elevation 0).
GENERATION_AZIMUTHS: tuple[float, ...] = (-90.0, -45.0, 0.0, 45.0, 90.0, 180.0)
#: Azimuths of the eight evaluation views (orthographic, elevation 0, 45-degree steps).
EVALUATION_AZIMUTHS: tuple[float, ...] = (0.0, 45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0)


@dataclass
class Cameras:
    """A batch of V cameras.

    ``world_to_cam`` (V, 4, 4) view matrices; ``proj`` (V, 4, 4) camera -> clip projections;
    ``orthographic`` (V,) bool; ``names`` optional per-view names (for files and logs).
    """

    world_to_cam: torch.Tensor
    proj: torch.Tensor
    orthographic: torch.Tensor
    names: list[str] | None = None

    def __post_init__(self) -> None:
        check_tensor(self.world_to_cam, "world_to_cam", (None, 4, 4))
        v = self.world_to_cam.shape[0]
        check_tensor(self.proj, "proj", (v, 4, 4))
        self.orthographic = torch.as_tensor(self.orthographic, dtype=torch.bool, device=self.world_to_cam.device)
        self.orthographic = self.orthographic.reshape(-1).expand(v).clone()
        if self.names is not None and len(self.names) != v:
            raise ValueError(f"Cameras: {len(self.names)} names for {v} cameras")

    def __len__(self) -> int:
        return self.world_to_cam.shape[0]

    def __getitem__(self, idx) -> Cameras:
        if isinstance(idx, int):
            idx = [idx]
        index = torch.as_tensor(np.arange(len(self))[idx], dtype=torch.long)
        names = None if self.names is None else [self.names[i] for i in index.tolist()]
        dev = self.world_to_cam.device
        return Cameras(self.world_to_cam[index.to(dev)], self.proj[index.to(dev)],
                       self.orthographic[index.to(dev)], names)

    @property
    def device(self) -> torch.device:
        return self.world_to_cam.device

    def to(self, device: str | torch.device) -> Cameras:
        return Cameras(self.world_to_cam.to(device), self.proj.to(device), self.orthographic.to(device), self.names)

    @staticmethod
    def cat(cams: Sequence[Cameras]) -> Cameras:
        names = None if any(c.names is None for c in cams) else [n for c in cams for n in c.names]
        return Cameras(torch.cat([c.world_to_cam for c in cams]), torch.cat([c.proj for c in cams]),
                       torch.cat([c.orthographic for c in cams]), names)

    # -- transforms ----------------------------------------------------------------------------------
    @property
    def full_proj(self) -> torch.Tensor:
        """(V, 4, 4) world -> clip."""
        return self.proj @ self.world_to_cam

    def to_camera(self, points: torch.Tensor) -> torch.Tensor:
        """World points (N, 3) or (V, N, 3) -> camera-space points (V, N, 3)."""
        p = _homogeneous(points, len(self))
        return (p @ self.world_to_cam.transpose(1, 2).to(p.dtype))[..., :3]

    def clip(self, points: torch.Tensor) -> torch.Tensor:
        """World points (N, 3) or (V, N, 3) -> clip-space positions (V, N, 4), the rasteriser's input."""
        p = _homogeneous(points, len(self))
        return p @ self.full_proj.transpose(1, 2).to(p.dtype)

    def project(self, points: torch.Tensor, resolution: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """World points -> (pixel coordinates (V, N, 2) as (column, row) in pixel units, with pixel
        centres at half-integers; camera-space depth (V, N), positive in front of the camera)."""
        h, w = resolution
        c = self.clip(points)
        ndc = c[..., :2] / c[..., 3:4]
        col = (ndc[..., 0] + 1) * 0.5 * w
        row = (1 - ndc[..., 1]) * 0.5 * h
        depth = -self.to_camera(points)[..., 2]
        return torch.stack([col, row], -1), depth

    @property
    def centers(self) -> torch.Tensor:
        """(V, 3) camera positions in the world (for orthographic cameras: the eye point used to place
        them, on the viewing axis in front of the scene)."""
        inv = torch.linalg.inv(self.world_to_cam)
        return inv[:, :3, 3]

    @property
    def forward(self) -> torch.Tensor:
        """(V, 3) unit viewing directions in the world (the camera's -Z axis)."""
        return -self.world_to_cam[:, 2, :3]

    def pixel_rays(self, resolution: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Rays through pixel centres: origins and unit directions, each (V, H, W, 3), in the world.

        Orthographic rays start on the near plane; perspective rays at the camera centre.
        """
        h, w = resolution
        dev = self.device
        ys = 1 - (2 * torch.arange(h, device=dev, dtype=torch.float32) + 1) / h
        xs = (2 * torch.arange(w, device=dev, dtype=torch.float32) + 1) / w - 1
        ndc_y, ndc_x = torch.meshgrid(ys, xs, indexing="ij")
        inv = torch.linalg.inv(self.full_proj)  # (V, 4, 4)
        near = torch.stack([ndc_x, ndc_y, -torch.ones_like(ndc_x), torch.ones_like(ndc_x)], -1)
        far = near.clone()
        far[..., 2] = 1
        pn = torch.einsum("vab,hwb->vhwa", inv, near)
        pf = torch.einsum("vab,hwb->vhwa", inv, far)
        pn = pn[..., :3] / pn[..., 3:4]
        pf = pf[..., :3] / pf[..., 3:4]
        d = torch.nn.functional.normalize(pf - pn, dim=-1)
        persp = ~self.orthographic
        if persp.any():
            centers = self.centers[:, None, None, :].expand_as(pn)
            pn = torch.where(persp[:, None, None, None], centers, pn)
        return pn, d

    # -- serialisation ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-able description (matrices as nested lists)."""
        return {
            "world_to_cam": self.world_to_cam.detach().cpu().tolist(),
            "proj": self.proj.detach().cpu().tolist(),
            "orthographic": self.orthographic.cpu().tolist(),
            "names": self.names,
        }

    @classmethod
    def from_dict(cls, d: dict, device: str | torch.device = "cpu") -> Cameras:
        return cls(torch.tensor(d["world_to_cam"], dtype=torch.float32, device=device),
                   torch.tensor(d["proj"], dtype=torch.float32, device=device),
                   torch.tensor(d["orthographic"], dtype=torch.bool, device=device), d.get("names"))


def _homogeneous(points: torch.Tensor, views: int) -> torch.Tensor:
    check_tensor(points, "points", min_dims=2)
    if points.shape[-1] != 3:
        raise ValueError(f"points: expected last dimension 3, got shape {tuple(points.shape)}")
    if points.dim() == 2:
        points = points.unsqueeze(0).expand(views, -1, -1)
    elif points.shape[0] not in (1, views):
        raise ValueError(f"points: batch {points.shape[0]} does not match {views} cameras")
    elif points.shape[0] == 1:
        points = points.expand(views, -1, -1)
    return torch.cat([points, torch.ones_like(points[..., :1])], -1)


# -- matrices -------------------------------------------------------------------------------------
def look_at(eye: torch.Tensor, target: torch.Tensor, up: torch.Tensor | None = None) -> torch.Tensor:
    """(V, 3) eyes and targets -> (V, 4, 4) world-to-camera matrices (camera looks down -Z).

    ``up`` defaults to +Y; where the viewing direction is (anti)parallel to it, -Z or +Z is used
    so that top and bottom views are well defined (the character's front at the image bottom).
    """
    eye = torch.as_tensor(eye, dtype=torch.float32).reshape(-1, 3)
    target = torch.as_tensor(target, dtype=torch.float32, device=eye.device).reshape(-1, 3).expand_as(eye)
    fwd = torch.nn.functional.normalize(target - eye, dim=-1)
    if up is None:
        up = torch.tensor([0.0, 1.0, 0.0], device=eye.device)
    up = torch.as_tensor(up, dtype=torch.float32, device=eye.device).reshape(-1, 3).expand_as(eye).clone()
    degenerate = torch.linalg.norm(torch.cross(fwd, up, dim=-1), dim=-1) < 1e-6
    if degenerate.any():
        # Looking straight down: image up is -Z (the back); straight up: +Z.
        alt = torch.where(fwd[:, 1:2] < 0, torch.tensor([0.0, 0.0, -1.0], device=eye.device),
                          torch.tensor([0.0, 0.0, 1.0], device=eye.device))
        up = torch.where(degenerate[:, None], alt, up)
    right = torch.nn.functional.normalize(torch.cross(fwd, up, dim=-1), dim=-1)
    true_up = torch.cross(right, fwd, dim=-1)
    m = torch.zeros(eye.shape[0], 4, 4, device=eye.device)
    m[:, 0, :3] = right
    m[:, 1, :3] = true_up
    m[:, 2, :3] = -fwd
    m[:, 0, 3] = -(right * eye).sum(-1)
    m[:, 1, 3] = -(true_up * eye).sum(-1)
    m[:, 2, 3] = (fwd * eye).sum(-1)
    m[:, 3, 3] = 1
    return m


def orthographic_projection(half_size: torch.Tensor | float, near: float, far: float, aspect: float = 1.0,
                            views: int = 1) -> torch.Tensor:
    """(V, 4, 4) orthographic projection showing ``[-half_size * aspect, half_size * aspect] x
    [-half_size, half_size]`` and camera-space depth ``[near, far]``."""
    s = torch.as_tensor(half_size, dtype=torch.float32).reshape(-1).expand(views)
    m = torch.zeros(views, 4, 4)
    m[:, 0, 0] = 1 / (s * aspect)
    m[:, 1, 1] = 1 / s
    m[:, 2, 2] = -2 / (far - near)
    m[:, 2, 3] = -(far + near) / (far - near)
    m[:, 3, 3] = 1
    return m


def perspective_projection(fov_y_deg: torch.Tensor | float, near: float, far: float, aspect: float = 1.0,
                           views: int = 1) -> torch.Tensor:
    """(V, 4, 4) OpenGL perspective projection with vertical field of view ``fov_y_deg``."""
    fov = torch.as_tensor(fov_y_deg, dtype=torch.float32).reshape(-1).expand(views)
    f = 1 / torch.tan(torch.deg2rad(fov) / 2)
    m = torch.zeros(views, 4, 4)
    m[:, 0, 0] = f / aspect
    m[:, 1, 1] = f
    m[:, 2, 2] = (far + near) / (near - far)
    m[:, 2, 3] = 2 * far * near / (near - far)
    m[:, 3, 2] = -1
    return m


def orbit_eye(azimuth_deg, elevation_deg, distance, center) -> torch.Tensor:
    """(V, 3) camera positions at the given azimuths / elevations / distances around ``center``."""
    az = torch.deg2rad(torch.as_tensor(azimuth_deg, dtype=torch.float32).reshape(-1))
    el = torch.deg2rad(torch.as_tensor(elevation_deg, dtype=torch.float32).reshape(-1))
    az, el = torch.broadcast_tensors(az, el)
    d = torch.as_tensor(distance, dtype=torch.float32).reshape(-1)
    c = torch.as_tensor(center, dtype=torch.float32).reshape(-1, 3)
    offset = torch.stack([torch.sin(az) * torch.cos(el), torch.sin(el), torch.cos(az) * torch.cos(el)], -1)
    return c + d[:, None] * offset


def _names(prefix: str, az, el) -> list[str]:
    az = torch.as_tensor(az, dtype=torch.float32).reshape(-1)
    el = torch.as_tensor(el, dtype=torch.float32).reshape(-1)
    az, el = torch.broadcast_tensors(az, el)
    return [f"{prefix}_az{a:+04.0f}_el{e:+03.0f}" for a, e in zip(az.tolist(), el.tolist())]


def orthographic_cameras(azimuth_deg, elevation_deg=0.0, *, center=(0.0, 0.0, 0.0), half_size: float = 1.0,
                         distance: float = 10.0, aspect: float = 1.0, names: list[str] | None = None,
                         device: str | torch.device = "cpu") -> Cameras:
    """Orthographic cameras orbiting ``center``; the image shows ``2 * half_size`` metres vertically.

    ``distance`` only places the eye; near/far planes enclose ``center +- distance``.
    """
    eye = orbit_eye(azimuth_deg, elevation_deg, distance, center)
    v = eye.shape[0]
    view = look_at(eye, torch.as_tensor(center, dtype=torch.float32).reshape(1, 3).expand(v, 3))
    proj = orthographic_projection(half_size, near=0.0, far=2 * distance, aspect=aspect, views=v)
    return Cameras(view, proj, torch.ones(v, dtype=torch.bool), names).to(device)


def perspective_cameras(azimuth_deg, elevation_deg=0.0, distance=2.5, *, center=(0.0, 0.0, 0.0),
                        fov_y_deg: float = 40.0, near: float = 0.05, far: float = 100.0, aspect: float = 1.0,
                        names: list[str] | None = None, device: str | torch.device = "cpu") -> Cameras:
    """Perspective cameras orbiting ``center`` at the given distances."""
    eye = orbit_eye(azimuth_deg, elevation_deg, distance, center)
    v = eye.shape[0]
    view = look_at(eye, torch.as_tensor(center, dtype=torch.float32).reshape(1, 3).expand(v, 3))
    proj = perspective_projection(fov_y_deg, near, far, aspect=aspect, views=v)
    return Cameras(view, proj, torch.zeros(v, dtype=torch.bool), names).to(device)


# -- framing and named view sets -------------------------------------------------------------------
def frame_bounds(bounds: np.ndarray | torch.Tensor, margin: float = 1.1) -> tuple[tuple[float, float, float], float]:
    """Centre and orthographic half-size that frame a (2, 3) bounding box from every azimuth.

    The half-size covers the full height and the widest horizontal extent seen from any
    azimuth (the horizontal circumradius), times ``margin``; the same framing is used for all
    views of a character so pixels mean the same size in each.
    """
    b = np.asarray(bounds, dtype=np.float64).reshape(2, 3)
    center = (b[0] + b[1]) / 2
    half_h = (b[1, 1] - b[0, 1]) / 2
    radius = 0.5 * math.hypot(b[1, 0] - b[0, 0], b[1, 2] - b[0, 2])
    return (float(center[0]), float(center[1]), float(center[2])), float(max(half_h, radius) * margin)


def generation_views(center=(0.0, 0.0, 0.0), half_size: float = 1.0, **kw) -> Cameras:
    """The paper's six generation views: orthographic, elevation 0, azimuths -90, -45, 0, 45, 90, 180."""
    az = list(GENERATION_AZIMUTHS)
    return orthographic_cameras(az, 0.0, center=center, half_size=half_size, names=_names("gen", az, 0.0), **kw)


def evaluation_views(center=(0.0, 0.0, 0.0), half_size: float = 1.0, **kw) -> Cameras:
    """The eight evaluation views: orthographic, elevation 0, azimuths 0, 45, ..., 315."""
    az = list(EVALUATION_AZIMUTHS)
    return orthographic_cameras(az, 0.0, center=center, half_size=half_size, names=_names("eval", az, 0.0), **kw)


def top_bottom_views(center=(0.0, 0.0, 0.0), half_size: float = 1.0, **kw) -> Cameras:
    """Orthographic views straight down (elevation +90) and straight up (-90)."""
    return orthographic_cameras([0.0, 0.0], [90.0, -90.0], center=center, half_size=half_size,
                                names=["top", "bottom"], **kw)


def face_closeup_views(head_center, head_half_size: float, azimuths=(-40.0, -20.0, 0.0, 20.0, 40.0),
                       elevation: float = 5.0, **kw) -> Cameras:
    """Orthographic close-ups of the face: a few azimuths around the front, framing ``head_center``."""
    az = list(azimuths)
    return orthographic_cameras(az, elevation, center=head_center, half_size=head_half_size,
                                names=_names("face", az, elevation), **kw)


def random_views(count: int, generator: torch.Generator, center=(0.0, 0.0, 0.0), half_size: float = 1.0,
                 elevation_range=(-20.0, 45.0), fov_y_deg: float = 40.0, **kw) -> Cameras:
    """Perspective views at uniformly random azimuths and elevations, placed so that a sphere of
    radius ``half_size`` around ``center`` fills the frame. Deterministic for a seeded generator."""
    az = torch.rand(count, generator=generator) * 360.0 - 180.0
    lo, hi = elevation_range
    el = torch.rand(count, generator=generator) * (hi - lo) + lo
    dist = half_size / math.sin(math.radians(fov_y_deg) / 2) * 1.02
    names = [f"random_{i:02d}" for i in range(count)]
    return perspective_cameras(az, el, dist, center=center, fov_y_deg=fov_y_deg, near=max(0.01, dist - 3 * half_size),
                               far=dist + 3 * half_size, names=names, **kw)
