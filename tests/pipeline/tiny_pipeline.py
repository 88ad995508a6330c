"""Tiny random weights for the pipeline components, saved as a weights folder (CPU tests)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from stdgen.models.canonical import Canonicalizer
from stdgen.models.canonical.config import tiny_config as canon_tiny
from stdgen.models.mvdiffusion import MultiViewDiffusion, MultiViewRegressor, tiny_regressor_config
from stdgen.models.mvdiffusion.config import tiny_config as mv_tiny
from stdgen.models.segment import Segmenter
from stdgen.models.segment.config import tiny_config as seg_tiny
from stdgen.models.slrm import SLRM, SLRMConfig
from stdgen.pipeline import PipelineConfig


def tiny_models(seed: int = 0) -> dict:
    torch.manual_seed(seed)
    slrm = SLRM(SLRMConfig.tiny())
    with torch.no_grad():
        for decoder, bias in ((slrm.sdf_decoder, [0.0]), (slrm.sem_decoder, [4.0, 0.0, 0.0])):
            last = [m for m in decoder.modules() if isinstance(m, torch.nn.Linear)][-1]
            last.weight.mul_(0.01)
            last.bias.copy_(torch.tensor(bias))
    # Random decoders would scatter the field into crumbs: nearly silence them, so the SDF is the
    # prior's sphere (radius 0.5) and its class the body: one clean body to refine and texture.
    # Two sampler steps without guidance: the pipeline's plumbing is under test, not the sampler's.
    fast = {"default_steps": 2, "default_guidance": 1.0}
    return {"segment": Segmenter(seg_tiny()), "canon": Canonicalizer(dataclasses.replace(canon_tiny(), **fast)),
            "mvdiff": MultiViewDiffusion(dataclasses.replace(mv_tiny(), **fast)), "slrm": slrm,
            "mvreg": MultiViewRegressor(tiny_regressor_config())}


def save_tiny_weights(folder: Path, seed: int = 0) -> Path:
    for name, model in tiny_models(seed).items():
        model.save_pretrained(folder / name)
    return folder


def tiny_config() -> PipelineConfig:
    return PipelineConfig(input_size=64, multiview_resolution=16, multiview_steps=2, grid_resolution=24,
                          refine_resolution=32, refine_steps=(2, 2, 2), texture_size=32, preview_size=32,
                          turntable_frames=2, front_warp_steps=3)


def figure_picture(h: int = 96, w: int = 64, alpha: bool = True, seed: int = 0) -> np.ndarray:
    """A coloured A-shaped figure (head, trunk, arms, legs) on transparent (or white) ground, uint8."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    cx = w / 2
    head = (x - cx) ** 2 + (y - 0.15 * h) ** 2 < (0.09 * h) ** 2
    trunk = (abs(x - cx) < 0.12 * w) & (y > 0.22 * h) & (y < 0.6 * h)
    arms = (abs(y - 0.25 * h - 0.35 * abs(x - cx)) < 0.03 * h) & (abs(x - cx) < 0.42 * w)
    legs = (abs(abs(x - cx) - 0.07 * w) < 0.04 * w) & (y >= 0.6 * h) & (y < 0.95 * h)
    fig = head | trunk | arms | legs
    rgb = np.clip(rng.uniform(0.2, 0.8, 3) + 0.1 * np.sin(y / 5)[..., None], 0, 1)
    rgb = np.where(fig[..., None], rgb, 1.0)
    out = (rgb * 255 + 0.5).astype(np.uint8)
    if alpha:
        out = np.concatenate([out, (fig * 255).astype(np.uint8)[..., None]], 2)
    return out
