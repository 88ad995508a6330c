"""A RenderStream-like batch for the multi-view tasks' tests (no rendering)."""

from __future__ import annotations

import torch


def fake_stream_batch(b: int = 2, res: int = 16, seed: int = 0) -> dict:
    """One box-shaped figure in six views: random colours and unit normals inside it, white / zero
    outside; ``lit`` a darker copy of ``rgb``, ``depth`` about 2."""
    g = torch.Generator().manual_seed(seed)
    alpha = torch.zeros(b, 1, 6, 1, res, res)
    alpha[..., res // 4: 3 * res // 4, res // 3: 2 * res // 3] = 1.0
    n = torch.nn.functional.normalize(torch.randn(b, 1, 6, 3, res, res, generator=g), dim=3) * alpha
    rgb = torch.rand(b, 1, 6, 3, res, res, generator=g) * alpha + (1 - alpha)
    lit = (rgb * 0.8).clamp(0, 1) * alpha + (1 - alpha)
    depth = (2.0 + torch.rand(b, 1, 6, 1, res, res, generator=g) * 0.1) * alpha
    return {"rgb": rgb, "lit": lit, "normal": n, "alpha": alpha, "depth": depth}
