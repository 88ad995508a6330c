"""Multi-view diffusion (stage 2): one A-pose picture -> six orthographic views (azimuths -90, -45,
0, 45, 90, 180 at elevation 0), each as unlit RGB + alpha and a world-normal map, denoised jointly.

    model = MultiViewDiffusion.from_pretrained(find_weights("mvdiff"))
    rgba, normal = model.generate(image, seed=0)   # (6, 4, R, R), (6, 3, R, R) in [0, 1]

``MultiViewRegressor`` (:mod:`.regressor`) predicts the views' conditional mean in one forward: alone,
or as the start the diffusion sampler refines (``MultiViewDiffusion.sample(..., init=mean)``).

Pixel-space flow matching (:mod:`stdgen.models.diffusion.flow`) on a U-Net with multi-view
transformer blocks: row-wise attention across views (Era3D), cross-domain attention between a
view's RGB and normal images, cross-attention to tokens of a condition encoder trained with it, and
the condition's pixels concatenated to every view's input.

Attributes load lazily (``stdgen --help`` registers this package's CLI without importing torch).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "DOMAINS": "config", "FRONT_VIEW": "config", "VIEW_AZIMUTHS": "config", "MultiViewDiffusionConfig": "config",
    "paper_config": "config", "small_config": "config", "tiny_config": "config",
    "MultiViewDiffusion": "model", "MultiViewDiffusionOutput": "model", "prepare_image": "model",
    "split_outputs": "model",
    "MultiViewRegressor": "regressor", "MultiViewRegressorConfig": "regressor",
    "small_regressor_config": "regressor", "tiny_regressor_config": "regressor",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
