"""Where trained weights are found: a user folder or the copies bundled inside the package. Never downloads.

    folder = find_weights("mvdiff", weights_dir)     # -> Path holding config.json + model.safetensors
    model = MultiViewDiffusion.from_pretrained(folder, device="cuda")

Places, in order: ``weights_dir/<name>`` (the CLI's ``--weights DIR``), ``$STDGEN_WEIGHTS/<name>``, then
the bundled ``stdgen/weights/<name>/`` shipped as package data. The first folder that exists is used; it
must hold ``config.json`` and ``model.safetensors`` (a folder missing one is an error, not skipped).
"""

from __future__ import annotations

import importlib.resources
import logging
import os
from pathlib import Path

from stdgen.errors import StdgenError

logger = logging.getLogger(__name__)

#: Environment variable naming a folder of weights folders.
ENV_VAR = "STDGEN_WEIGHTS"
_FILES = ("config.json", "model.safetensors")


def bundled_dir() -> Path:
    """The package's own weights folder (``src/stdgen/weights/``)."""
    return Path(str(importlib.resources.files(__name__)))


def candidate_dirs(name: str, weights_dir: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """(where, folder) pairs searched for ``name``, in order."""
    places: list[tuple[str, Path]] = []
    if weights_dir is not None:
        places.append(("--weights", Path(weights_dir) / name))
    env = os.environ.get(ENV_VAR)
    if env:
        places.append((f"${ENV_VAR}", Path(env) / name))
    places.append(("bundled", bundled_dir() / name))
    return places


def find_weights(name: str, weights_dir: str | os.PathLike | None = None) -> Path:
    """The weights folder of model ``name`` (``"slrm"``, ``"mvdiff"``, ``"canon"``...): see the module
    docstring for the search order. Raises StdgenError listing the places looked when none exists, or naming
    the missing file when the folder found is incomplete."""
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise StdgenError(f"weights name must be a plain folder name, got {name!r}")
    places = candidate_dirs(name, weights_dir)
    for where, folder in places:
        if folder.is_dir():
            missing = [f for f in _FILES if not (folder / f).is_file()]
            if missing:
                raise StdgenError(f"{folder} ({where}): incomplete weights folder, missing {', '.join(missing)}")
            logger.info("weights %r from %s (%s)", name, folder, where)
            return folder
    looked = "; ".join(f"{folder} ({where})" for where, folder in places)
    raise StdgenError(f"no weights for {name!r}: looked in {looked}; pass --weights DIR or set ${ENV_VAR}")


def available(weights_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Every model name with a weights folder in any place (first place wins, as in find_weights)."""
    found: dict[str, Path] = {}
    roots = ([Path(weights_dir)] if weights_dir is not None else []) + (
        [Path(os.environ[ENV_VAR])] if os.environ.get(ENV_VAR) else []) + [bundled_dir()]
    for root in roots:
        if root.is_dir():
            for sub in sorted(root.iterdir()):
                if sub.is_dir() and (sub / "config.json").is_file() and sub.name not in found:
                    found[sub.name] = sub
    return found
