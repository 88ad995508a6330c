"""The semantic-equivalent SDF (StdGEN Eqs. 3 and 10).

Given a field ``f`` (negative inside, positive outside) and class probabilities ``p`` over the
parts (last axis, in :class:`~stdgen.structures.semantics.Part` order), the equivalent SDF of one semantic
``s`` is

    f_s = max(f, max_{r != s} p_r - p_s)                                   (Eq. 3)

and of a kept set ``P``

    f_P = max(f, max_{s not in P} p_s - max_{s in P} p_s)                  (Eq. 10)

Its zero set keeps the original surface where ``s`` (or ``P``) wins and closes the part along
the boundary where the winning semantic changes. With ``P`` = every part, ``f_P = f``.

Both work on numpy arrays and torch tensors of any leading shape (``f`` (...), ``p`` (..., K)).

``scale`` (``lambda`` > 0) multiplies the probability term: ``max(f, lambda (...))``. Any
positive ``lambda`` gives the same sign at every sample, so the same inside/outside sets and the
same mesh topology as the paper's equations (``lambda = 1``); it only changes where the closing
surface lands between two samples. ``f`` is in metres while probability differences are in
[-1, 1], so with ``lambda = 1`` a thin outer layer (``f`` of a few millimetres under it) clips
the probability term and drags the closing surface almost a whole cell inwards; with ``lambda``
about the cell size (or the softness of the class boundary) both terms have the same units and
the closing surface lands where the classes actually change. Layer extraction uses that.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from stdgen.structures.semantics import NUM_PARTS, Part

__all__ = ["semantic_sdf", "layer_sdf"]


def _parts(parts: Iterable[Part | str | int] | Part | str) -> list[Part]:
    if isinstance(parts, Part | str):
        parts = [parts]
    out = sorted({Part.parse(p) for p in parts})
    if not out:
        raise ValueError("layer_sdf: the kept set P must name at least one part")
    return out


def _check(f, p):
    if tuple(p.shape[:-1]) != tuple(f.shape) or p.shape[-1] != NUM_PARTS:
        raise ValueError(f"semantic SDF: expected probabilities {(*tuple(f.shape), NUM_PARTS)} for a field "
                         f"of shape {tuple(f.shape)}, got {tuple(p.shape)}")


def semantic_sdf(f, p, part: Part | str, *, scale: float = 1.0):
    """Eq. 3: ``f`` (...) and ``p`` (..., K) -> the equivalent SDF (...) of one ``part``."""
    _check(f, p)
    _check_scale(scale)
    s = int(Part.parse(part))
    others = [r for r in range(NUM_PARTS) if r != s]
    if isinstance(f, torch.Tensor):
        return torch.maximum(f, scale * (p[..., others].amax(-1) - p[..., s]))
    p = np.asarray(p)
    return np.maximum(f, scale * (p[..., others].max(-1) - p[..., s]))


def layer_sdf(f, p, parts: Iterable[Part | str | int] | Part | str, *, scale: float = 1.0):
    """Eq. 10: ``f`` (...) and ``p`` (..., K) -> the equivalent SDF (...) of the kept set ``parts``."""
    _check(f, p)
    _check_scale(scale)
    kept = [int(x) for x in _parts(parts)]
    dropped = [r for r in range(NUM_PARTS) if r not in kept]
    if not dropped:
        return f
    if isinstance(f, torch.Tensor):
        return torch.maximum(f, scale * (p[..., dropped].amax(-1) - p[..., kept].amax(-1)))
    p = np.asarray(p)
    return np.maximum(f, scale * (p[..., dropped].max(-1) - p[..., kept].max(-1)))


def _check_scale(scale: float) -> None:
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
