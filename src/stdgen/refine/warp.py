"""Fit the finished character's outline to one trusted view's silhouette by a smooth image-plane warp.

Refinement compares the parts with all six views at ``StageConfig.resolution`` (192 px in ``stdgen
generate``), through area-averaged targets, remeshing and a final smoothing; its front outline lands
within a pixel or two of the picture's (front silhouette IoU about 0.95 at the picture's 512 px on
validation pictures), and every edge a pixel off costs the renders' SSIM along the whole outline.
This pass moves every vertex of every part by one displacement field ``d(x, y)`` over the trusted
view's image plane (a ``grid x grid`` bilinear lattice of 2D offsets along the camera's right and up
axes), fitted so that the union of the parts, rendered antialiased at ``resolution``, covers the
view's silhouette:

    min_D  sum_pixels (M_hat(D) - M)^2  +  smoothness * sum_edges ||D_i - D_j||^2 / spacing^2

with each offset bounded by ``max_shift_px`` (a ``tanh``). Depth is untouched and points at the same
``(x, y)`` move alike, so the layers keep their order (nothing inner is pushed through an outer
layer), and the view's silhouette says nothing about depth anyway.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from stdgen.render import shade
from stdgen.render.antialias import antialias, antialias_topology
from stdgen.render.camera import Cameras
from stdgen.render.rasterize import rasterize
from stdgen.structures.mesh import Mesh, merge_meshes
from stdgen.structures.semantics import Part
from stdgen.utils.config import ConfigMixin, check_range


@dataclass
class SilhouetteWarpConfig(ConfigMixin):
    """Settings of :func:`warp_to_silhouette` (``view=None``: the pass is off)."""

    #: Index of the trusted view among the refinement views (``stdgen generate``: the front, the
    #: picture itself); None: no warp.
    view: int | None = None
    #: Side of the square render compared with the view's silhouette (the silhouette is area-resized
    #: to it); the picture's own side is the natural choice.
    resolution: int = 512
    #: Control points per side of the displacement lattice over the view's frame.
    grid: int = 64
    #: Adam steps.
    steps: int = 40
    #: Adam step size, in pixels of ``resolution``.
    lr: float = 0.5
    #: Weight of the lattice's first-difference penalty (per pixel^2 of offset difference between
    #: neighbouring control points, against the mask term's sum over pixels).
    smoothness: float = 20.0
    #: Largest offset, in pixels of ``resolution``: the pass corrects, it does not redraw.
    max_shift_px: float = 6.0
    #: Pixels of margin around the figure in the rendered window.
    margin_px: int = 16

    def __post_init__(self) -> None:
        check_range(self, "view", 0, 1000, integer=True, optional=True)
        check_range(self, "resolution", 16, 8192, integer=True)
        check_range(self, "grid", 2, 1024, integer=True)
        check_range(self, "steps", 0, 10000, integer=True)
        check_range(self, "lr", 0, None, lo_open=True)
        check_range(self, "smoothness", 0, None)
        check_range(self, "max_shift_px", 0, None, lo_open=True)
        check_range(self, "margin_px", 0, 1000, integer=True)


@dataclass
class WarpResult:
    """``parts`` the moved meshes (same topology); ``offsets`` (N_total,) each vertex's shift in pixels of
    ``resolution``; ``iou_before`` / ``iou_after`` the view's silhouette IoU (coverage > 0.5) at
    ``resolution``; ``seconds``."""

    parts: dict[Part, Mesh]
    offsets: np.ndarray
    iou_before: float
    iou_after: float
    seconds: float


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a > 0.5, b > 0.5
    union = (a | b).sum().item()
    return float((a & b).sum().item() / union) if union else 1.0


def warp_displacement(lattice: torch.Tensor, ndc: torch.Tensor) -> torch.Tensor:
    """The lattice's offsets at points: ``lattice`` (2, G, G) (row index follows NDC y, column NDC x,
    both from -1 to 1 at the outer control points), ``ndc`` (N, 2) -> (N, 2), bilinear, constant
    beyond the frame."""
    grid = ndc.reshape(1, 1, -1, 2).to(lattice.dtype)
    out = F.grid_sample(lattice[None], grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out[0, :, 0].T


def warp_to_silhouette(parts: Mapping[Part, Mesh], camera: Cameras, silhouette: torch.Tensor | np.ndarray,
                       config: SilhouetteWarpConfig | None = None, *, device="cpu") -> WarpResult:
    """Move ``parts`` in ``camera``'s image plane so that their union's outline meets ``silhouette``.

    Args:
        parts: ``{Part: Mesh}`` the finished parts (empty meshes pass through).
        camera: one orthographic camera (a :class:`Cameras` of length 1).
        silhouette: ``(H, W)`` coverage in [0, 1] of the view (any side; area-resized to
            ``config.resolution``).

    Returns a :class:`WarpResult`; the meshes keep their faces, labels and other fields, only their
    vertices move (when ``config.steps`` is 0, or nothing is to be drawn, they are returned as given).
    """
    from stdgen.refine.targets import crop_targets, make_targets

    cfg = config or SilhouetteWarpConfig()
    t0 = time.perf_counter()
    dev = torch.device(device)
    if len(camera) != 1:
        raise ValueError(f"warp_to_silhouette: expected one camera, got {len(camera)}")
    if not bool(camera.orthographic.all()):
        raise ValueError("warp_to_silhouette: the camera must be orthographic")
    sil = torch.as_tensor(np.asarray(silhouette) if not isinstance(silhouette, torch.Tensor) else silhouette)
    if sil.dim() != 2:
        raise ValueError(f"warp_to_silhouette: silhouette must be (H, W), got {tuple(sil.shape)}")
    keys = [p for p, m in parts.items() if m is not None and not m.is_empty]
    out = dict(parts)
    if not keys:
        return WarpResult(out, np.zeros(0, np.float32), 1.0, 1.0, time.perf_counter() - t0)
    counts = [parts[p].num_vertices for p in keys]
    union = merge_meshes([Mesh(parts[p].vertices, parts[p].faces) for p in keys])  # geometry only
    v0 = torch.as_tensor(union.vertices, dtype=torch.float32, device=dev)
    tri = torch.as_tensor(union.faces, dtype=torch.long, device=dev)
    cam = camera.to(dev)
    r = cfg.resolution
    zeros = torch.zeros(1, *sil.shape, 3)
    targets = make_targets(cam, sil.float()[None], zeros, resolution=r, device=dev)
    targets = crop_targets(targets, v0, cfg.margin_px)
    target = targets.mask  # (1, h, w, 1)
    if not bool((target > 0.5).any()):  # nothing to meet: an empty silhouette says nothing about the outline
        return WarpResult(out, np.zeros(len(v0), np.float32), 0.0, 0.0, time.perf_counter() - t0)
    rcam = targets.cameras
    res = tuple(target.shape[1:3])
    pixel = targets.pixel  # world units per pixel of the full r x r frame
    topology = antialias_topology(tri)
    # The camera's right and up axes in world space: the offsets move vertices along them.
    axes = cam.world_to_cam[0, :2, :3].float()  # (2, 3)
    with torch.no_grad():
        c = cam.clip(v0)[0]
        ndc = (c[:, :2] / c[:, 3:4]).clamp(-1.5, 1.5)

    def coverage(x: torch.Tensor) -> torch.Tensor:
        clip = rcam.clip(x)
        rast = rasterize(clip, tri, res)
        return antialias(shade.mask(rast), rast, clip, tri, topology)

    raw = torch.zeros(2, cfg.grid, cfg.grid, device=dev, requires_grad=True)
    opt = torch.optim.Adam([raw], lr=cfg.lr)
    spacing = (r - 1) / (cfg.grid - 1)  # pixels between control points
    lam = cfg.smoothness / spacing ** 2

    def bounded(raw_lattice: torch.Tensor) -> torch.Tensor:
        return cfg.max_shift_px * torch.tanh(raw_lattice / cfg.max_shift_px)

    def moved(lattice: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = warp_displacement(lattice, ndc)  # (N, 2) pixels
        return v0 + (d * pixel) @ axes, d

    with torch.no_grad():
        iou_before = _iou(coverage(v0), target)
    for _ in range(cfg.steps):
        opt.zero_grad(set_to_none=True)
        lattice = bounded(raw)
        x, _ = moved(lattice)
        err = ((coverage(x) - target) ** 2).sum()
        smooth = ((lattice[:, 1:] - lattice[:, :-1]) ** 2).sum() + ((lattice[:, :, 1:] - lattice[:, :, :-1]) ** 2).sum()
        (err + lam * smooth).backward()
        opt.step()
    with torch.no_grad():
        x, d = moved(bounded(raw))
        iou_after = _iou(coverage(x), target)
    if iou_after < iou_before:  # never leave the outline worse than refinement did
        x, d = v0, torch.zeros_like(d)
        iou_after = iou_before
    xs = x.detach().cpu().numpy()
    base = 0
    for p, n in zip(keys, counts, strict=True):
        out[p] = parts[p].replace(vertices=xs[base:base + n].astype(parts[p].vertices.dtype))
        base += n
    return WarpResult(out, d.norm(dim=1).detach().cpu().numpy(), iou_before, iou_after, time.perf_counter() - t0)
