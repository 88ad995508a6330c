"""Refinement losses (the paper's Eq. 12 and 13) and light regularisers.

    L_r = w_mask * sum_k a_k mean (M_hat_k - M_k)^2
        + w_normal * sum_k b_k mean M_k (x) ||N_hat_k - N_k||^2
        + w_col * L_col
        + w_part_mask * sum_k a_k mean (P_hat_k - P_k)^2 + w_part_normal * sum_k b_k mean P_k (x) ||N_hat_k - N_k||^2
        + w_laplacian * L_lap

    L_col = (1 / n) sum_i max((v_j - v_i) . n_j, 0)^3        (Eq. 13)

The paper's weights are the defaults: w_mask = 1, w_normal = 1, w_col = 100; for hair, the coarse
hair mask P adds a mask term of weight 10 and a normal term of weight 1. Sums run over views and
means over pixels; ``a_k`` / ``b_k`` are optional per-view weights of the silhouette / normal terms
(``StageConfig.mask_view_weights`` / ``normal_view_weights``; the paper's plain sum: all 1).
Normal maps are compared as images, in the encoding ``(n + 1) / 2`` the maps are stored in (zero
off the mask), as the paper compares rendered to generated normal *maps*.

Eq. 13 is evaluated in the paper's normalised frame: distances are divided by ``scale`` (the
framing half-size, about half the character's height), so that the cube and the weight 100 mean
what they meant there (the paper's characters span about [-1, 1]).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree

from stdgen.geometry.nearest import NearestPoints
from stdgen.structures.mesh import vertex_normals
from stdgen.utils.config import ConfigMixin, check_range


@dataclass
class LossWeights(ConfigMixin):
    """Weights of the refinement loss terms (defaults: the paper's)."""

    #: Silhouette mask term (Eq. 12).
    mask: float = 1.0
    #: Masked normal-map term (Eq. 12).
    normal: float = 1.0
    #: Collision term (Eq. 13) against the fixed inner layers.
    collision: float = 100.0
    #: Extra terms on the optimised part's own coarse mask (the paper: hair mask 10, hair normal 1).
    part_mask: float = 0.0
    part_normal: float = 0.0
    #: Uniform-Laplacian regulariser on the optimised vertices (relative to their edge length).
    laplacian: float = 0.0

    def __post_init__(self) -> None:
        for name in ("mask", "normal", "collision", "part_mask", "part_normal", "laplacian"):
            check_range(self, name, 0, None)


def _per_view(err: torch.Tensor, view_weights: torch.Tensor | None) -> torch.Tensor:
    """``sum_k w_k sum_pixels err_k`` of a ``(V, ...)`` error (``w`` all 1 when ``view_weights`` is None)."""
    if view_weights is None:
        return err.sum()
    return (err.reshape(err.shape[0], -1).sum(1) * view_weights.to(err)).sum()


def mask_loss(pred: torch.Tensor, target: torch.Tensor, pixels: int | None = None,
              view_weights: torch.Tensor | None = None) -> torch.Tensor:
    """``sum_k w_k mean (pred_k - target_k)^2`` over ``(V, H, W, 1)`` masks.

    ``pixels``: the per-view pixel count the mean divides by (default H * W; pass the full frame's
    when the images are crops, so a crop does not change the loss). ``view_weights`` (V,): ``w_k``
    (default: all 1)."""
    return _per_view((pred - target).square(), view_weights) / (pixels or pred[0, ..., 0].numel())


def masked_normal_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor,
                       pixels: int | None = None, view_weights: torch.Tensor | None = None) -> torch.Tensor:
    """``sum_k w_k mean weight_k ||pred_k - target_k||^2`` over ``(V, H, W, 3)`` encoded normal maps and
    a ``(V, H, W, 1)`` weight (the target mask); ``pixels`` and ``view_weights`` as in :func:`mask_loss`."""
    return _per_view(weight * (pred - target).square(), view_weights) / (pixels or pred[0, ..., 0].numel())


def collision_loss(outer: torch.Tensor, inner_vertices, inner_normals, tree: NearestPoints | None = None,
                   scale: float = 1.0, margin: float = 0.0) -> torch.Tensor:
    """Eq. 13: ``mean_i max(((v_j - v_i) . n_j + margin) / scale, 0)^3``.

    Args:
        outer: (n, 3) outer-layer vertices (differentiable).
        inner_vertices: (m, 3) fixed inner-layer vertices; ``inner_normals`` (m, 3) their unit normals
            (tensors on ``outer``'s device, or arrays).
        tree: a :class:`~stdgen.geometry.nearest.NearestPoints` over ``inner_vertices``; built here if
            omitted: build it once per layer.
        scale: length unit of the loss (the frame half-size); ``margin`` (metres) an optional gap.

    Nearest neighbours are found without gradient (the paper's v_j is a fixed lookup).
    """
    if outer.shape[0] == 0 or len(inner_vertices) == 0:
        return outer.sum() * 0
    tree = tree if tree is not None else NearestPoints(inner_vertices, outer.device)
    idx = tree.query(outer)[1][:, 0]
    iv = torch.as_tensor(inner_vertices, dtype=outer.dtype, device=outer.device)
    inn = torch.as_tensor(inner_normals, dtype=outer.dtype, device=outer.device)
    vj, nj = iv[idx], inn[idx]
    depth = (((vj - outer) * nj).sum(-1) + margin) / scale
    return depth.clamp(min=0).pow(3).mean()


def laplacian_loss(vertices: torch.Tensor, edges: torch.Tensor, edge_length: torch.Tensor) -> torch.Tensor:
    """Mean squared uniform-Laplacian offset ``|v - mean(neighbours)|^2 / l_v^2`` (scale-free).

    ``edges`` (E, 2) long, ``edge_length`` (N,) the vertices' target edge lengths.
    """
    n = vertices.shape[0]
    a, b = edges[:, 0], edges[:, 1]
    acc = torch.zeros_like(vertices).index_add(0, a, vertices[b]).index_add(0, b, vertices[a])
    deg = torch.zeros(n, device=vertices.device, dtype=vertices.dtype)
    deg = deg.index_add(0, a, torch.ones_like(a, dtype=vertices.dtype)).index_add(
        0, b, torch.ones_like(b, dtype=vertices.dtype))
    lap = acc / deg.clamp(min=1)[:, None] - vertices
    return (lap.square().sum(1) / edge_length.square().clamp(min=1e-12)).mean()


# -- penetration (for metrics and post-dilation) -------------------------------------------------------
def surface_samples(vertices: np.ndarray, faces: np.ndarray, spacing: float,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Points on a mesh's surface about ``spacing`` apart, with their face normals: (P, 3), (P, 3).

    Every vertex is included, plus random points on each face in proportion to its area.
    """
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    e1, e2 = v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]
    cross = np.cross(e1, e2)
    area2 = np.linalg.norm(cross, axis=1)
    fn = cross / np.maximum(area2, 1e-30)[:, None]
    rng = np.random.default_rng(seed)
    counts = rng.poisson(area2 * 0.5 / max(spacing, 1e-9) ** 2)
    fi = np.repeat(np.arange(len(f)), counts)
    r1, r2 = rng.random(len(fi)), rng.random(len(fi))
    flip = r1 + r2 > 1
    r1[flip], r2[flip] = 1 - r1[flip], 1 - r2[flip]
    pts = v[f[fi, 0]] + r1[:, None] * e1[fi] + r2[:, None] * e2[fi]
    vn = vertex_normals(v, f)
    used = np.unique(f)
    return np.concatenate([v[used], pts]), np.concatenate([vn[used], fn[fi]])


def penetration_depth(points: np.ndarray, inner_vertices: np.ndarray, inner_faces: np.ndarray,
                      spacing: float | None = None) -> np.ndarray:
    """(P,) how far each point lies *inside* a closed inner surface (0 outside), in metres.

    The inner surface is sampled densely (``spacing``, default a fifth of its mean edge length);
    a point's depth is ``max((s - p) . n_s, 0)`` for its nearest sample ``s`` with normal ``n_s``:
    Eq. 13's test against a dense sampling, accurate to about ``spacing^2 * curvature``.
    """
    points = np.asarray(points, np.float64)
    if len(points) == 0 or len(inner_faces) == 0:
        return np.zeros(len(points))
    iv, jf = np.asarray(inner_vertices, np.float64), np.asarray(inner_faces, np.int64)
    if spacing is None:
        spacing = 0.2 * float(np.linalg.norm(iv[jf[:, 0]] - iv[jf[:, 1]], axis=1).mean())
    samples, normals = surface_samples(iv, jf, spacing)
    _, idx = cKDTree(samples).query(points, k=1)
    return np.maximum(((samples[idx] - points) * normals[idx]).sum(1), 0.0)
