"""Volume rendering with semantics: plain (Eq. 1, S(r)) and semantic-equivalent (Eqs. 2, 6-8).

Along a ray with samples ``i = 1..N`` at depths ``t_i``, ``alpha_i = 1 - exp(-sigma_i delta_i)``:

    plain:        w_i = T_i alpha_i,          T_i = prod_{j<i} (1 - alpha_j)
    kept set P:   w_i = T_{P,i} alpha_i q_i,  T_{P,i} = prod_{j<i} (1 - alpha_j q_j),
                  q_i = sum_{s in P} p_{s,i}

and then ``C = sum_i w_i c_i``, ``S = sum_i w_i p_i`` (class distribution), opacity
``sum_i w_i`` and expected depth ``sum_i w_i t_i``. One semantic ``s`` (Eq. 2) is ``P = {s}``;
``P`` = every part is the plain rendering (``q = 1``). So the kept-set rendering is the plain one
with opacities ``alpha_i q_i``: outer layers become transparent, which is how the S-LRM is
supervised with body-only and body+clothes renders.

:func:`composite` works on samples already evaluated; :func:`render_rays` samples a field along
rays in chunks (memory-bounded; optionally with activation checkpointing in training).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from stdgen.structures.semantics import NUM_PARTS, Part
from stdgen.utils.checks import check_tensor

__all__ = ["RayBundle", "composite", "kept_probability", "render_rays", "sample_along_rays"]

#: A field maps points (P, 3) to (density (P,), colour (P, C), class logits (P, K)).
Field = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


@dataclass
class RayBundle:
    """Rendered rays, leading shape ``(...)`` of the rays.

    ``color`` (..., C) (premultiplied: black where nothing is hit), ``semantics`` (..., K) the
    rendered class distribution (sums to ``opacity``), ``opacity`` (...), ``depth`` (...) expected
    depth ``sum_i w_i t_i`` (0 where nothing is hit; divide by ``opacity`` for the surface depth),
    ``weights`` (..., N) the per-sample weights ``w_i``.
    """

    color: torch.Tensor
    semantics: torch.Tensor
    opacity: torch.Tensor
    depth: torch.Tensor
    weights: torch.Tensor


def kept_probability(probs: torch.Tensor, kept: Iterable[Part | str] | Part | str | None) -> torch.Tensor | None:
    """``q = sum_{s in P} p_s`` (...,) from probabilities (..., K); None when P is None (plain)."""
    if kept is None:
        return None
    if isinstance(kept, Part | str):
        kept = [kept]
    idx = sorted({int(Part.parse(k)) for k in kept})
    if not idx:
        raise ValueError("kept: the set of kept parts is empty")
    if len(idx) == probs.shape[-1]:
        return None  # every class kept: exactly the plain rendering
    return probs[..., idx].sum(-1)


def composite(
    sigma: torch.Tensor,
    color: torch.Tensor,
    t: torch.Tensor,
    *,
    logits: torch.Tensor | None = None,
    kept: Iterable[Part | str] | Part | str | None = None,
    deltas: torch.Tensor | None = None,
) -> RayBundle:
    """Composite samples along rays.

    Args:
        sigma: ``(..., N)`` non-negative densities.
        color: ``(..., N, C)`` colours.
        t: ``(..., N)`` increasing sample depths.
        logits: ``(..., N, K)`` class logits (softmax gives ``p``); required for semantics and for
            ``kept``. Without them ``semantics`` is empty (K = 0).
        kept: ``None`` for the plain rendering; a part or a set of parts P for Eqs. 2 / 6-8.
        deltas: ``(..., N)`` sample spacings; by default ``t_{i+1} - t_i`` with the last spacing
            repeated.

    Returns:
        :class:`RayBundle`.
    """
    check_tensor(sigma, "sigma", min_dims=1)
    n = sigma.shape[-1]
    if color.shape[:-1] != sigma.shape:
        raise ValueError(f"color: expected {(*sigma.shape, 'C')}, got {tuple(color.shape)}")
    if t.shape != sigma.shape:
        raise ValueError(f"t: expected {tuple(sigma.shape)}, got {tuple(t.shape)}")
    if deltas is None:
        d = t[..., 1:] - t[..., :-1]
        deltas = torch.cat([d, d[..., -1:]], -1) if n > 1 else torch.ones_like(t)
    alpha = 1.0 - torch.exp(-sigma * deltas)
    probs = None
    if logits is not None:
        if logits.shape[:-1] != sigma.shape:
            raise ValueError(f"logits: expected {(*sigma.shape, 'K')}, got {tuple(logits.shape)}")
        probs = torch.softmax(logits, -1)
    elif kept is not None:
        raise ValueError("kept: a kept-set rendering needs class logits")
    q = kept_probability(probs, kept) if probs is not None else None
    a_eff = alpha if q is None else alpha * q
    # Exclusive cumulative product: T_1 = 1. The 1e-10 keeps cumprod's gradient finite at alpha = 1.
    trans = torch.cumprod(torch.cat([torch.ones_like(a_eff[..., :1]), 1.0 - a_eff[..., :-1] + 1e-10], -1), -1)
    w = trans * a_eff
    out_color = (w[..., None] * color).sum(-2)
    if probs is not None:
        sem = (w[..., None] * probs).sum(-2)
    else:
        sem = torch.zeros(*sigma.shape[:-1], 0, dtype=sigma.dtype, device=sigma.device)
    return RayBundle(out_color, sem, w.sum(-1), (w * t).sum(-1), w)


def sample_along_rays(
    origins: torch.Tensor,
    directions: torch.Tensor,
    near: float | torch.Tensor,
    far: float | torch.Tensor,
    num_samples: int,
    *,
    stratified: bool = False,
    generator: torch.Generator | None = None,
    jitter: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Points ``(R, N, 3)`` and depths ``(R, N)`` along rays ``(R, 3)``: ``N`` equal bins over
    ``[near, far]``, sampled at their centres, at a uniform random place per bin when
    ``stratified``, or at ``jitter`` ``(R, N)`` in [0, 1) when given."""
    r = origins.shape[0]
    dev, dt = origins.device, origins.dtype
    near = torch.as_tensor(near, dtype=dt, device=dev).expand(r)
    far = torch.as_tensor(far, dtype=dt, device=dev).expand(r)
    if jitter is None:
        if stratified:
            jitter = torch.rand(r, num_samples, dtype=dt, device=dev, generator=generator)
        else:
            jitter = torch.full((r, num_samples), 0.5, dtype=dt, device=dev)
    u = (torch.arange(num_samples, dtype=dt, device=dev) + jitter) / num_samples
    t = near[:, None] + (far - near)[:, None] * u
    return origins[:, None, :] + t[..., None] * directions[:, None, :], t


def render_rays(
    field: Field,
    origins: torch.Tensor,
    directions: torch.Tensor,
    near: float | torch.Tensor,
    far: float | torch.Tensor,
    num_samples: int = 64,
    *,
    kept: Iterable[Part | str] | Part | str | None = None,
    chunk: int = 4096,
    stratified: bool = False,
    generator: torch.Generator | None = None,
    checkpoint: bool = False,
) -> RayBundle:
    """Render a field along rays, ``chunk`` rays at a time.

    Args:
        field: points ``(P, 3)`` -> ``(sigma (P,), colour (P, C), logits (P, K))``.
        origins, directions: ``(..., 3)`` rays (directions need not be unit; depths are in their
            units).
        near, far: sampling range (scalars or ``(...)`` per ray).
        num_samples: samples per ray.
        kept: as in :func:`composite`.
        chunk: rays per field call, bounding memory.
        checkpoint: recompute each chunk in the backward pass (torch.utils.checkpoint) so
            training memory is bounded by one chunk's activations.

    Returns:
        :class:`RayBundle` with leading shape ``(...)`` of the rays.
    """
    check_tensor(origins, "origins", min_dims=1)
    if origins.shape != directions.shape or origins.shape[-1] != 3:
        raise ValueError(f"origins/directions: expected matching (..., 3), got {tuple(origins.shape)} "
                         f"and {tuple(directions.shape)}")
    lead = origins.shape[:-1]
    o = origins.reshape(-1, 3)
    d = directions.reshape(-1, 3)
    r = o.shape[0]
    near_t = torch.as_tensor(near, dtype=o.dtype, device=o.device).expand(lead).reshape(-1)
    far_t = torch.as_tensor(far, dtype=o.dtype, device=o.device).expand(lead).reshape(-1)

    def one(oc, dc, nc, fc, jit):
        pts, t = sample_along_rays(oc, dc, nc, fc, num_samples, jitter=jit)
        sigma, col, logit = field(pts.reshape(-1, 3))
        n = oc.shape[0]
        b = composite(sigma.reshape(n, num_samples), col.reshape(n, num_samples, -1), t,
                      logits=logit.reshape(n, num_samples, -1), kept=kept)
        return b.color, b.semantics, b.opacity, b.depth, b.weights

    outs = []
    for s in range(0, r, chunk):
        sl = slice(s, min(r, s + chunk))
        n = sl.stop - sl.start
        if stratified:
            jit = torch.rand(n, num_samples, dtype=o.dtype, device=o.device, generator=generator)
        else:
            jit = torch.full((n, num_samples), 0.5, dtype=o.dtype, device=o.device)
        args = (o[sl], d[sl], near_t[sl], far_t[sl], jit)
        if checkpoint and torch.is_grad_enabled():
            from torch.utils.checkpoint import checkpoint as ckpt

            outs.append(ckpt(one, *args, use_reentrant=False))
        else:
            outs.append(one(*args))
    if not outs:
        k = NUM_PARTS
        z = origins.new_zeros(*lead)
        return RayBundle(origins.new_zeros(*lead, 3), origins.new_zeros(*lead, k), z, z.clone(),
                         origins.new_zeros(*lead, num_samples))
    color, sem, opa, dep, wts = (torch.cat([x[i] for x in outs], 0) for i in range(5))
    return RayBundle(color.reshape(*lead, -1), sem.reshape(*lead, -1), opa.reshape(lead), dep.reshape(lead),
                     wts.reshape(*lead, num_samples))
