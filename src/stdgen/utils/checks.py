"""Argument checks at public boundaries (in the manner of kaolin's ``check_tensor``).

Each raises ``ValueError``/``TypeError`` saying what was expected and what came.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def check_tensor(
    x: object,
    name: str,
    shape: Sequence[int | None] | None = None,
    *,
    dtype: torch.dtype | Sequence[torch.dtype] | None = None,
    min_dims: int | None = None,
) -> torch.Tensor:
    """Check that ``x`` is a tensor of the given shape (``None`` matches any size) and dtype.

    ``shape`` may start with ``...``-like leniency by passing ``min_dims`` instead.
    Returns ``x`` so the call can be used inline.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if shape is not None:
        ok = x.dim() == len(shape) and all(s is None or s == d for s, d in zip(shape, x.shape))
        if not ok:
            want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{name}: expected shape {want}, got {tuple(x.shape)}")
    if min_dims is not None and x.dim() < min_dims:
        raise ValueError(f"{name}: expected at least {min_dims} dimensions, got shape {tuple(x.shape)}")
    if dtype is not None:
        allowed = (dtype,) if isinstance(dtype, torch.dtype) else tuple(dtype)
        if x.dtype not in allowed:
            names = ", ".join(str(d).replace("torch.", "") for d in allowed)
            raise TypeError(f"{name}: expected dtype {names}, got {str(x.dtype).replace('torch.', '')}")
    return x


def check_same_device(**tensors: torch.Tensor) -> torch.device:
    """All given tensors live on one device; return it."""
    devices = {k: v.device for k, v in tensors.items()}
    first = next(iter(devices.values()))
    if any(d != first for d in devices.values()):
        listing = ", ".join(f"{k} on {d}" for k, d in devices.items())
        raise ValueError(f"tensors must share a device: {listing}")
    return first
