"""Fixtures of the evaluation tests (the data they build is in ``helpers.py``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .helpers import standin_character, write_truth


@pytest.fixture(scope="session")
def truth_dir(tmp_path_factory) -> Path:
    """A dataset directory with two stand-in characters, ``a`` and ``b``."""
    root = tmp_path_factory.mktemp("truth")
    write_truth(root / "a", standin_character(1))
    write_truth(root / "b", standin_character(2))
    return root


@pytest.fixture()
def pred_root(tmp_path, truth_dir) -> Path:
    """Predictions identical to the truth: their own character.glb copied."""
    root = tmp_path / "pred"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        shutil.copy(truth_dir / name / "character.glb", root / name / "character.glb")
    return root
