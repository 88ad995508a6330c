"""Pose canonicalisation (stage 1): a character picture in any pose -> the same character in A-pose,
RGBA, framed as the dataset frames its A-pose front (height 91 % of the image, centred).

    model = Canonicalizer.from_pretrained(find_weights("canon"))
    ok, score = model.is_a_pose(image)        # skip when the input is already in A-pose
    rgba = model.canonicalize(image, seed=0)  # (4, R, R) in [0, 1], straight alpha

A pixel-space flow-matching denoiser (:mod:`stdgen.models.diffusion`) plus a ReferenceNet of the
same shape that encodes the reference picture: at each matching transformer block its normalised
tokens are concatenated to the denoiser's as extra self-attention keys / values (Animate Anyone,
CharacterGen); the reference's global embedding feeds cross-attention and the time embedding. A
small CNN beside them (the A-pose check) predicts whether the picture is already in A-pose and the
two upper-arm angles.

Attributes load lazily (``stdgen --help`` registers the CLI without importing torch).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "CanonicalizerConfig": "config", "paper_config": "config", "small_config": "config", "tiny_config": "config",
    "Canonicalizer": "model", "CanonicalizerOutput": "model", "ReferenceBlock": "model", "PoseCheck": "model",
    "reference_attention_reference": "model", "to_straight_rgba": "model", "frame_like_dataset": "model",
    "prepare_picture": "model", "FIGURE_HEIGHT": "model",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
