"""Dilation: outer layers follow the motion of inner layers through a nearest-neighbour flow field.

The paper applies it before and after optimising each layer: for each outer-layer vertex, the
nearest vertices of the fixed inner layer are found with a k-d tree, and the vertex moves with
them by a weight that decays exponentially with distance, so that when an inner layer moves
outward (to resolve intersections, or because refinement grew it) the outer layers follow
smoothly and far points stay still.

Here (nearest points by :class:`~stdgen.geometry.nearest.NearestPoints`: the k-d tree on the
host, brute force on a GPU):

* :func:`flow_field` is that field. The displacement at a point ``p`` is the average of its k
  nearest sources' displacements, weighted ``exp(-d / sigma)`` ("exponential inverse distance"),
  times a falloff ``phi(d_min)`` that is 1 on the sources, decays like ``exp(-d / sigma)`` and is
  exactly 0 from ``cutoff`` on, so vertices beyond the cutoff never move.
* :func:`pre_dilate` (before optimising a layer) moves the layer with the displacement its inner
  layers went through during their own refinement (refined minus coarse position of each inner
  vertex, traced through remeshing).
* :func:`post_dilate` (after optimising a layer) pushes any vertex still inside an inner layer out
  along the inner normal, and spreads each push to the layer's nearby vertices with the same
  field, so the fix is smooth rather than a spike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from stdgen.geometry.nearest import NearestPoints
from stdgen.utils.config import ConfigMixin, check_range


@dataclass
class DilationConfig(ConfigMixin):
    """Settings of the dilation steps (lengths in metres)."""

    #: Decay length of the exponential weights.
    sigma: float = 0.03
    #: Beyond this distance from every source a point does not move at all.
    cutoff: float = 0.12
    #: Nearest sources averaged per point.
    neighbours: int = 8
    #: Post-dilation: target clearance outside the inner layer.
    margin: float = 0.001
    #: Post-dilation: rounds of push-and-spread (at least one runs).
    rounds: int = 4
    #: Post-dilation spreads pushes over this decay length (a few edge lengths).
    spread_sigma: float = 0.01
    #: Post-dilation tests vertices against samples of the inner surface this far apart, as a
    #: fraction of its mean edge length (depth error about (spacing / 2)^2 x curvature: microns).
    sample_spacing: float = 0.4

    def __post_init__(self) -> None:
        check_range(self, "sigma", 0, None, lo_open=True)
        check_range(self, "cutoff", 0, None, lo_open=True)
        check_range(self, "neighbours", 1, 1000, integer=True)
        check_range(self, "margin", 0, None)
        check_range(self, "rounds", 0, 100, integer=True)
        check_range(self, "spread_sigma", 0, None, lo_open=True)
        check_range(self, "sample_spacing", 0, None, lo_open=True)


def falloff(d: np.ndarray, sigma: float, cutoff: float) -> np.ndarray:
    """``phi(d)``: 1 at d = 0, exponential decay with length ``sigma``, exactly 0 for d >= cutoff
    (the exponential is shifted so the function is continuous at the cutoff)."""
    d = np.asarray(d, np.float64)
    tail = np.exp(-cutoff / sigma)
    phi = (np.exp(-d / sigma) - tail) / (1.0 - tail)
    return np.where(d < cutoff, np.clip(phi, 0.0, 1.0), 0.0)


def flow_field(sources: np.ndarray, displacements: np.ndarray, queries: np.ndarray, *, sigma: float,
               cutoff: float, neighbours: int = 8, tree: NearestPoints | None = None,
               device="cpu") -> np.ndarray:
    """Displacement (Q, 3) at ``queries`` (Q, 3) of a field given at ``sources`` (M, 3) with
    ``displacements`` (M, 3); zero at every query farther than ``cutoff`` from all sources.
    ``device``: where the nearest sources are searched when no ``tree`` is given (a GPU: brute force)."""
    queries = np.asarray(queries, np.float64)
    out = np.zeros_like(queries)
    if len(sources) == 0 or len(queries) == 0:
        return out
    k = int(min(neighbours, len(sources)))
    tree = tree if tree is not None else NearestPoints(np.asarray(sources, np.float64), device, workers=-1)
    d, idx = (t.cpu().numpy() for t in tree.query(torch.as_tensor(queries, device=tree.device), k, cutoff))
    valid = np.isfinite(d)
    w = np.where(valid, np.exp(-np.where(valid, d, 0.0) / sigma), 0.0)
    safe_idx = np.where(valid, idx, 0)
    disp = np.asarray(displacements, np.float64)[safe_idx]  # (Q, k, 3)
    wsum = w.sum(1)
    mean = (w[..., None] * disp).sum(1) / np.maximum(wsum, 1e-300)[:, None]
    dmin = np.where(valid.any(1), np.where(valid, d, np.inf).min(1), np.inf)
    scale = falloff(np.where(np.isfinite(dmin), dmin, cutoff), sigma, cutoff)
    return mean * scale[:, None]


def pre_dilate(outer: np.ndarray, inner_origin: np.ndarray, inner_now: np.ndarray,
               config: DilationConfig | None = None, device="cpu") -> np.ndarray:
    """Carry ``outer`` (Q, 3) vertices with the inner layers' motion ``inner_origin -> inner_now``
    (each (M, 3), one row per inner vertex). ``device``: where nearest points are searched."""
    cfg = config or DilationConfig()
    disp = np.asarray(inner_now, np.float64) - np.asarray(inner_origin, np.float64)
    return np.asarray(outer, np.float64) + flow_field(inner_origin, disp, outer, sigma=cfg.sigma,
                                                      cutoff=cfg.cutoff, neighbours=cfg.neighbours, device=device)


def post_dilate(outer: np.ndarray, inner_vertices: np.ndarray, inner_faces: np.ndarray,
                config: DilationConfig | None = None, movable: np.ndarray | None = None,
                device="cpu") -> tuple[np.ndarray, int]:
    """Push vertices of ``outer`` (Q, 3) that lie inside the closed inner surface out to ``margin``
    beyond it, spreading each push smoothly to nearby outer vertices. Returns the moved vertices
    and how many were inside at the start. ``device``: where nearest points are searched (on a
    GPU the inner surface's dense samples are searched by brute force, not a k-d tree)."""
    from stdgen.refine.losses import surface_samples

    cfg = config or DilationConfig()
    out = np.asarray(outer, np.float64).copy()
    if len(out) == 0 or len(inner_faces) == 0:
        return out, 0
    iv, jf = np.asarray(inner_vertices, np.float64), np.asarray(inner_faces, np.int64)
    spacing = cfg.sample_spacing * float(np.linalg.norm(iv[jf[:, 0]] - iv[jf[:, 1]], axis=1).mean())
    samples, normals = surface_samples(iv, jf, spacing)
    tree = NearestPoints(samples, device, workers=-1)
    first = None
    for _ in range(max(1, cfg.rounds)):
        idx = tree.query(torch.as_tensor(out, device=tree.device))[1][:, 0].cpu().numpy()
        depth = ((samples[idx] - out) * normals[idx]).sum(1)
        inside = depth > -cfg.margin * 0.5
        if movable is not None:
            inside &= movable
        if first is None:
            first = int((depth > 0).sum() if movable is None else ((depth > 0) & movable).sum())
        if not inside.any():
            break
        push = (depth[inside] + cfg.margin)[:, None] * normals[idx[inside]]
        field = flow_field(out[inside], push, out, sigma=cfg.spread_sigma, cutoff=6 * cfg.spread_sigma,
                           neighbours=cfg.neighbours, device=device)
        if movable is not None:
            field[~movable] = 0
        field[inside] = push  # the offending vertices themselves get their whole push
        out += field
    return out, int(first or 0)
