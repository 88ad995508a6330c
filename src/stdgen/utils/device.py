"""Device selection with a clear error instead of a CUDA traceback."""

from __future__ import annotations

import torch

from stdgen.errors import StdgenError


def resolve_device(name: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"`` -> CUDA when available, else CPU. ``"cuda"`` without a GPU is an error."""
    if name is None or str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise StdgenError("--device cuda was asked for, but PyTorch sees no CUDA device here; use --device cpu")
    return dev
