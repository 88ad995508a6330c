"""Attention modules for image denoisers, all on :func:`torch.nn.functional.scaled_dot_product_attention`
(flash / memory-efficient kernels on CUDA, bf16-friendly, no host synchronisation).

Token layouts: ``(N, L, C)`` sequences; the multi-view helpers take ``(B, D, V, H, W, C)`` token
grids (batch, domain, view, rows, columns, channels) and regroup them into sequences:

- :func:`row_sequences`: one sequence per (batch, domain, row) holding that row of every view,
  ``(B*D*H, V*W, C)`` (Era3D: with orthographic elevation-0 cameras the epipolar line of a pixel is
  its image row in every other view);
- :func:`domain_sequences`: one sequence per (batch, view, pixel) holding that pixel in every domain,
  ``(B*V*H*W, D, C)`` (cross-domain attention between a view's RGB and normal branches);
- :func:`image_sequences`: one sequence per (batch, view) holding every pixel of every domain,
  ``(B*V, D*H*W, C)`` (full attention within a view, across domains; affordable at low resolution).

:func:`masked_reference_attention` is the slow reference the tests compare the fast paths with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Up to this many keys, attention is computed elementwise (:func:`short_attention`) instead of by
#: the fused kernels, whose tiles (64-128 rows) would be almost all padding.
SHORT_KEYS = 4


def short_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention for very short sequences, ``(N, heads, L, d)`` queries over ``(N, heads, S,
    d)`` keys / values with small S (the two domains of a pixel): broadcast products, scores in
    float32. Equal to ``scaled_dot_product_attention`` without a mask."""
    dt = torch.promote_types(q.dtype, torch.float32)  # bf16 / fp16 inputs: scores in float32
    scores = (q.to(dt)[:, :, :, None] * k.to(dt)[:, :, None]).sum(-1) * q.shape[-1] ** -0.5  # (N, h, L, S)
    w = scores.softmax(dim=-1)
    return (w[..., None] * v.to(dt)[:, :, None]).sum(-2).to(v.dtype)


class Attention(nn.Module):
    """Multi-head attention of ``(N, L, dim)`` queries over themselves or over a ``(N, S, context_dim)``
    context; output ``(N, L, dim)``. The output projection starts at zero, so a freshly inserted block
    is the identity (a residual branch that learns to open)."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None, zero_init: bool = True):
        super().__init__()
        if dim % heads:
            raise ValueError(f"heads: {heads} must divide the width {dim}")
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_kv = nn.Linear(context_dim or dim, 2 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim)
        if zero_init:
            nn.init.zeros_(self.to_out.weight)
            nn.init.zeros_(self.to_out.bias)

    def split_heads(self, t: torch.Tensor) -> torch.Tensor:  # (N, L, C) -> (N, heads, L, C / heads)
        n, length, c = t.shape
        return t.view(n, length, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (N, L, dim); ``context`` (N, S, context_dim) or None (self-attention); ``mask``
        broadcastable to (N, heads, L, S), bool True = may attend (reference / tests only)."""
        ctx = x if context is None else context
        q = self.split_heads(self.to_q(x))
        k, v = (self.split_heads(t) for t in self.to_kv(ctx).chunk(2, dim=-1))
        if mask is None and k.shape[2] <= SHORT_KEYS:
            out = short_attention(q, k, v)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        n, _, length, _ = out.shape
        return self.to_out(out.transpose(1, 2).reshape(n, length, -1))


class FeedForward(nn.Module):
    """GELU MLP ``dim -> mult * dim -> dim`` on ``(..., dim)``; output layer zero-initialised."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, mult * dim), nn.GELU(approximate="tanh"), nn.Linear(mult * dim, dim))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def row_sequences(t: torch.Tensor) -> torch.Tensor:
    """``(B, D, V, H, W, C)`` -> ``(B*D*H, V*W, C)``: each row with the same row of the other views."""
    b, d, v, h, w, c = t.shape
    return t.permute(0, 1, 3, 2, 4, 5).reshape(b * d * h, v * w, c)


def from_row_sequences(s: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Inverse of :func:`row_sequences`."""
    b, d, v, h, w, c = shape
    return s.reshape(b, d, h, v, w, c).permute(0, 1, 3, 2, 4, 5)


def domain_sequences(t: torch.Tensor) -> torch.Tensor:
    """``(B, D, V, H, W, C)`` -> ``(B*V*H*W, D, C)``: each pixel with the same pixel of the other domains."""
    b, d, v, h, w, c = t.shape
    return t.permute(0, 2, 3, 4, 1, 5).reshape(b * v * h * w, d, c)


def from_domain_sequences(s: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Inverse of :func:`domain_sequences`."""
    b, d, v, h, w, c = shape
    return s.reshape(b, v, h, w, d, c).permute(0, 4, 1, 2, 3, 5)


def image_sequences(t: torch.Tensor) -> torch.Tensor:
    """``(B, D, V, H, W, C)`` -> ``(B*V, D*H*W, C)``: all pixels of a view, over every domain."""
    b, d, v, h, w, c = t.shape
    return t.permute(0, 2, 1, 3, 4, 5).reshape(b * v, d * h * w, c)


def from_image_sequences(s: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Inverse of :func:`image_sequences`."""
    b, d, v, h, w, c = shape
    return s.reshape(b, v, d, h, w, c).permute(0, 2, 1, 3, 4, 5)


def masked_reference_attention(attn: Attention, t: torch.Tensor, same: str) -> torch.Tensor:
    """Slow reference: full attention over every token of a batch element, ``(B, D, V, H, W, C)`` ->
    same shape, masked so a token sees only those sharing its ``same`` key: ``"row"`` (same domain,
    same row, any view), ``"pixel"`` (same view and pixel, any domain) or ``"view"`` (same view, any
    domain and pixel). Quadratic in all tokens: for tests on tiny grids."""
    b, d, v, h, w, c = t.shape
    grid = torch.meshgrid(torch.arange(d), torch.arange(v), torch.arange(h), torch.arange(w), indexing="ij")
    di, vi, hi, wi = (g.reshape(-1).to(t.device) for g in grid)
    if same == "row":
        keep = (di[:, None] == di[None]) & (hi[:, None] == hi[None])
    elif same == "pixel":
        keep = (vi[:, None] == vi[None]) & (hi[:, None] == hi[None]) & (wi[:, None] == wi[None])
    elif same == "view":
        keep = vi[:, None] == vi[None]
    else:
        raise ValueError(f"same: expected 'row', 'pixel' or 'view', got {same!r}")
    out = attn(t.reshape(b, d * v * h * w, c), mask=keep)
    return out.reshape(t.shape)
