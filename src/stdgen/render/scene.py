"""One-call rendering of a :class:`~stdgen.structures.Mesh` from a batch of cameras.

``render_mesh`` strings the primitives together (rasterize -> interpolate -> texture -> shade
-> antialias) for previews, dataset renders and evaluation. Optimisation code calls the
primitives directly on tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from stdgen.render import shade
from stdgen.render.antialias import antialias, antialias_topology
from stdgen.render.camera import Cameras
from stdgen.render.interpolate import face_attribute, interpolate
from stdgen.render.rasterize import rasterize
from stdgen.render.texture import texture as sample_texture
from stdgen.structures.mesh import Mesh
from stdgen.structures.semantics import BACKGROUND_LABEL


@dataclass
class RenderOutput:
    """Images of V views, all ``(V, H, W, C)`` float32 tensors unless noted.

    ``rgb`` shaded colour, premultiplied by ``alpha`` (black background; ``composite`` puts it
    over another);
    ``alpha`` coverage in [0, 1] (antialiased when asked); ``normal`` unit world-space normals
    (0 on background); ``depth`` camera-space depth in metres (0 on background); ``labels``
    ``(V, H, W)`` uint8 semantic labels (``BACKGROUND_LABEL`` on background; only when face labels
    were given); ``rast`` the rasteriser output.
    """

    rgb: torch.Tensor
    alpha: torch.Tensor
    normal: torch.Tensor
    depth: torch.Tensor
    rast: torch.Tensor
    labels: torch.Tensor | None = None

    def composite(self, background=1.0) -> torch.Tensor:
        """``(V, H, W, 3)`` colour over a constant (or per-pixel) background."""
        bg = torch.as_tensor(background, dtype=self.rgb.dtype, device=self.rgb.device)
        return self.rgb + bg * (1 - self.alpha)

    def normal_rgb(self, background: float = 0.5) -> torch.Tensor:
        """Normal map encoded as RGB, ``background`` outside the mask."""
        return shade.encode_normals(self.normal, self.alpha, background)


def render_mesh(
    mesh: Mesh,
    cameras: Cameras,
    resolution: tuple[int, int] | int,
    *,
    shading: str = "toon",
    light_dir=shade.DEFAULT_LIGHT,
    face_labels: np.ndarray | torch.Tensor | None = None,
    antialiasing: bool = True,
    smooth_normals: bool = True,
    backend: str = "auto",
    default_color=(0.8, 0.8, 0.8),
) -> RenderOutput:
    """Render ``mesh`` from every camera in ``cameras`` (on the cameras' device).

    ``shading`` is ``"toon"``, ``"lambert"``, ``"flat"`` (unlit albedo) or ``"normal"`` (the
    normal map as colour). Albedo comes from the texture if the mesh has one, else from vertex
    colours, else ``default_color``. ``face_labels`` (F,) or ``mesh.extras["face_labels"]`` give the
    semantic label map.
    """
    if isinstance(resolution, int):
        resolution = (resolution, resolution)
    if shading not in ("toon", "lambert", "flat", "normal"):
        raise ValueError(f"shading: expected toon, lambert, flat or normal, got {shading!r}")
    dev = cameras.device
    h, w = resolution
    views = len(cameras)
    if mesh.is_empty:
        z = torch.zeros(views, h, w, 1, device=dev)
        labels = torch.full((views, h, w), BACKGROUND_LABEL, dtype=torch.uint8, device=dev)
        return RenderOutput(z.expand(-1, -1, -1, 3).clone(), z, z.expand(-1, -1, -1, 3).clone(), z.clone(),
                            torch.zeros(views, h, w, 4, device=dev), labels)
    t = mesh.to_torch(dev)
    verts, tri = t["vertices"], t["faces"]
    clip = cameras.clip(verts)
    rast = rasterize(clip, tri, resolution, backend=backend)
    alpha = shade.mask(rast)
    if mesh.normals is not None and smooth_normals:
        normal = torch.nn.functional.normalize(
            interpolate(torch.from_numpy(mesh.normals).to(dev), rast, tri), dim=-1, eps=1e-20)
    else:
        normal = shade.pixel_normals(verts, tri, rast, smooth=smooth_normals)
    depth = shade.linear_depth(verts, tri, rast, cameras)

    if "texture" in t:
        uv = interpolate(t["uvs"], rast, t["uv_faces"])
        albedo = sample_texture(t["texture"][..., :3], uv)
    elif "colors" in t:
        albedo = interpolate(t["colors"], rast, tri)
    else:
        albedo = torch.tensor(default_color, device=dev).expand(views, h, w, 3)

    if shading == "toon":
        rgb = shade.shade_toon(albedo, normal, light_dir)
    elif shading == "lambert":
        rgb = shade.shade_lambert(albedo, normal, light_dir)
    elif shading == "normal":
        rgb = shade.encode_normals(normal)
    else:
        rgb = albedo
    rgb = rgb * alpha

    if face_labels is None:
        face_labels = mesh.extras.get("face_labels")
    if face_labels is None and mesh.label is not None:
        face_labels = np.full(mesh.num_faces, int(mesh.label), np.uint8)
    labels = None
    if face_labels is not None:
        fl = torch.as_tensor(np.asarray(face_labels), device=dev).to(torch.uint8)
        labels = face_attribute(fl, rast, background=BACKGROUND_LABEL)

    if antialiasing:
        topo = antialias_topology(tri, verts)
        stacked = antialias(torch.cat([rgb, alpha], -1), rast, clip, tri, topo)
        rgb, alpha = stacked[..., :3], stacked[..., 3:4]
    return RenderOutput(rgb=rgb, alpha=alpha, normal=normal, depth=depth, rast=rast, labels=labels)
