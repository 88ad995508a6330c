"""Device selection with a clear error instead of a CUDA traceback."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from stdgen.errors import StdgenError

if TYPE_CHECKING:
    import torch

_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


def check_device(name: str | None, option: str = "--device") -> str:
    """Check a ``--device`` value up front (before any work, without importing torch): ``auto``,
    ``cpu``, ``cuda``, ``cuda:N`` or ``mps``. Returns it lower-cased; anything else is a one-line
    :class:`~stdgen.errors.StdgenError`."""
    value = "auto" if name is None else str(name).strip().lower()
    if not _DEVICE_RE.match(value):
        raise StdgenError(f"{option} {name!r}: not a device; use cpu, cuda, cuda:N or auto")
    return value


def resolve_device(name: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"`` -> CUDA when available, else CPU. ``"cuda"`` without a GPU is an error."""
    import torch

    if name is None or str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(name, torch.device):
        name = check_device(name)
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise StdgenError("--device cuda was asked for, but PyTorch sees no CUDA device here; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise StdgenError(f"--device {name}: PyTorch sees {torch.cuda.device_count()} CUDA device(s) here")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise StdgenError("--device mps was asked for, but PyTorch sees no MPS device here; use --device cpu")
    return dev
