"""What each refinement stage is compared with: masks and normal maps in the generation views.

A stage optimises one part (body, clothes or hair) rendered together with the fixed inner layers,
so its targets are the renders of the matching layer set (``body``, ``body_clothes``, ``full``):
the silhouette mask, the world-space normal map, and optionally the coarse mask of the part alone
(for hair, the paper's extra hair mask). In the full pipeline these come from the multi-view
diffusion model and the S-LRM's semantic renders; in a dataset folder they are the ground-truth
renders of the six generation views.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from stdgen.errors import InputError
from stdgen.render.camera import Cameras
from stdgen.structures.semantics import Part

#: The layer set a stage renders and compares with, per optimised part.
STAGE_LAYER_SET: dict[Part, str] = {Part.BODY: "body", Part.CLOTHES: "body_clothes", Part.HAIR: "full"}


@dataclass
class StageTargets:
    """Targets of one stage in V views at (H, W); all tensors on one device.

    ``mask`` (V, H, W, 1) silhouette of the layer set in [0, 1]; ``normal`` (V, H, W, 3) unit world
    normals (0 off the mask); ``part_mask`` (V, H, W, 1) coverage of the optimised part alone (or
    None); ``rgb`` (V, H, W, 3) colours for texturing (or None); ``cameras`` the V orthographic
    cameras; ``scale`` the views' vertical half-size in metres (the framing, the paper's unit of
    length) and ``pixel`` the size of a pixel in metres (both kept when the images are cropped).
    """

    cameras: Cameras
    mask: torch.Tensor
    normal: torch.Tensor
    part_mask: torch.Tensor | None = None
    rgb: torch.Tensor | None = None
    scale: float = 1.0
    pixel: float = 1.0
    #: Pixels per view of the uncropped frame (losses divide by it, so crops do not reweight them).
    frame_pixels: int | None = None

    @property
    def resolution(self) -> tuple[int, int]:
        return int(self.mask.shape[1]), int(self.mask.shape[2])

    @property
    def encoded_normal(self) -> torch.Tensor:
        """(V, H, W, 3) the normal map as stored: ``(n + 1) / 2`` times the mask."""
        return (self.normal * 0.5 + 0.5) * self.mask


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Area-average (V, H, W, 1) coverage to ``size``."""
    if tuple(mask.shape[1:3]) == tuple(size):
        return mask
    return F.interpolate(mask.permute(0, 3, 1, 2), size=size, mode="area").permute(0, 2, 3, 1)


def resize_normals(normal: torch.Tensor, mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Mask-weighted area average of (V, H, W, 3) unit normals, renormalised; 0 where nothing is covered."""
    if tuple(normal.shape[1:3]) == tuple(size):
        return normal
    num = F.interpolate((normal * mask).permute(0, 3, 1, 2), size=size, mode="area").permute(0, 2, 3, 1)
    return F.normalize(num, dim=-1, eps=1e-8)


def resize_rgb(rgb: torch.Tensor, mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Mask-weighted area average of (V, H, W, 3) colours (straight alpha)."""
    if tuple(rgb.shape[1:3]) == tuple(size):
        return rgb
    num = F.interpolate((rgb * mask).permute(0, 3, 1, 2), size=size, mode="area")
    den = F.interpolate(mask.permute(0, 3, 1, 2), size=size, mode="area")
    return (num / den.clamp(min=1e-6)).permute(0, 2, 3, 1).clamp(0, 1)


def make_targets(cameras: Cameras, mask: np.ndarray | torch.Tensor, normal: np.ndarray | torch.Tensor, *,
                 part_mask=None, rgb=None, resolution: int | None = None, device="cpu") -> StageTargets:
    """Targets from arrays: ``mask`` (V, H, W) or (V, H, W, 1) in [0, 1], ``normal`` (V, H, W, 3) unit
    world normals, ``part_mask`` like ``mask``, ``rgb`` (V, H, W, 3) in [0, 1] or uint8; resampled to
    ``resolution`` (square) by area averaging when given."""

    def t(x):
        x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        x = x.float().to(device)
        return x[..., None] if x.dim() == 3 else x

    m, n = t(mask), t(normal)
    if m.shape[:3] != n.shape[:3] or n.shape[-1] != 3:
        raise ValueError(f"mask {tuple(m.shape)} and normal {tuple(n.shape)} must be (V, H, W[, 1]) and (V, H, W, 3)")
    if len(cameras) != m.shape[0]:
        raise ValueError(f"{len(cameras)} cameras for {m.shape[0]} target views")
    pm = None if part_mask is None else t(part_mask)
    col = None if rgb is None else t(rgb)[..., :3]
    if resolution is not None:
        size = (int(resolution), int(resolution))
        n = resize_normals(n, m, size)
        col = None if col is None else resize_rgb(col, m, size)
        m = resize_mask(m, size)
        pm = None if pm is None else resize_mask(pm, size)
    n = n * (m > 0)
    if not bool(cameras.orthographic.all()):
        raise ValueError("refinement targets need orthographic views (the generation views are)")
    scale = float(1.0 / cameras.proj[0, 1, 1].abs())
    return StageTargets(cameras.to(device), m, n, pm, col, scale=scale, pixel=2.0 * scale / m.shape[1],
                        frame_pixels=int(m.shape[1] * m.shape[2]))


def crop_cameras(cameras: Cameras, boxes: np.ndarray, full: tuple[int, int]) -> Cameras:
    """Cameras that render only the pixel windows ``boxes`` (V, 4) ``[row0, col0, rows, cols]`` (one
    ``rows x cols`` size for all) of images of size ``full`` (H, W): pixel (i, j) of the crop is
    pixel (row0 + i, col0 + j) of the full image (same centres, same depth)."""
    h, w = full
    dev = cameras.device
    b = torch.as_tensor(np.asarray(boxes, np.float64), dtype=torch.float32, device=dev)
    r0, c0, rows, cols = b.unbind(1)
    x0, x1 = 2 * c0 / w - 1, 2 * (c0 + cols) / w - 1
    y0, y1 = 1 - 2 * r0 / h, 1 - 2 * (r0 + rows) / h  # top, bottom
    a = torch.zeros(len(cameras), 4, 4, device=dev)
    a[:, 0, 0] = 2 / (x1 - x0)
    a[:, 0, 3] = -(x1 + x0) / (x1 - x0)
    a[:, 1, 1] = 2 / (y0 - y1)
    a[:, 1, 3] = -(y0 + y1) / (y0 - y1)
    a[:, 2, 2] = 1
    a[:, 3, 3] = 1
    return Cameras(cameras.world_to_cam, a @ cameras.proj, cameras.orthographic, cameras.names)


def crop_targets(targets: StageTargets, points: torch.Tensor | np.ndarray | None = None,
                 margin_px: int = 8) -> StageTargets:
    """Crop every view to one window size holding the target masks and the projections of ``points``
    (N, 3) (e.g. the starting mesh), plus ``margin_px``: renders of the cropped views cost less and
    see everything the loss can see."""
    v, h, w, _ = targets.mask.shape
    covered = (targets.mask[..., 0] > 0).cpu().numpy()
    if targets.part_mask is not None:
        covered |= (targets.part_mask[..., 0] > 0).cpu().numpy()
    lo = np.zeros((v, 2), np.int64)
    hi = np.zeros((v, 2), np.int64)
    for i in range(v):
        rows, cols = np.nonzero(covered[i])
        rr = [rows.min(), rows.max()] if len(rows) else [h // 2, h // 2]
        cc = [cols.min(), cols.max()] if len(cols) else [w // 2, w // 2]
        lo[i], hi[i] = (rr[0], cc[0]), (rr[1], cc[1])
    if points is not None and len(points):
        pts = torch.as_tensor(np.asarray(points) if not isinstance(points, torch.Tensor) else points,
                              dtype=torch.float32, device=targets.cameras.device)
        pix, _ = targets.cameras.project(pts, (h, w))  # (V, N, 2) col, row
        pix = pix.cpu().numpy()
        lo = np.minimum(lo, np.stack([np.floor(pix[..., 1].min(1)), np.floor(pix[..., 0].min(1))], 1).astype(np.int64))
        hi = np.maximum(hi, np.stack([np.ceil(pix[..., 1].max(1)), np.ceil(pix[..., 0].max(1))], 1).astype(np.int64))
    lo = np.clip(lo - margin_px, 0, [h - 1, w - 1])
    hi = np.clip(hi + margin_px, 0, [h - 1, w - 1])
    size = (hi - lo + 1).max(0)
    size = np.minimum(size, [h, w])
    # Shift windows that would run off the image back inside it.
    lo = np.clip(lo, 0, [h, w] - size)
    boxes = np.concatenate([lo, np.broadcast_to(size, lo.shape)], 1)

    def cut(x):
        if x is None:
            return None
        return torch.stack([x[i, lo[i, 0]:lo[i, 0] + size[0], lo[i, 1]:lo[i, 1] + size[1]] for i in range(v)])

    cams = crop_cameras(targets.cameras, boxes, (h, w))
    return StageTargets(cams, cut(targets.mask), cut(targets.normal), cut(targets.part_mask), cut(targets.rgb),
                        scale=targets.scale, pixel=targets.pixel, frame_pixels=targets.frame_pixels or h * w)


def targets_from_renders(renders, part: Part, *, resolution: int | None = None, device="cpu",
                         with_part_mask: bool = True, with_rgb: bool = False) -> StageTargets:
    """Stage targets of ``part`` from a dataset folder's six generation views.

    ``renders`` is a :class:`~stdgen.io.dataset.CharacterRenders` holding the layer set
    :data:`STAGE_LAYER_SET` ``[part]`` with maps rgb, normal (and sem for the part mask).
    """
    layer = STAGE_LAYER_SET[Part.parse(part)]
    if layer not in renders.layers:
        raise InputError(f"the character folder has no {layer!r} renders, needed to refine the {Part(part).key}")
    r = renders.layers[layer]
    if r.rgb is None or r.normal is None:
        raise InputError(f"the {layer!r} renders lack the rgb or normal map")
    try:
        idx = renders.view_index("gen")
    except KeyError as exc:
        raise InputError(f"the character folder lacks a generation view ({exc})") from None
    cams = renders.cameras(idx)
    mask = r.rgb[idx, ..., 3].astype(np.float32) / 255.0
    part_mask = None
    if with_part_mask and r.sem is not None:
        part_mask = (r.sem[idx] == int(part)).astype(np.float32) * mask
    rgb = r.rgb[idx, ..., :3] if with_rgb else None
    return make_targets(cams, mask, r.normal[idx], part_mask=part_mask, rgb=rgb, resolution=resolution,
                        device=device)
