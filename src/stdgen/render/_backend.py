"""Registry of the fast implementations of the rasteriser's differentiable ops.

A fast-path module (``_numba`` for the CPU, ``_triton`` for CUDA) registers, under its backend
name, the devices it serves and its versions of some of the ops ``rasterize`` (visibility and
barycentrics fused), ``barycentrics``, ``interpolate`` and ``antialias``. The public functions ask
:func:`pick` and fall back to their plain PyTorch reference where it returns ``None``.

``backend`` arguments: ``"auto"`` takes the first registered fast path serving the tensor's
device; ``"torch"`` the reference; a backend name that backend where it serves the device (else
the reference, so ``rasterize(..., backend="numba")`` on CUDA tensors still works: numba
visibility, reference differentiable ops).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch

_MODULES = ("stdgen.render._numba", "stdgen.render._triton")
_REGISTRY: dict[str, tuple[frozenset[str], dict[str, Callable]]] = {}
_PREFERENCE = {"cpu": ("numba", "triton"), "cuda": ("triton",)}
_load_errors: dict[str, str] = {}
_loaded = False


def register(name: str, devices: str | tuple[str, ...], **ops: Callable) -> None:
    """Register backend ``name`` serving the device types ``devices`` with the given ops."""
    devs = frozenset((devices,) if isinstance(devices, str) else devices)
    _REGISTRY[name] = (devs, dict(ops))


def load() -> None:
    """Import the optional fast-path modules once; a missing library leaves the reference alone."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in _MODULES:
        try:
            importlib.import_module(mod)
        except ImportError as exc:  # numba or triton not installed: the reference serves
            _load_errors[mod] = str(exc)


def available() -> dict[str, tuple[str, ...]]:
    """Registered fast backends and the device types they serve."""
    load()
    return {name: tuple(sorted(devs)) for name, (devs, _) in _REGISTRY.items()}


def pick(op: str, backend: str, device: torch.device) -> Callable | None:
    """The fast implementation of ``op`` for ``backend`` on ``device``, or ``None`` for the reference."""
    if backend == "torch":
        return None
    load()
    dev = torch.device(device).type
    if backend == "auto":
        for name in _PREFERENCE.get(dev, ()):
            entry = _REGISTRY.get(name)
            if entry is not None and dev in entry[0] and op in entry[1]:
                return entry[1][op]
        return None
    if backend not in _REGISTRY:
        return None  # a visibility-only backend name: the caller has checked it exists
    devs, ops = _REGISTRY[backend]
    return ops.get(op) if dev in devs else None


def check_name(backend: str) -> None:
    """Raise ``ValueError`` for a backend name that is neither built in nor registered."""
    from stdgen.render.rasterize import VISIBILITY_BACKENDS

    load()
    if backend in ("auto", "torch") or backend in _REGISTRY or backend in VISIBILITY_BACKENDS:
        return
    known = ", ".join(["auto", "torch", *sorted(set(_REGISTRY) | set(VISIBILITY_BACKENDS) - {"torch"})])
    why = "".join(f"; {m} did not load: {e}" for m, e in _load_errors.items())
    raise ValueError(f"unknown rasteriser backend {backend!r}; available here: {known}{why}")
