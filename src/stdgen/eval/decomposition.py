"""Decomposition metrics: how well a character is split into body, clothes and hair.

2D, on semantic label maps ``(V, H, W)`` uint8 (``Part`` values, ``BACKGROUND_LABEL`` off the
character), numpy or torch:

- :func:`part_iou`: per part, intersection over union of the pixels labelled with that part,
  **pooled over the views** (sum of intersections / sum of unions), so a view where the part is
  barely visible weighs little. NaN if neither side shows the part in any view.
- :func:`semantic_accuracy`: share of the pixels that are foreground on either side whose labels
  agree (a pixel covered on one side only counts as wrong).

3D, on the predicted meshes (points in/out by :func:`stdgen.geometry.inside.contains`, which
wants closed surfaces):

- :func:`clothes_hollowness`: the share of the body's volume that the clothes solid does **not**
  fill, estimated on a regular grid of points inside the body. 1 for clothes that are a shell
  around the body (the paper's "entirely internally hollow"), lower when the clothes mesh is a
  solid through the torso.
- :func:`penetration`: the share of a layer's vertices inside inner layers (clothes inside the
  body; hair inside clothes or body). 0 is clean.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from stdgen.structures.mesh import Mesh
from stdgen.structures.semantics import BACKGROUND_LABEL, PARTS, Part


def _labels(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def part_iou(pred_labels, true_labels, part: Part | str) -> float:
    """Pooled IoU of one part's pixels over all views of ``(V, H, W)`` label maps (NaN if absent on both)."""
    p, t = _labels(pred_labels), _labels(true_labels)
    if p.shape != t.shape:
        raise ValueError(f"part_iou: label maps differ in shape: {p.shape} vs {t.shape}")
    k = int(Part.parse(part))
    a, b = p == k, t == k
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b) / union) if union else float("nan")


def part_ious(pred_labels, true_labels) -> dict[Part, float]:
    """:func:`part_iou` of every part."""
    return {part: part_iou(pred_labels, true_labels, part) for part in PARTS}


def semantic_accuracy(pred_labels, true_labels) -> float:
    """Share of pixels in the union of both foregrounds whose labels agree (NaN if both are empty)."""
    p, t = _labels(pred_labels), _labels(true_labels)
    if p.shape != t.shape:
        raise ValueError(f"semantic_accuracy: label maps differ in shape: {p.shape} vs {t.shape}")
    fg = (p != BACKGROUND_LABEL) | (t != BACKGROUND_LABEL)
    n = np.count_nonzero(fg)
    return float(np.count_nonzero((p == t) & fg) / n) if n else float("nan")


def _contains(mesh: Mesh, points: np.ndarray) -> np.ndarray:
    from stdgen.geometry.inside import contains

    if mesh is None or mesh.is_empty or len(points) == 0:
        return np.zeros(len(points), bool)
    return contains(mesh, points)


def clothes_hollowness(body: Mesh | None, clothes: Mesh | None, *, resolution: int = 48) -> float:
    """Share of the body's volume not inside the clothes solid; NaN without a body or clothes.

    The body's volume is sampled on a regular grid over its bounding box with ``resolution``
    points along the longest side (about 15k points inside a standing character at 48); the
    cells are offset by half a step so no grid point sits on a bounding plane.
    """
    if body is None or clothes is None or body.is_empty or clothes.is_empty:
        return float("nan")
    from stdgen.geometry.inside import contains_grid

    lo, hi = body.bounds().astype(np.float64)
    step = float((hi - lo).max()) / resolution
    if not step > 0:
        return float("nan")
    axes = [np.arange(lo[i] + step / 2, hi[i], step) for i in range(3)]
    inside_body = contains_grid(body, *axes)
    n = np.count_nonzero(inside_body)
    if n == 0:
        return float("nan")
    inside_clothes = contains_grid(clothes, *axes)
    return float(1.0 - np.count_nonzero(inside_body & inside_clothes) / n)


def penetration(outer: Mesh | None, inner: Mesh | list[Mesh | None] | None) -> float:
    """Share of ``outer``'s vertices inside any of the ``inner`` meshes (NaN if ``outer`` is empty)."""
    if outer is None or outer.is_empty:
        return float("nan")
    inners = inner if isinstance(inner, list) else [inner]
    inside = np.zeros(outer.num_vertices, bool)
    for m in inners:
        if m is not None and not m.is_empty:
            inside |= _contains(m, outer.vertices)
    return float(inside.mean())


def layer_penetration(parts: Mapping[Part, Mesh]) -> dict[str, float]:
    """``{"clothes_in_body": ..., "hair_in_inner": ...}``: clothes vertices inside the body, hair
    vertices inside clothes or body."""
    body, clothes, hair = (parts.get(p) for p in PARTS)
    return {
        "clothes_in_body": penetration(clothes, body),
        "hair_in_inner": penetration(hair, [body, clothes]),
    }
