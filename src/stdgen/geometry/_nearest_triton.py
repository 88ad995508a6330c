"""Triton kernel for :class:`stdgen.geometry.nearest.NearestPoints`: each query's nearest point.

One program takes ``BLOCK_Q`` queries and sweeps all points in ``BLOCK_P`` chunks, keeping a
running minimum of the squared distance in registers: nothing of the (queries x points) table is
ever written to memory (27k queries x 11k points: 1.3 ms on an H100, against 6.2 ms for
float64 matrix-product tiles, ``benchmarks/nearest_bench.py``). Distances are formed from coordinate differences
(no ``|q|^2 - 2 q.p + |p|^2`` cancellation), in float32 on coordinates centred on the point set.
Ties go to the lower point index. With ``TRITON_INTERPRET=1`` (set before Triton loads) the kernel
runs on CPU tensors, which is how the CPU test suite checks it.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
_BLOCK_Q = 16 if _INTERPRET else 64
_BLOCK_P = 32 if _INTERPRET else 128


# Sizes change at every remeshing: specialising on them (Triton's default for integers) would compile
# the kernel anew for each new combination of "divisible by 16" flags.
@triton.jit(do_not_specialize=["NQ", "NP"])
def _nearest_kernel(q_ptr, p_ptr, dist_ptr, index_ptr, NQ, NP, BLOCK_Q: tl.constexpr, BLOCK_P: tl.constexpr):
    """Queries ``q`` (3, NQ) and points ``p`` (3, NP), float32, coordinates as rows (coalesced loads)."""
    qi = tl.program_id(0) * BLOCK_Q + tl.arange(0, BLOCK_Q)
    qm = qi < NQ
    qx = tl.load(q_ptr + qi, mask=qm, other=0.0)
    qy = tl.load(q_ptr + NQ + qi, mask=qm, other=0.0)
    qz = tl.load(q_ptr + 2 * NQ + qi, mask=qm, other=0.0)
    best = tl.full([BLOCK_Q], float("inf"), tl.float32)
    best_i = tl.zeros([BLOCK_Q], tl.int32)
    for start in range(0, NP, BLOCK_P):
        pj = start + tl.arange(0, BLOCK_P)
        pm = pj < NP
        px = tl.load(p_ptr + pj, mask=pm, other=0.0)
        py = tl.load(p_ptr + NP + pj, mask=pm, other=0.0)
        pz = tl.load(p_ptr + 2 * NP + pj, mask=pm, other=0.0)
        dx = qx[:, None] - px[None, :]
        dy = qy[:, None] - py[None, :]
        dz = qz[:, None] - pz[None, :]
        d2 = dx * dx + dy * dy + dz * dz
        d2 = tl.where(pm[None, :], d2, float("inf"))
        chunk_min, chunk_arg = tl.min(d2, axis=1, return_indices=True, return_indices_tie_break_left=True)
        better = chunk_min < best  # strict: an earlier chunk keeps a tie
        best = tl.where(better, chunk_min, best)
        best_i = tl.where(better, chunk_arg.to(tl.int32) + start, best_i)
    tl.store(dist_ptr + qi, best, mask=qm)
    tl.store(index_ptr + qi, best_i, mask=qm)


def nearest_one(queries_t: torch.Tensor, points_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(squared distance (N,) float32, index (N,) int64)`` of each query's nearest point.

    ``queries_t`` (3, N) and ``points_t`` (3, M): float32, contiguous, on one device, M >= 1.
    """
    n, m = queries_t.shape[1], points_t.shape[1]
    dist = torch.empty(n, dtype=torch.float32, device=queries_t.device)
    index = torch.empty(n, dtype=torch.int32, device=queries_t.device)
    if n:
        grid = (triton.cdiv(n, _BLOCK_Q),)
        _nearest_kernel[grid](queries_t, points_t, dist, index, n, m, BLOCK_Q=_BLOCK_Q, BLOCK_P=_BLOCK_P)
    return dist, index.long()
