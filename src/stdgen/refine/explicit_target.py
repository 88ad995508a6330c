"""The ExplicitTarget pass (after Unique3D, Wu et al. 2024): per-vertex targets from the views.

Image-space losses let each view pull a vertex its own way where the views disagree (generated
normal maps are never perfectly consistent). The ExplicitTarget pass instead gives every vertex
one target: the average of the target normal maps at its projection in the views where it is
visible, weighted by how squarely each view sees it (cos^2 of the angle between the vertex normal
and the view direction). The mesh's vertex normals are then pulled toward these targets directly
(a weighted least-squares in vertex space), with the topology fixed; targets are recomputed every
few steps as the surface turns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from stdgen.refine.losses import collision_loss, laplacian_loss
from stdgen.refine.optimizer import VertexAdam, VertexAdamConfig
from stdgen.render import rasterize, shade
from stdgen.render.camera import Cameras
from stdgen.utils.config import ConfigMixin, check_range


@dataclass
class ExplicitTargetConfig(ConfigMixin):
    """Settings of the ExplicitTarget pass."""

    #: Optimisation steps of the pass (0 = no pass).
    steps: int = 30
    #: Recompute the per-vertex targets every this many steps.
    retarget_every: int = 10
    #: Step size as a fraction of each vertex's mean edge length (:class:`VertexAdam`).
    lr: float = 0.05
    #: Weight of a view: cos(angle) ** power.
    power: float = 2.0
    #: A vertex counts as visible when its depth is within this many pixels of the depth buffer's.
    depth_tolerance_px: float = 1.5
    #: Weight of the uniform-Laplacian regulariser.
    laplacian: float = 0.02
    #: Weight of the collision term (Eq. 13) against the fixed inner layers.
    collision: float = 100.0

    def __post_init__(self) -> None:
        check_range(self, "steps", 0, 10000, integer=True)
        check_range(self, "retarget_every", 1, 10000, integer=True)
        check_range(self, "lr", 0, None, lo_open=True)
        check_range(self, "power", 0, None)
        check_range(self, "depth_tolerance_px", 0, None)
        check_range(self, "laplacian", 0, None)
        check_range(self, "collision", 0, None)


def vertex_visibility(vertices: torch.Tensor, normals: torch.Tensor, scene_vertices: torch.Tensor,
                      scene_faces: torch.Tensor, cameras: Cameras, resolution: tuple[int, int],
                      depth_tolerance: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Which of ``vertices`` (N, 3) each camera sees, in front of everything in the scene.

    Returns ``visible`` (V, N) bool, ``cos`` (V, N) cosine between the vertex normal and the
    direction to the camera, and ``uv`` (V, N, 2) the vertex's image position in
    ``grid_sample``'s [-1, 1] convention (x right, y down).
    """
    h, w = resolution
    with torch.no_grad():
        clip = cameras.clip(scene_vertices)
        rast = rasterize(clip, scene_faces, resolution)
        depth = shade.linear_depth(scene_vertices, scene_faces, rast, cameras)[..., 0]  # (V, H, W)
        covered = rast[..., 3] > 0
        pix, vdepth = cameras.project(vertices, resolution)  # (V, N, 2) (col, row); (V, N)
        col = pix[..., 0].floor().long().clamp(0, w - 1)
        row = pix[..., 1].floor().long().clamp(0, h - 1)
        vi = torch.arange(len(cameras), device=vertices.device)[:, None].expand_as(col)
        buf = depth[vi, row, col]
        cov = covered[vi, row, col]
        inside = (pix[..., 0] >= 0) & (pix[..., 0] < w) & (pix[..., 1] >= 0) & (pix[..., 1] < h)
        to_cam = -cameras.forward[:, None, :]  # orthographic and near-orthographic: the view direction
        cos = (normals[None] * to_cam).sum(-1)
        visible = inside & cov & (vdepth <= buf + depth_tolerance) & (cos > 0)
        uv = torch.stack([pix[..., 0] / w * 2 - 1, pix[..., 1] / h * 2 - 1], -1)
    return visible, cos, uv


def explicit_targets(vertices: torch.Tensor, normals: torch.Tensor, scene_vertices: torch.Tensor,
                     scene_faces: torch.Tensor, cameras: Cameras, target_normal: torch.Tensor,
                     target_mask: torch.Tensor, *, power: float = 2.0,
                     depth_tolerance: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-vertex target normals (N, 3) and weights (N,) (0 where no view sees the vertex).

    ``target_normal`` (V, H, W, 3) unit world normals, ``target_mask`` (V, H, W, 1).
    """
    res = (target_normal.shape[1], target_normal.shape[2])
    visible, cos, uv = vertex_visibility(vertices, normals, scene_vertices, scene_faces, cameras, res,
                                         depth_tolerance)
    with torch.no_grad():
        maps = torch.cat([target_normal * target_mask, target_mask], -1).permute(0, 3, 1, 2)
        s = F.grid_sample(maps, uv[:, :, None, :].to(maps.dtype), mode="bilinear", align_corners=False)
        s = s[..., 0].permute(0, 2, 1)  # (V, N, 4)
        m = s[..., 3]
        n = s[..., :3] / m.clamp(min=1e-6)[..., None]
        wgt = (visible & (m > 0.5)).to(n.dtype) * cos.clamp(min=0).pow(power)
        acc = (wgt[..., None] * n).sum(0)
        total = wgt.sum(0)
        target = F.normalize(acc, dim=-1, eps=1e-12)
    return target, total


def explicit_target_pass(vertices: np.ndarray | torch.Tensor, faces: np.ndarray | torch.Tensor, cameras: Cameras,
                         target_normal: torch.Tensor, target_mask: torch.Tensor, *, pixel: float,
                         fixed_vertices: np.ndarray | torch.Tensor | None = None,
                         fixed_faces: np.ndarray | torch.Tensor | None = None,
                         fixed_normals: np.ndarray | torch.Tensor | None = None, collision_tree=None,
                         scale: float = 1.0, config: ExplicitTargetConfig | None = None,
                         device="cpu") -> np.ndarray | torch.Tensor:
    """Run the pass on one part (topology fixed); returns the moved vertices (N, 3).

    ``vertices`` (N, 3) and ``faces`` (F, 3) as arrays or tensors: given a tensor, the result is a
    float32 tensor on ``device`` (the part never leaves the device); given an array, a float64
    array. ``pixel`` is the views' pixel size in metres; ``fixed_*`` are the inner layers
    (occluders for visibility and the collision loss's inner mesh; arrays or tensors);
    ``collision_tree`` a nearest-point index over ``fixed_vertices``
    (:class:`~stdgen.geometry.nearest.NearestPoints`); ``scale`` the collision loss's length unit.
    """
    cfg = config or ExplicitTargetConfig()
    as_tensor = isinstance(vertices, torch.Tensor)
    dev = torch.device(device)
    if cfg.steps <= 0 or len(faces) == 0:
        return vertices.to(dev, torch.float32) if as_tensor else np.asarray(vertices)
    v = _on(vertices, torch.float32, dev).clone()
    tri = _on(faces, torch.long, dev)
    nf = 0 if fixed_vertices is None else len(fixed_vertices)
    if nf:
        fv = _on(fixed_vertices, torch.float32, dev)
        fn = None if fixed_normals is None else _on(fixed_normals, torch.float32, dev)
        scene_faces = torch.cat([_on(fixed_faces, torch.long, dev), tri + nf])
    else:
        fv = v[:0]
        scene_faces = tri
    edges = torch.cat([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])
    edges = torch.unique(torch.sort(edges, 1).values, dim=0)
    elen = (v[edges[:, 0]] - v[edges[:, 1]]).norm(dim=1)
    n = v.shape[0]
    vlen = torch.zeros(n, device=dev).index_add(0, edges[:, 0], elen).index_add(0, edges[:, 1], elen)
    deg = torch.zeros(n, device=dev).index_add(0, edges[:, 0], torch.ones_like(elen)).index_add(
        0, edges[:, 1], torch.ones_like(elen))
    vlen = vlen / deg.clamp(min=1)
    opt = VertexAdam(n, dev, VertexAdamConfig(lr=cfg.lr))
    target = weight = None
    for it in range(cfg.steps):
        if it % max(1, cfg.retarget_every) == 0:
            with torch.no_grad():
                vn = shade.vertex_normals(v, tri)
                target, weight = explicit_targets(v, vn, torch.cat([fv, v]), scene_faces, cameras, target_normal,
                                                  target_mask, power=cfg.power,
                                                  depth_tolerance=cfg.depth_tolerance_px * pixel)
                has = (weight > 0).to(v.dtype)
        x = v.detach().requires_grad_(True)
        vn = shade.vertex_normals(x, tri)
        loss = (has * (vn - target).square().sum(1)).sum() / has.sum().clamp(min=1)
        if cfg.laplacian > 0:
            loss = loss + cfg.laplacian * laplacian_loss(x, edges, vlen)
        if nf and cfg.collision > 0 and fixed_normals is not None:
            loss = loss + cfg.collision * collision_loss(x, fv, fn, collision_tree, scale)
        (grad,) = torch.autograd.grad(loss, x)
        opt.step(v, grad, vlen)
    return v.detach() if as_tensor else v.detach().cpu().double().numpy()


def _on(x, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``x`` (an array or a tensor) as a tensor of ``dtype`` on ``device``."""
    if isinstance(x, torch.Tensor):
        return x.to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)
