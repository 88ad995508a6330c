"""Argument checks the picture-in, sampler-driven commands share (``multiview``, ``canonicalize``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from stdgen.errors import StdgenError


def check_picture_and_sampler(args: argparse.Namespace) -> Path:
    """``args.image`` must be a file; ``--steps`` in [1, 1000] and ``--guidance`` in [1, 20] when given.
    Returns the picture's path; a bad value is a one-line :class:`StdgenError`."""
    src = Path(args.image)
    if not src.is_file():
        raise StdgenError(f"{src}: no such file")
    if args.steps is not None and not 1 <= args.steps <= 1000:
        raise StdgenError(f"--steps must be between 1 and 1000, got {args.steps}")
    if args.guidance is not None and not 1.0 <= args.guidance <= 20.0:
        raise StdgenError(f"--guidance must be between 1 and 20, got {args.guidance}")
    return src
