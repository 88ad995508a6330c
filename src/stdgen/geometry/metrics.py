"""Geometry metrics between meshes: Chamfer distance, F-score and normal consistency.

Both surfaces are sampled uniformly by area (a fixed seed, so the same mesh always gives the
same points); distances are nearest-neighbour distances between the two point sets (scipy
``cKDTree``), Euclidean, not squared:

- ``chamfer = (mean_{p in P} d(p, Q) + mean_{q in Q} d(q, P)) / 2`` (P predicted, Q true);
- ``precision@t`` = share of P within ``t`` of Q, ``recall@t`` = share of Q within ``t`` of P,
  ``fscore@t = 2 precision recall / (precision + recall)`` (Tatarchenko et al. 2019);
- ``normal_consistency`` = mean over both directions of ``|n_p . n_q|`` for each point and its
  nearest neighbour (orientation-agnostic, as in Occupancy Networks).

Characters are compared after dividing every coordinate by the **true character's height**
(one factor for prediction and truth alike), so distances and thresholds are fractions of the
character's height: ``fscore@0.01`` counts points within 1 % of the height. The prediction is
not moved or rescaled on its own: a prediction 10 % too large is penalised.

Sampling floor: two independent samplings of the *same* surface are not at distance 0. For a
procedural character (surface area 1.85 in height units squared) and the default 100 000 points
the floor is a Chamfer of 0.0018 (F-score@0.01 still 1.0). The same mesh is always sampled the
same way, so an exact prediction scores exactly 0; but a part equal to the truth's, inside a
character whose other parts differ, sits at the floor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from stdgen.structures.mesh import Mesh, merge_meshes
from stdgen.structures.semantics import PARTS, Part

#: F-score thresholds, as fractions of the true character's height.
DEFAULT_THRESHOLDS: tuple[float, ...] = (0.01, 0.02)
#: Surface samples per mesh (each side) by default.
DEFAULT_POINTS = 100_000


@dataclass
class SurfaceSamples:
    """Points sampled on a surface: ``points`` (N, 3) float64, their unit face ``normals`` (N, 3)
    and the index of the face each lies on, ``faces`` (N,) int64."""

    points: np.ndarray
    normals: np.ndarray
    faces: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.points)

    def scaled(self, factor: float) -> SurfaceSamples:
        return SurfaceSamples(self.points * factor, self.normals, self.faces)

    def subset(self, keep: np.ndarray) -> SurfaceSamples:
        return SurfaceSamples(self.points[keep], self.normals[keep],
                              None if self.faces is None else self.faces[keep])


def sample_surface(mesh: Mesh, count: int = DEFAULT_POINTS, seed: int = 0) -> SurfaceSamples:
    """``count`` points uniformly distributed by area on ``mesh`` (deterministic for a seed).

    Degenerate (zero-area) faces are never chosen. An empty mesh (or one of zero area) gives
    zero points.
    """
    v = mesh.vertices.astype(np.float64)
    f = mesh.faces
    if len(f) == 0 or count <= 0:
        return _no_samples()
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    cross = np.cross(b - a, c - a)
    double_area = np.linalg.norm(cross, axis=1)
    total = double_area.sum()
    if not total > 0:
        return _no_samples()
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(double_area)
    # searchsorted on the CDF picks faces in proportion to area; 'right' never picks a zero-area face.
    face = np.searchsorted(cdf, rng.random(count) * cdf[-1], side="right")
    face = np.minimum(face, len(f) - 1)
    r1, r2 = rng.random(count), rng.random(count)
    # Uniform barycentrics on a triangle: (1 - sqrt r1, sqrt r1 (1 - r2), sqrt r1 r2).
    s = np.sqrt(r1)
    w0, w1, w2 = 1 - s, s * (1 - r2), s * r2
    pts = w0[:, None] * a[face] + w1[:, None] * b[face] + w2[:, None] * c[face]
    normals = cross[face] / np.maximum(double_area[face], 1e-300)[:, None]
    return SurfaceSamples(pts, normals, face.astype(np.int64))


def _no_samples() -> SurfaceSamples:
    return SurfaceSamples(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0, np.int64))


def _nearest(query: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from scipy.spatial import cKDTree

    # An unbalanced tree builds faster and answers nearest-neighbour queries as fast here.
    dist, idx = cKDTree(ref, balanced_tree=False).query(query, k=1, workers=-1)
    return dist, idx


def point_metrics(pred: SurfaceSamples, true: SurfaceSamples,
                  thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> dict[str, float]:
    """Chamfer, per-direction means, precision / recall / F-score at each threshold, normal consistency.

    Keys: ``chamfer``, ``accuracy`` (mean pred -> true distance), ``completeness`` (mean true ->
    pred), ``precision@t``, ``recall@t``, ``fscore@t`` (``t`` formatted with ``:g``),
    ``normal_consistency``. If either side has no points: Chamfer and normal consistency are NaN
    and the F-scores 0 unless both are empty (then everything is NaN: nothing to compare).
    """
    out: dict[str, float] = {}
    if len(pred) == 0 or len(true) == 0:
        both_empty = len(pred) == 0 and len(true) == 0
        out.update(chamfer=np.nan, accuracy=np.nan, completeness=np.nan)
        for t in thresholds:
            value = np.nan if both_empty else 0.0
            out[f"precision@{t:g}"] = out[f"recall@{t:g}"] = out[f"fscore@{t:g}"] = value
        out["normal_consistency"] = np.nan
        return out
    d_pt, i_pt = _nearest(pred.points, true.points)
    d_tp, i_tp = _nearest(true.points, pred.points)
    out["accuracy"] = float(d_pt.mean())
    out["completeness"] = float(d_tp.mean())
    out["chamfer"] = 0.5 * (out["accuracy"] + out["completeness"])
    for t in thresholds:
        p = float((d_pt <= t).mean())
        r = float((d_tp <= t).mean())
        out[f"precision@{t:g}"] = p
        out[f"recall@{t:g}"] = r
        out[f"fscore@{t:g}"] = 2 * p * r / (p + r) if p + r > 0 else 0.0
    nc_pt = np.abs((pred.normals * true.normals[i_pt]).sum(1)).mean()
    nc_tp = np.abs((true.normals * pred.normals[i_tp]).sum(1)).mean()
    out["normal_consistency"] = float(0.5 * (nc_pt + nc_tp))
    return out


def mesh_metrics(pred: Mesh, true: Mesh, *, scale: float = 1.0, count: int = DEFAULT_POINTS,
                 thresholds: Sequence[float] = DEFAULT_THRESHOLDS, seed: int = 0) -> dict[str, float]:
    """:func:`point_metrics` of two meshes after multiplying coordinates by ``scale``.

    Pass ``scale = 1 / true_height`` to get distances in units of the character's height.
    """
    a = sample_surface(pred, count, seed).scaled(scale)
    b = sample_surface(true, count, seed).scaled(scale)
    return point_metrics(a, b, thresholds)


def chamfer_distance(pred: Mesh, true: Mesh, *, scale: float = 1.0, count: int = DEFAULT_POINTS,
                     seed: int = 0) -> float:
    """Symmetric Chamfer distance (mean of the two directed mean distances) after scaling by ``scale``."""
    return mesh_metrics(pred, true, scale=scale, count=count, thresholds=(), seed=seed)["chamfer"]


def fscore(pred: Mesh, true: Mesh, threshold: float = 0.01, *, scale: float = 1.0,
           count: int = DEFAULT_POINTS, seed: int = 0) -> float:
    """F-score at ``threshold`` (in scaled units) after scaling by ``scale``."""
    return mesh_metrics(pred, true, scale=scale, count=count, thresholds=(threshold,), seed=seed)[
        f"fscore@{threshold:g}"]


def character_height(parts: Mapping[Part, Mesh]) -> float:
    """Height (max y - min y) of all non-empty parts together."""
    ys = [m.vertices[:, 1] for m in parts.values() if m is not None and m.num_vertices]
    if not ys:
        return 0.0
    y = np.concatenate(ys)
    return float(y.max() - y.min())


def labelled_merge(parts: Mapping[Part, Mesh]) -> tuple[Mesh, np.ndarray]:
    """All non-empty parts merged into one mesh, and its (F,) uint8 per-face part labels."""
    present = [(p, parts[p]) for p in PARTS if parts.get(p) is not None and not parts[p].is_empty]
    merged = merge_meshes([m for _, m in present])
    labels = np.concatenate([np.full(m.num_faces, int(p), np.uint8) for p, m in present]) if present \
        else np.zeros(0, np.uint8)
    return merged, labels


def character_geometry_metrics(pred: Mapping[Part, Mesh], true: Mapping[Part, Mesh], *,
                               count: int = DEFAULT_POINTS,
                               thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
                               seed: int = 0) -> dict[str, float]:
    """Geometry metrics of a whole character and of each part, in units of the true height.

    ``pred`` and ``true`` map each :class:`Part` to its mesh (missing or empty = absent). Each
    character (all its parts merged) is sampled with ``count`` points; a part's points are the
    samples that fell on it, so parts and whole share one sampling density. Keys: the
    :func:`point_metrics` keys for the whole character, and the same prefixed ``"body/"``,
    ``"clothes/"``, ``"hair/"`` per part. A part absent on both sides gives NaN; absent on one
    side only gives F-scores of 0 and a NaN Chamfer.
    """
    height = character_height(true)
    if not height > 0:
        raise ValueError("the true character has no extent in y; cannot normalise its height")
    scale = 1.0 / height
    samples = []
    for parts in (pred, true):
        merged, labels = labelled_merge(parts)
        s = sample_surface(merged, count, seed).scaled(scale)
        samples.append((s, labels[s.faces] if len(s) else np.zeros(0, np.uint8)))
    (sp, lp), (st, lt) = samples
    out: dict[str, float] = dict(point_metrics(sp, st, thresholds))
    for p in PARTS:
        res = point_metrics(sp.subset(lp == int(p)), st.subset(lt == int(p)), thresholds)
        out.update({f"{p.key}/{k}": v for k, v in res.items()})
    return out
