"""Figure segmentation for preprocessing: an RGB picture -> the figure's alpha, with no downloads.

    model = Segmenter.from_pretrained(weights_dir)
    alpha = model.predict(image)        # (H, W, 3) uint8 or float in [0, 1] -> (H, W) float in [0, 1]

A small U-Net (plain 3x3 convolutions, GroupNorm, SiLU; ~1.1 M parameters in ``small_config``)
predicting alpha logits ``(B, 1, R, R)`` from ``(B, 3, R, R)`` colour at a working resolution ``R``;
:meth:`~.Segmenter.predict` pads a picture to a square, resizes it to ``R`` and resizes the alpha
back. Trained by ``stdgen train segment`` on procedural renders over synthetic backgrounds.

Attributes load lazily (importing this package imports no torch).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "SegmenterConfig": "config", "small_config": "config", "tiny_config": "config", "paper_config": "config",
    "Segmenter": "model", "SegmenterOutput": "model",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
