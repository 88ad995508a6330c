"""The evaluation suite: the paper's Table 1 protocol, geometry and decomposition metrics.

Python API (the same functions ``stdgen eval`` uses):

- :func:`view_metrics` / :func:`nanmean_metrics`: SSIM, PSNR, masked variants, silhouette IoU,
  normal angle error, part IoU, semantic accuracy, LPIPS of a batch of views (torch, any device),
  optionally after horizontal mask registration; what training calls on a validation batch.
- :func:`character_geometry_metrics`, :func:`mesh_metrics`, :func:`chamfer_distance`,
  :func:`fscore`: Chamfer / F-score / normal consistency (in units of the true height).
- :func:`evaluate_character`, :func:`evaluate_dataset`, :func:`evaluate_input_view`,
  :func:`evaluate_pictures`: the whole protocol on folders; :func:`write_report`.

Submodules: ``image``, ``registration``, ``decomposition``, ``perceptual``, ``protocol``,
``report``, ``cli``; the geometry metrics live in :mod:`stdgen.geometry.metrics` (refinement
uses them too) and are re-exported here. Attributes load lazily so ``stdgen --help`` stays fast.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "view_metrics": "protocol", "nanmean_metrics": "protocol", "evaluate_character": "protocol",
    "evaluate_dataset": "protocol", "evaluate_input_view": "protocol", "evaluate_pictures": "protocol",
    "EvalConfig": "protocol", "load_parts": "protocol", "load_character": "protocol", "render_parts": "protocol",
    "ssim": "image", "psnr": "image", "mask_iou": "image", "normal_angle_error": "image",
    "horizontal_shifts": "registration", "shift_images": "registration",
    "character_geometry_metrics": "stdgen.geometry.metrics", "mesh_metrics": "stdgen.geometry.metrics",
    "chamfer_distance": "stdgen.geometry.metrics", "fscore": "stdgen.geometry.metrics",
    "sample_surface": "stdgen.geometry.metrics", "point_metrics": "stdgen.geometry.metrics",
    "part_iou": "decomposition", "part_ious": "decomposition", "semantic_accuracy": "decomposition",
    "clothes_hollowness": "decomposition", "penetration": "decomposition", "layer_penetration": "decomposition",
    "PerceptualModels": "perceptual", "load_lpips": "perceptual", "load_inception": "perceptual",
    "load_clip": "perceptual", "fid": "perceptual", "frechet_distance": "perceptual",
    "write_report": "report",
}  # fmt: skip

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        module = _EXPORTS[name]
        return getattr(importlib.import_module(module if "." in module else f"stdgen.eval.{module}"), name)
    raise AttributeError(f"module 'stdgen.eval' has no attribute {name!r}")
