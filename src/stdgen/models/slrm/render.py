"""Volume rendering of the S-LRM field along rays, for every kept layer set at once.

The field is evaluated once per sample; the kept-set renderings (Eqs. 6-8: body only, body +
clothes, everything) only re-weight the same samples, so rendering three layer sets costs little
more than one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from stdgen.geometry.rays import box_intersection
from stdgen.geometry.volume import composite
from stdgen.models.slrm.model import FieldOutput
from stdgen.structures.semantics import LAYER_SETS

__all__ = ["RenderedRays", "composite_layers", "ray_points", "render_layers", "sample_depths"]


@dataclass
class RenderedRays:
    """One layer set's rendering of rays ``(B, R)``: ``color`` (B, R, 3) over the background,
    ``opacity`` (B, R), ``depth`` (B, R) expected ``t`` of the hit (``sum w t / opacity``),
    ``semantics`` (B, R, K) rendered class distribution (sums to ``opacity``)."""

    color: torch.Tensor
    opacity: torch.Tensor
    depth: torch.Tensor
    semantics: torch.Tensor


def sample_depths(origins: torch.Tensor, directions: torch.Tensor, num_uniform: int, *,
                  guides: torch.Tensor | None = None, num_guided: int = 0, spread: float = 0.04,
                  bound: float = 1.0, generator: torch.Generator | None = None):
    """Sample depths ``t`` ``(B, R, N)`` (sorted) along rays ``(B, R, 3)`` inside ``[-bound, bound]^3``.

    ``num_uniform`` stratified samples over the box; with ``guides`` ``(B, R, G)`` (depths where a
    surface is known to be in training, NaN where none), ``num_guided`` more samples per guide,
    normally distributed around it with standard deviation ``spread`` (rays without a guide get
    uniform samples instead). Returns ``(t, valid)``; ``valid`` ``(B, R)`` is False for rays that
    miss the box.
    """
    near, far = box_intersection(origins, directions, bound)
    valid = far > near + 1e-6
    far = torch.where(valid, far, near + 1e-3)
    dev, dt = origins.device, origins.dtype
    shape = origins.shape[:-1]
    u = (torch.arange(num_uniform, device=dev, dtype=dt)
         + torch.rand(*shape, num_uniform, device=dev, dtype=dt, generator=generator)) / num_uniform
    t = near[..., None] + (far - near)[..., None] * u
    if guides is not None and num_guided > 0:
        g = guides[..., :, None].expand(*guides.shape, num_guided)
        noise = torch.randn(g.shape, device=dev, dtype=dt, generator=generator) * spread
        fallback = near[..., None, None] + (far - near)[..., None, None] * torch.rand(
            g.shape, device=dev, dtype=dt, generator=generator)
        extra = torch.where(torch.isnan(g), fallback, g + noise)
        extra = torch.minimum(torch.maximum(extra, near[..., None, None]), far[..., None, None])
        t = torch.cat([t, extra.reshape(*shape, -1)], -1)
    return t.sort(-1).values, valid


def composite_layers(field: FieldOutput, t: torch.Tensor, layer_sets: Sequence[str], *, background: float = 1.0,
                     semantics: bool = True) -> dict[str, RenderedRays]:
    """Composite the field at the samples of rays ``(B, R)`` at depths ``t`` ``(B, R, N)`` (``field``
    evaluated at those points, flattened to ``(B, R * N)``) for each named layer set (keys of
    :data:`~stdgen.structures.semantics.LAYER_SETS`)."""
    b, r, n = t.shape
    sigma = field.sigma.float().reshape(b, r, n)
    rgb = field.rgb.float().reshape(b, r, n, 3)
    logits = field.logits.float().reshape(b, r, n, -1) if semantics else None
    out = {}
    for name in layer_sets:
        kept = LAYER_SETS[name]
        bundle = composite(sigma, rgb, t, logits=logits, kept=kept if semantics else None)
        depth = bundle.depth / bundle.opacity.clamp_min(1e-4)
        color = bundle.color + background * (1 - bundle.opacity[..., None])
        out[name] = RenderedRays(color, bundle.opacity, depth, bundle.semantics)
    return out


def ray_points(origins: torch.Tensor, directions: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``(B, R * N, 3)`` sample points of rays ``(B, R, 3)`` at depths ``(B, R, N)``."""
    b, r, n = t.shape
    return (origins[..., None, :] + t[..., None] * directions[..., None, :]).reshape(b, r * n, 3)


def render_layers(model, planes: torch.Tensor, origins: torch.Tensor, directions: torch.Tensor, t: torch.Tensor,
                  layer_sets: Sequence[str], *, background: float = 1.0, semantics: bool = True
                  ) -> dict[str, RenderedRays]:
    """Render rays ``(B, R)`` at depths ``t`` ``(B, R, N)`` through the field of ``planes`` for each
    named layer set (for looking and validating; training calls the model's ``forward`` with the
    points and :func:`composite_layers`)."""
    field = model.query(planes, ray_points(origins, directions, t))
    return composite_layers(field, t, layer_sets, background=background, semantics=semantics)
