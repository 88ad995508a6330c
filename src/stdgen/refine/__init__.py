"""Multi-layer refinement and texturing (stage 5 of the paper): body, then clothes, then hair,
guided by multi-view normal maps and masks; continuous remeshing, collision loss, dilation, the
ExplicitTarget pass, an optional image-plane warp of the finished parts onto one trusted view's
silhouette (:mod:`stdgen.refine.warp`), and UV textures baked from the views.

The library call (:mod:`stdgen.refine.core`)::

    from stdgen.refine import RefineConfig, RefineViews, refine_and_texture

    views = RefineViews(images, masks, normals, cameras, labels)  # (V, H, W, 3), (V, H, W), (V, H, W, 3)
    character = refine_and_texture({Part.BODY: body, Part.CLOTHES: clothes, Part.HAIR: hair}, views,
                                   RefineConfig(), device="cuda")

``stdgen refine`` is :func:`stdgen.refine.folder.refine_folder`, a thin wrapper over it for a
dataset character folder. Attributes load lazily so ``stdgen --help`` stays fast.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "refine_and_texture": "core", "refine_parts": "core", "RefineConfig": "core", "RefineViews": "core",
    "RefineOutput": "core", "ReportConfig": "core", "refine_folder": "folder",
    "ScheduleConfig": "schedule", "StageConfig": "schedule", "refine_character": "schedule",
    "TextureConfig": "texture", "CoarseConfig": "coarse",
    "SilhouetteWarpConfig": "warp", "warp_to_silhouette": "warp",
}  # fmt: skip

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"stdgen.refine.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'stdgen.refine' has no attribute {name!r}")
