"""Texturing refined parts: a UV atlas per part (xatlas), colours back-projected from the views.

1. :func:`uv_atlas`: xatlas charts and packs the part; the mesh keeps its vertices (watertight)
   and gets per-corner UVs (``Mesh.uv_faces``), in the glTF convention (v down).
2. :func:`texel_surface`: the atlas is rasterised in UV space with the project's rasteriser, giving
   each covered texel its 3D point and normal.
3. :func:`back_project`: every texel is projected into each view; where the view sees it (depth
   test against the scene, inner and outer layers included, so a body texel under a sleeve gets
   nothing from that view) its colour is sampled from the image, weighted by ``cos^power`` of the
   angle between its normal and the view direction (grazing views smear); views are averaged.
4. :func:`dilate_fill`: the gutter around each chart (and unseen texels at its edge) takes the
   colour of the chart's own nearest texels, a few texels deep, so bilinear lookups at chart edges
   read that chart; then :func:`pull_push_fill`: what is still empty (texels no view saw) is filled
   by pull-push diffusion over the atlas (Gortler et al. 1996): average down a pyramid of weighted
   colours, then fill holes from coarser levels.

:func:`bake_vertex_colors` is the fallback: the same weighted back-projection at the vertices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from stdgen.refine.atlas import uv_atlas
from stdgen.render import interpolate, rasterize, shade
from stdgen.render.camera import Cameras
from stdgen.structures.mesh import Mesh
from stdgen.utils.config import ConfigMixin, check_choice, check_range


@dataclass
class TextureConfig(ConfigMixin):
    """Settings of the texture bake."""

    #: Atlas side in texels.
    size: int = 1024
    #: Gutter between charts, in texels.
    padding: int = 4
    #: A view's weight is cos(angle) ** power.
    power: float = 2.0
    #: Depth-test tolerance in pixels of the view images.
    depth_tolerance_px: float = 1.5
    #: Image alpha below which a pixel is background and not sampled.
    min_alpha: float = 0.5
    #: ``"texture"`` (UV atlas) or ``"vertex"`` (vertex colours, the fallback).
    mode: str = "texture"
    #: No atlas chart covers more than ``1 / atlas_charts_hint`` of the part's surface (see
    #: :func:`uv_atlas`: smaller charts are much faster for xatlas to grow).
    atlas_charts_hint: int = 256
    #: ``stdgen refine``: chart each part in a helper process while the next part is refined.
    atlas_in_background: bool = True
    #: Helper processes charting at once when ``atlas_in_background`` (each part goes to the next in
    #: turn). ``stdgen generate`` on a GPU uses one per part: there the charting outlasts the refinement.
    atlas_processes: int = 1
    #: One extra weight per view, multiplying its ``cos ** power`` (None: all 1). ``stdgen generate``
    #: weights the front view, which is the user's own picture, above the generated ones.
    view_weights: tuple[float, ...] | None = None
    #: One exponent per view in place of ``power`` (None: ``power`` for all; ``PipelineConfig.
    #: front_texture_power`` sets the picture's; a steeper one was measured and not kept, session p).
    view_powers: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        for name, what in (("view_weights", "weights"), ("view_powers", "exponents")):
            values = getattr(self, name)
            if values is not None:
                values = tuple(float(x) for x in values)
                if not values or not all(x >= 0 and np.isfinite(x) for x in values):
                    raise ValueError(f"TextureConfig.{name}: expected finite {what} >= 0, got {values}")
                setattr(self, name, values)
        check_range(self, "size", 16, 8192, integer=True)
        check_range(self, "padding", 0, 256, integer=True)
        check_range(self, "power", 0, None)
        check_range(self, "depth_tolerance_px", 0, None)
        check_range(self, "min_alpha", 0, 1)
        check_choice(self, "mode", ("texture", "vertex"))
        check_range(self, "atlas_charts_hint", 1, 100_000, integer=True)
        check_choice(self, "atlas_in_background", (True, False))
        check_range(self, "atlas_processes", 1, 64, integer=True)


def texel_surface(vertices: torch.Tensor, faces: torch.Tensor, uvs: torch.Tensor, uv_faces: torch.Tensor,
                  size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rasterise the atlas: per texel ``(point (S, S, 3), normal (S, S, 3), covered (S, S) bool)``.

    Texel (i, j) has its centre at ``uv = ((j + 0.5) / S, (i + 0.5) / S)`` (row 0 at v = 0).
    """
    clip = torch.stack([uvs[:, 0] * 2 - 1, 1 - uvs[:, 1] * 2, torch.zeros_like(uvs[:, 0]),
                        torch.ones_like(uvs[:, 0])], -1)[None]
    rast = rasterize(clip.float(), uv_faces, (size, size))
    point = interpolate(vertices.float(), rast, faces)[0]
    normal = F.normalize(interpolate(shade.vertex_normals(vertices.float(), faces), rast, faces)[0], dim=-1,
                         eps=1e-12)
    return point, normal, rast[0, ..., 3] > 0


def back_project(points: torch.Tensor, normals: torch.Tensor, images: torch.Tensor, cameras: Cameras,
                 scene_vertices: torch.Tensor, scene_faces: torch.Tensor, *, power: float | torch.Tensor = 2.0,
                 depth_tolerance: float, min_alpha: float = 0.5,
                 view_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean colour of ``points`` (P, 3) with ``normals`` (P, 3) over the views.

    ``images`` (V, H, W, 4) straight-alpha RGBA in [0, 1]; the scene (``scene_vertices`` (N, 3),
    ``scene_faces`` (F, 3)) gives each view's depth buffer for the visibility test;
    ``power`` the exponent of each view's cosine weight, one for all or ``(V,)``;
    ``view_weights`` (V,) optional extra weights per view. Returns ``(colour (P, 3), weight (P,))``
    (weight 0: no view saw the point).
    """
    v, h, w, _ = images.shape
    with torch.no_grad():
        clip = cameras.clip(scene_vertices.float())
        rast = rasterize(clip, scene_faces, (h, w))
        depth = shade.linear_depth(scene_vertices.float(), scene_faces, rast, cameras)  # (V, H, W, 1)
        depth = torch.where(rast[..., 3:4] > 0, depth, torch.full_like(depth, float("inf")))
        pix, pdepth = cameras.project(points.float(), (h, w))  # (V, P, 2), (V, P)
        grid = torch.stack([pix[..., 0] / w * 2 - 1, pix[..., 1] / h * 2 - 1], -1)[:, :, None, :]
        # Nearest-texel depth (a bilinear blend across a silhouette would mix near and far).
        buf = F.grid_sample(depth.permute(0, 3, 1, 2), grid, mode="nearest", align_corners=False)[:, 0, :, 0]
        premult = torch.cat([images[..., :3] * images[..., 3:4], images[..., 3:4]], -1).permute(0, 3, 1, 2)
        samp = F.grid_sample(premult, grid, mode="bilinear", align_corners=False)[..., 0].permute(0, 2, 1)
        alpha = samp[..., 3]
        colour = samp[..., :3] / alpha.clamp(min=1e-6)[..., None]
        to_cam = -cameras.forward[:, None, :]
        cos = (normals[None].float() * to_cam).sum(-1)
        inside = (grid[..., 0, 0].abs() < 1) & (grid[..., 0, 1].abs() < 1)
        seen = inside & (pdepth <= buf + depth_tolerance) & (alpha >= min_alpha) & (cos > 0)
        exponent = power.to(cos)[:, None] if torch.is_tensor(power) else power
        wgt = seen.float() * cos.clamp(min=0).pow(exponent)
        if view_weights is not None:
            wgt = wgt * view_weights.to(wgt)[:, None]
        total = wgt.sum(0)
        out = (wgt[..., None] * colour).sum(0) / total.clamp(min=1e-12)[:, None]
    return out.clamp(0, 1), total


def dilate_fill(color: np.ndarray, weight: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Grow the known texels of ``color`` (S, S, C) (``weight`` (S, S) > 0) outwards ``steps`` times:
    each empty texel next to known ones (8-neighbourhood) takes their mean. Returns the colours and
    the new known mask (S, S) bool.

    Charts are packed with a gutter between them, so each gutter texel takes the colour of the
    nearest chart, its own for the texels a bilinear lookup at a chart's edge reads. (Pull-push alone
    fills the gutter from a coarser level that mixes neighbouring charts, which sit side by side in
    the atlas but nowhere near each other on the surface: every small chart got a rim of foreign
    colour.)
    """
    col = np.where((np.asarray(weight) > 0)[..., None], np.asarray(color, np.float32), 0).astype(np.float32)
    known = np.asarray(weight) > 0
    h, w = known.shape
    for _ in range(steps):
        k = np.pad(known, 1).astype(np.float32)
        c = np.pad(col * known[..., None], ((1, 1), (1, 1), (0, 0)))
        total = np.zeros_like(col)
        count = np.zeros((h, w), np.float32)
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                if dy == 1 and dx == 1:
                    continue
                total += c[dy:dy + h, dx:dx + w]
                count += k[dy:dy + h, dx:dx + w]
        grow = ~known & (count > 0)
        if not grow.any():
            break
        col[grow] = total[grow] / count[grow][:, None]
        known = known | grow
    return col, known


def pull_push_fill(color: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Fill texels of ``color`` (S, S, C) where ``weight`` (S, S) is 0 by pull-push diffusion.

    Pull: a pyramid of weight-averaged 2x2 blocks; push: from the coarsest level down, each empty
    texel takes the (bilinearly upsampled) colour of the level above. Known texels are unchanged.
    """
    c = torch.as_tensor(np.asarray(color, np.float64)).permute(2, 0, 1)[None]
    wt = torch.as_tensor((np.asarray(weight) > 0).astype(np.float64))[None, None]
    if wt.sum() == 0:
        return np.asarray(color)
    levels = [(c * wt, wt)]
    while min(levels[-1][1].shape[-2:]) > 1:
        cw, ww = levels[-1]
        if cw.shape[-1] % 2 or cw.shape[-2] % 2:  # pad odd sizes so 2x2 pooling covers every texel
            cw = F.pad(cw, (0, cw.shape[-1] % 2, 0, cw.shape[-2] % 2))
            ww = F.pad(ww, (0, ww.shape[-1] % 2, 0, ww.shape[-2] % 2))
        levels.append((F.avg_pool2d(cw, 2) * 4, F.avg_pool2d(ww, 2) * 4))
    cw, ww = levels[-1]
    filled = cw / ww.clamp(min=1e-12)
    for cw, ww in reversed(levels[:-1]):
        up = F.interpolate(filled, size=cw.shape[-2:], mode="bilinear", align_corners=False)
        mean = cw / ww.clamp(min=1e-12)
        filled = torch.where(ww > 0, mean, up)
    out = filled[0].permute(1, 2, 0).numpy()
    known = np.asarray(weight) > 0
    out[known] = np.asarray(color, np.float64)[known]
    return out.astype(np.float32)


def texture_part(mesh: Mesh, images: torch.Tensor, cameras: Cameras, scene_vertices: np.ndarray,
                 scene_faces: np.ndarray, config: TextureConfig | None = None, device="cpu",
                 atlas: tuple[np.ndarray, np.ndarray] | None = None) -> Mesh:
    """``mesh`` with a baked texture (``uvs``, ``uv_faces``, ``texture``) or, in ``"vertex"`` mode,
    vertex ``colors``, from ``images`` (V, H, W, 4) seen by ``cameras`` over the scene
    ``scene_vertices`` / ``scene_faces`` (all layers visible in those images, ``mesh`` included).
    ``atlas``: ``(uvs, uv_faces)`` from :func:`uv_atlas` on this mesh, if already made."""
    cfg = config or TextureConfig()
    if mesh.is_empty:
        return mesh
    dev = torch.device(device)
    images = images.to(dev).float()
    h = images.shape[1]
    scale = float(1.0 / cameras.proj[0, 1, 1].abs()) if bool(cameras.orthographic.all()) else 1.0
    tol = cfg.depth_tolerance_px * 2.0 * scale / h
    v = torch.as_tensor(mesh.vertices, dtype=torch.float32, device=dev)
    f = torch.as_tensor(mesh.faces, dtype=torch.long, device=dev)
    sv = torch.as_tensor(np.asarray(scene_vertices), dtype=torch.float32, device=dev)
    sf = torch.as_tensor(np.asarray(scene_faces), dtype=torch.long, device=dev)
    cams = cameras.to(dev)

    def per_view(name: str, what: str) -> torch.Tensor | None:
        values = getattr(cfg, name)
        if values is None:
            return None
        if len(values) != images.shape[0]:
            raise ValueError(f"TextureConfig.{name}: {len(values)} {what} for {images.shape[0]} views")
        return torch.tensor(values, dtype=torch.float32, device=dev)

    vw = per_view("view_weights", "weights")
    power = per_view("view_powers", "exponents")
    power = cfg.power if power is None else power
    if cfg.mode == "vertex":
        col, wgt = back_project(v, shade.vertex_normals(v, f), images, cams, sv, sf, power=power,
                                depth_tolerance=tol, min_alpha=cfg.min_alpha, view_weights=vw)
        colors = _fill_vertex_colors(mesh, col.cpu().numpy(), wgt.cpu().numpy())
        return mesh.replace(colors=colors, uvs=None, uv_faces=None, texture=None)
    if cfg.mode != "texture":
        raise ValueError(f"texture mode: expected 'texture' or 'vertex', got {cfg.mode!r}")
    if atlas is None:
        atlas = uv_atlas(mesh.vertices, mesh.faces, cfg.size, cfg.padding, cfg.atlas_charts_hint)
    uvs, uv_faces = atlas
    if len(uv_faces) != len(mesh.faces):
        raise ValueError(f"texture_part: the atlas has {len(uv_faces)} faces, the mesh {len(mesh.faces)}")
    uv_t = torch.as_tensor(uvs, device=dev)
    uf_t = torch.as_tensor(uv_faces, dtype=torch.long, device=dev)
    point, normal, covered = texel_surface(v, f, uv_t, uf_t, cfg.size)
    sel = torch.nonzero(covered.reshape(-1)).squeeze(1)
    col, wgt = back_project(point.reshape(-1, 3)[sel], normal.reshape(-1, 3)[sel], images, cams, sv, sf,
                            power=power, depth_tolerance=tol, min_alpha=cfg.min_alpha, view_weights=vw)
    size = cfg.size
    color = np.zeros((size * size, 3), np.float32)
    weight = np.zeros(size * size, np.float32)
    color[sel.cpu().numpy()] = col.cpu().numpy()
    weight[sel.cpu().numpy()] = wgt.cpu().numpy()
    color, known = dilate_fill(color.reshape(size, size, 3), weight.reshape(size, size), cfg.padding + 2)
    filled = pull_push_fill(color, known)
    tex = (np.clip(filled, 0, 1) * 255 + 0.5).astype(np.uint8)
    return mesh.replace(uvs=uvs, uv_faces=uv_faces, texture=tex, colors=None)


def _fill_vertex_colors(mesh: Mesh, colors: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Unseen vertices take the mean of seen neighbours, spreading over the mesh until all are set."""
    col = colors.astype(np.float64).copy()
    known = weight > 0
    if not known.any():
        return np.full_like(colors, 0.8)
    f = mesh.faces.astype(np.int64)
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    e = np.concatenate([e, e[:, ::-1]])
    n = len(col)
    for _ in range(n):
        if known.all():
            break
        acc = np.zeros_like(col)
        cnt = np.zeros(n)
        src = known[e[:, 1]]
        np.add.at(acc, e[src, 0], col[e[src, 1]])
        np.add.at(cnt, e[src, 0], 1)
        new = (~known) & (cnt > 0)
        if not new.any():
            col[~known] = col[known].mean(0)
            break
        col[new] = acc[new] / cnt[new, None]
        known = known | new
    return col.astype(np.float32)
