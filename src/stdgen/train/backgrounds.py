"""Synthetic backgrounds for the segmenter's training pictures, made on the images' device.

:func:`synthetic_backgrounds` returns ``(N, 3, S, S)`` colour in [0, 1], one of :data:`KINDS` per
image: plain colours (a third of them white), linear and radial gradients, multi-scale value noise,
stripes, checks, soft blobs with film grain, and clutter (random discs, boxes and bars over a gradient: edges and shapes
the network must learn are not the figure). The kind of each image is chosen on the host
(:func:`random_kinds`), so nothing waits on the device; the parameters come from ``generator``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

#: The background kinds, by index.
KINDS: tuple[str, ...] = ("solid", "linear", "radial", "noise", "stripes", "checks", "blobs", "clutter")


def random_kinds(n: int, rng: np.random.Generator) -> list[int]:
    """``n`` kind indices into :data:`KINDS`, uniformly at random."""
    return [int(k) for k in rng.integers(len(KINDS), size=n)]


def _rand(shape, device, generator, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, device=device, generator=generator)


def _colours(n: int, device, generator) -> torch.Tensor:
    """``(n, 3, 1, 1)`` random colours; a quarter are greys (paper, walls, studio backdrops)."""
    c = _rand((n, 3, 1, 1), device, generator)
    grey = (_rand((n, 1, 1, 1), device, generator) < 0.25).to(c.dtype)
    return grey * c[:, :1] + (1 - grey) * c


def _coords(n: int, size: int, device, generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n, 1, S, S)`` pixel-centre coordinates in [-1, 1], rotated by a random angle per image."""
    t = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size * 2 - 1
    y, x = torch.meshgrid(t, t, indexing="ij")
    a = _rand((n, 1, 1, 1), device, generator, 0, math.pi)
    return x * torch.cos(a) - y * torch.sin(a), x * torch.sin(a) + y * torch.cos(a)


def _mix(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return a * (1 - t) + b * t


def _noise(n: int, size: int, device, generator, cells: Sequence[int], channels: int = 3) -> torch.Tensor:
    """Value noise: random grids of ``cells`` sides upsampled (bicubic) and summed with weights
    halving per octave -> ``(n, channels, S, S)`` in [0, 1]."""
    out = torch.zeros(n, channels, size, size, device=device)
    total = 0.0
    for i, c in enumerate(cells):
        w = 0.5 ** i
        grid = torch.rand(n, channels, c, c, device=device, generator=generator)
        out += w * F.interpolate(grid, size=(size, size), mode="bicubic", align_corners=False)
        total += w
    return (out / total).clamp(0, 1)


def _make(kind: str, n: int, size: int, device, generator) -> torch.Tensor:
    c0, c1 = _colours(n, device, generator), _colours(n, device, generator)
    if kind == "solid":
        # A third pure white: the commonest background of illustrations and of our own renders.
        white = (_rand((n, 1, 1, 1), device, generator) < 1 / 3).to(c0.dtype)
        return (white + (1 - white) * c0).expand(n, 3, size, size)
    x, y = _coords(n, size, device, generator)
    if kind == "linear":
        return _mix(c0, c1, (x + 1) / 2)
    if kind == "radial":
        cx, cy = _rand((n, 1, 1, 1), device, generator, -0.5, 0.5), _rand((n, 1, 1, 1), device, generator, -0.5, 0.5)
        r = ((x - cx).square() + (y - cy).square()).sqrt()
        return _mix(c0, c1, (r / 1.5).clamp(0, 1))
    if kind == "noise":
        # Coloured noise, tinted towards the two colours (contrast varies with their distance).
        v = _noise(n, size, device, generator, (4, 8, 16, 32, 64))
        return _mix(c0, c1, v)
    if kind in ("stripes", "checks"):
        freq = _rand((n, 1, 1, 1), device, generator, 2.0, 24.0)
        soft = _rand((n, 1, 1, 1), device, generator, 0.02, 0.6)  # 0.02 hard edges .. 0.6 nearly sinusoidal
        sx = torch.sin(math.pi * freq * x)
        t = sx if kind == "stripes" else sx * torch.sin(math.pi * freq * y)
        return _mix(c0, c1, (0.5 + 0.5 * (t / soft).clamp(-1, 1)))
    if kind == "blobs":
        cells = (3, 6) if size >= 32 else (2,)
        v = _noise(n, size, device, generator, cells, channels=1)
        v = ((v - 0.5) * _rand((n, 1, 1, 1), device, generator, 2, 6) + 0.5).clamp(0, 1)
        grain = _rand((n, 1, 1, 1), device, generator, 0, 0.12) * (torch.rand(n, 3, size, size, device=device,
                                                                                generator=generator) - 0.5)
        return (_mix(c0, c1, v) + grain).clamp(0, 1)
    if kind == "clutter":
        out = _mix(c0, c1, (x + 1) / 2)
        shapes = 12
        t = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size * 2 - 1
        py, px = torch.meshgrid(t, t, indexing="ij")
        for _ in range(shapes):
            col = _colours(n, device, generator)
            cx, cy = _rand((n, 1, 1, 1), device, generator, -1, 1), _rand((n, 1, 1, 1), device, generator, -1, 1)
            rx, ry = _rand((n, 1, 1, 1), device, generator, 0.03, 0.5), _rand((n, 1, 1, 1), device, generator,
                                                                              0.03, 0.5)
            which = _rand((n, 1, 1, 1), device, generator)
            dx, dy = (px - cx) / rx, (py - cy) / ry
            disc = (dx.square() + dy.square()) <= 1
            box = (dx.abs() <= 1) & (dy.abs() <= 1)
            bar = (dx.abs() <= 4) & (dy.abs() <= 0.15)  # long thin shapes: poles, edges of furniture
            m = torch.where(which < 0.4, disc, torch.where(which < 0.8, box, bar)).to(out.dtype)
            out = _mix(out, col, m)
        return out
    raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")


def synthetic_backgrounds(kinds: Sequence[int], size: int, *, device: str | torch.device = "cpu",
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """``(len(kinds), 3, size, size)`` float32 backgrounds in [0, 1]: image ``i`` of kind
    ``KINDS[kinds[i]]``. ``generator`` (on ``device``) seeds the parameters."""
    if size < 1:
        raise ValueError(f"size: expected >= 1, got {size}")
    kinds = [int(k) for k in kinds]
    bad = [k for k in kinds if not 0 <= k < len(KINDS)]
    if bad:
        raise ValueError(f"kinds: expected indices in [0, {len(KINDS)}), got {bad[:5]}")
    out = torch.empty(len(kinds), 3, size, size, device=device)
    for k in sorted(set(kinds)):
        idx = [i for i, kk in enumerate(kinds) if kk == k]
        out[torch.tensor(idx, device=device)] = _make(KINDS[k], len(idx), size, device, generator)
    return out.clamp_(0, 1)
