"""Pose-space correction: keep garments outside the body in a pose, not only in the rest pose.

Garments are built in the rest (T-)pose on offset surfaces of the body, and inherit the skin
weights of the body under them. Skinned to the A-pose, the armpits close by 45 degrees and linear
blend skinning squeezes the thin gap between sleeve, torso and arm there, so a few garment
vertices can end up inside the skinned body. This module finds those vertices in the posed
space, pushes them out along the posed body's normals, and maps them back to the rest pose
through the inverse of their own blended skinning transform -- so skinning the corrected rest
garment gives exactly the corrected posed garment.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from stdgen.structures.character import Pose, Skeleton


def blend_transforms(joints: np.ndarray, weights: np.ndarray, skeleton: Skeleton, pose: Pose
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Per-vertex blended skinning transforms: A (N, 3, 3) and b (N, 3), posed = A rest + b."""
    rot, trans = skeleton.world_transforms(pose)
    w = weights.astype(np.float64)[..., None, None]
    A = (w * rot[joints]).sum(1)
    b = (weights.astype(np.float64)[..., None] * trans[joints]).sum(1)
    return A, b


class PosedSurface:
    """Signed distance from points to a (posed) closed body mesh, negative inside, with the push
    direction. A cheap test first (the tangent planes of the nearest vertices); points that come
    out near or inside the surface get the exact distance to the triangles around their nearest
    vertices, signed by the interpolated vertex normal at the closest point."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray) -> None:
        from stdgen.structures.mesh import vertex_normals

        self.v = vertices.astype(np.float64)
        self.f = faces.astype(np.int64)
        self.n = vertex_normals(self.v, faces)
        self.tree = cKDTree(self.v)
        order = np.argsort(self.f.reshape(-1), kind="stable")
        self.vf_face = order // 3
        self.vf_start = np.searchsorted(self.f.reshape(-1)[order], np.arange(len(self.v) + 1))

    def signed(self, p: np.ndarray, k: int = 4, band: float = 0.004, exact_k: int = 8
               ) -> tuple[np.ndarray, np.ndarray]:
        """(N,) signed distance and (N, 3) outward unit directions; points whose quick estimate is
        below ``band`` get the exact distance over the triangles around ``exact_k`` vertices."""
        _, idx = self.tree.query(p, k=k)
        d = np.einsum("nkc,nkc->nk", p[:, None, :] - self.v[idx], self.n[idx])
        rows = np.arange(len(p))
        pick = np.argmin(d, axis=1)
        dist, nrm = d[rows, pick], self.n[idx[rows, pick]]
        # Creases (crotch, armpits) fool the tangent planes: where the nearest normals disagree,
        # take the exact distance too.
        spread = np.einsum("nkc,nc->nk", self.n[idx], self.n[idx[:, 0]]).min(1) < 0.5
        near = np.flatnonzero((dist < band) | spread)
        if len(near):
            _, idx_e = self.tree.query(p[near], k=exact_k)
            de, ne = self._exact(p[near], idx_e)
            dist[near], nrm[near] = de, ne
        return dist, nrm

    def _exact(self, p: np.ndarray, nn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from stdgen.data.procedural._kernels import closest_signed

        d = np.empty(len(p))
        n = np.zeros((len(p), 3))
        closest_signed(np.ascontiguousarray(p, np.float64), np.ascontiguousarray(nn, np.int64), self.v, self.f,
                       self.n, self.vf_start, self.vf_face, d, n)
        return d, n


def correct_in_pose(rest: np.ndarray, joints: np.ndarray, weights: np.ndarray, skeleton: Skeleton, pose: Pose,
                    surface: PosedSurface, clearance: float, max_push: float = 0.03,
                    only: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rest vertices (N, 3) of a garment whose posed copies are kept ``clearance`` outside
    ``surface`` (the posed body). ``only``: indices to check (default all). Returns the corrected
    rest vertices and the indices that moved."""
    idx = np.arange(len(rest)) if only is None else np.asarray(only)
    if len(idx) == 0:
        return rest, idx
    A, b = blend_transforms(joints[idx], weights[idx], skeleton, pose)
    posed = np.einsum("nij,nj->ni", A, rest[idx].astype(np.float64)) + b
    d, n = surface.signed(posed)
    short = np.clip(clearance - d, 0, max_push)
    moved = short > 0
    if not moved.any():
        return rest, idx[:0]
    target = posed[moved] + n[moved] * short[moved, None]
    # Back to the rest pose through each vertex's own blended transform.
    fixed = np.linalg.solve(A[moved], (target - b[moved])[..., None])[..., 0]
    out = rest.astype(np.float64).copy()
    out[idx[moved]] = fixed
    return out, idx[moved]


class NearestWeights:
    """Skin weights of the body surface nearest to given points: those of the nearest body vertex
    (or an inverse-distance blend of the ``k`` nearest), as dense (N, J) rows. Garments take their
    weights from the body they cover this way, so a garment vertex moves like the skin right under
    it; the nearest vertex alone (k = 1) keeps vertices over a crease (the crotch) from averaging
    two sides that move apart."""

    def __init__(self, vertices: np.ndarray, joints: np.ndarray, weights: np.ndarray, num_bones: int = 22,
                 k: int = 1) -> None:
        self.tree = cKDTree(np.asarray(vertices, np.float64))
        self.dense = np.zeros((len(vertices), num_bones), np.float32)
        np.put_along_axis(self.dense, joints.astype(np.int64), weights, 1)
        self.k = k

    def near(self, p: np.ndarray) -> np.ndarray:
        dist, idx = self.tree.query(np.asarray(p, np.float64), k=self.k)
        if self.k == 1:
            return self.dense[idx]
        w = 1.0 / np.maximum(dist, 1e-4) ** 2
        w /= w.sum(1, keepdims=True)
        return np.einsum("nk,nkj->nj", w, self.dense[idx]).astype(np.float32)
