"""Fixed seed ranges of procedural characters for training, validation and test.

Every issue evaluates on the same held-out characters: the first ``n`` seeds of ``TEST``
(``held_out_seeds(n)``). Never train on ``VALIDATION`` or ``TEST`` seeds; training code draws
seeds with :func:`train_seed`, which skips both ranges.
"""

from __future__ import annotations

VALIDATION = range(800_000, 801_000)
TEST = range(900_000, 901_000)
MAX_SEED = 2**31 - 1


def split_of(seed: int) -> str:
    """``"test"``, ``"validation"`` or ``"train"``."""
    if seed in TEST:
        return "test"
    if seed in VALIDATION:
        return "validation"
    return "train"


def held_out_seeds(count: int, split: str = "test") -> list[int]:
    """The first ``count`` seeds of the test (or validation) range."""
    r = {"test": TEST, "validation": VALIDATION}[split]
    if not 0 <= count <= len(r):
        raise ValueError(f"count must be in [0, {len(r)}], got {count}")
    return list(r[:count])


def train_seed(index: int) -> int:
    """The ``index``-th training seed: 0, 1, 2, ... skipping the validation and test ranges."""
    if index < 0:
        raise ValueError("index must be non-negative")
    seed = index
    for r in sorted((VALIDATION, TEST), key=lambda r: r.start):
        if seed >= r.start:
            seed += len(r)
    return seed
