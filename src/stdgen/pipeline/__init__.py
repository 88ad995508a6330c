"""One picture in, a layered 3D character out: the stages composed (issue 16).

So far: :mod:`stdgen.pipeline.preprocess`, which turns a user's picture into the models' input:

    rgba = preprocess_image(image, size=256, segmenter=seg)   # (H, W, 3|4) -> (256, 256, 4) float32
    alpha = alpha_of(image, mask=None, segmenter=seg)         # (H, W) float32 in [0, 1]
    rgba = frame_figure(rgba_of(image, alpha), 256)           # centred, figure 91 % of the height

This package may import ``io``, ``models``, ``render``, ``structures``, ``utils`` and ``geometry``,
never ``train`` or ``data`` (import-linter holds it). Nothing here draws progress bars.
"""

import importlib

_EXPORTS = {
    "StdGENPipeline": "pipeline", "GenerateOutput": "pipeline", "PipelineConfig": "pipeline", "STAGES": "pipeline",
    "save_output": "outputs", "output_files": "outputs",
}  # fmt: skip

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    # Lazy: ``stdgen.pipeline.preprocess`` users (and ``stdgen --help``) do not import torch through here.
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"stdgen.pipeline.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'stdgen.pipeline' has no attribute {name!r}")
