"""Nearest-point queries against a fixed point set, on the host or on the device.

:class:`NearestPoints` answers "which of these M fixed points is nearest to each query" many times
over one point set (the refinement asks it at every step). On the CPU it wraps scipy's
``cKDTree``. On a GPU it compares every query with every point and nothing leaves the device (no
host round trip, no synchronisation): brute force wins there, since tens of thousands of queries
against tens of thousands of points are a few hundred million distance evaluations. The nearest
point (k = 1) comes from a Triton kernel that keeps its running minimum in registers
(:mod:`stdgen.geometry._nearest_triton`: 1.3 ms for 27k x 11k on an H100); k nearest from
matrix-product tiles in float64 (``|q|^2 - 2 q.p + |p|^2`` on centred coordinates, which at float64 orders
millimetre neighbours exactly), which are bandwidth-bound (6.2 ms for k = 1 at that size).
"""

from __future__ import annotations

import numpy as np
import torch

#: Query-by-point entries evaluated per tile on the device (float64: 8 bytes each).
_TILE_ENTRIES = 1 << 25


class NearestPoints:
    """The fixed ``points`` (M, 3) and a way to find, for queries (N, 3), their k nearest.

    ``backend``: ``"kdtree"`` (scipy, host), ``"brute"`` (torch tiles, any device), ``"triton"``
    (the Triton kernel for k = 1, torch tiles for k > 1; CUDA, or CPU tensors under
    ``TRITON_INTERPRET=1``) or ``"auto"`` (triton on CUDA when Triton is there, else brute on CUDA;
    k-d tree otherwise). ``workers``: the k-d tree's query threads (-1: all cores).
    """

    def __init__(self, points, device: str | torch.device = "cpu", backend: str = "auto", workers: int = 1):
        self.device = torch.device(device)
        if backend == "auto":
            backend = "kdtree"
            if self.device.type == "cuda":
                backend = "triton" if _triton_kernel() is not None else "brute"
        if backend not in ("kdtree", "brute", "triton"):
            raise ValueError(f"NearestPoints backend: expected 'auto', 'kdtree', 'brute' or 'triton', got {backend!r}")
        if backend == "triton" and _triton_kernel() is None:
            raise ValueError("NearestPoints backend 'triton': Triton is not installed")
        self.backend = backend
        self.workers = workers
        if isinstance(points, torch.Tensor):
            pts = points.detach().to(self.device, torch.float64)
        else:
            pts = torch.as_tensor(np.asarray(points, np.float64), device=self.device)
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise ValueError(f"NearestPoints: points must be (M, 3), got {tuple(pts.shape)}")
        self.num_points = pts.shape[0]
        if backend == "kdtree":
            from scipy.spatial import cKDTree

            self._tree = cKDTree(pts.cpu().numpy()) if self.num_points else None
        else:
            # Centred: the expansion |q|^2 - 2 q.p + |p|^2 then cancels less.
            self._center = pts.mean(0) if self.num_points else pts.new_zeros(3)
            self._pts = pts - self._center
            self._sq = self._pts.square().sum(1)
            if backend == "triton":
                self._pts32 = self._pts.T.float().contiguous()  # (3, M): coalesced loads in the kernel

    def query(self, queries: torch.Tensor, k: int = 1,
              max_distance: float = float("inf")) -> tuple[torch.Tensor, torch.Tensor]:
        """``(distance (N, k) float64, index (N, k) int64)`` of each query's ``k`` nearest points,
        nearest first, on the queries' device; no gradient. Needs ``k <= num_points``. Neighbours at
        ``max_distance`` or beyond are reported as distance ``inf``, index ``num_points`` (as scipy's
        ``distance_upper_bound`` reports them)."""
        if not 1 <= k <= self.num_points:
            raise ValueError(f"NearestPoints.query: k must be in [1, {self.num_points}], got {k}")
        dev = queries.device
        q = queries.detach()
        if self.backend == "kdtree":
            d, i = self._tree.query(q.cpu().double().numpy().reshape(-1, 3), k=k, distance_upper_bound=max_distance,
                                    workers=self.workers)
            d, i = np.asarray(d).reshape(-1, k), np.asarray(i).reshape(-1, k)
            return torch.as_tensor(d, device=dev), torch.as_tensor(i, dtype=torch.long, device=dev)
        q = q.to(self.device, torch.float64) - self._center
        if self.backend == "triton" and k == 1:
            d2, idx = _triton_kernel()(q.T.float().contiguous(), self._pts32)
            dist, index = d2.double().sqrt()[:, None], idx[:, None]
        else:
            n = q.shape[0]
            dist = torch.empty(n, k, dtype=torch.float64, device=self.device)
            index = torch.empty(n, k, dtype=torch.long, device=self.device)
            rows = max(1, _TILE_ENTRIES // max(self.num_points, 1))
            for s in range(0, n, rows):
                qs = q[s:s + rows]
                d2 = torch.addmm(self._sq[None, :], qs, self._pts.T, beta=1.0, alpha=-2.0)
                d2 += qs.square().sum(1, keepdim=True)
                if k == 1:
                    best, idx = d2.min(1, keepdim=True)
                else:
                    best, idx = torch.topk(d2, k, dim=1, largest=False, sorted=True)
                dist[s:s + rows] = best.clamp(min=0).sqrt()
                index[s:s + rows] = idx
        if max_distance != float("inf"):
            far = dist >= max_distance
            dist = dist.masked_fill(far, float("inf"))
            index = index.masked_fill(far, self.num_points)
        return dist.to(dev), index.to(dev)


def _triton_kernel():
    """The Triton nearest-point function, or None where Triton cannot be imported."""
    try:
        from stdgen.geometry._nearest_triton import nearest_one
    except ImportError:
        return None
    return nearest_one
