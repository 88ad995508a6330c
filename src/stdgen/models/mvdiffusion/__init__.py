"""Multi-view diffusion (stage 2): one A-pose picture -> six orthographic views (azimuths -90, -45,
0, 45, 90, 180 at elevation 0), each as unlit RGB + alpha and a world-normal map, denoised jointly.

    model = MultiViewDiffusion.from_pretrained(find_weights("mvdiff"))
    rgba, normal = model.generate(image, seed=0)   # (6, 4, R, R), (6, 3, R, R) in [0, 1]

Pixel-space flow matching (:mod:`stdgen.models.diffusion.flow`) on a U-Net with multi-view
transformer blocks: row-wise attention across views (Era3D), cross-domain attention between a
view's RGB and normal images, cross-attention to tokens of a condition encoder trained with it, and
the condition's pixels concatenated to every view's input.
"""

from stdgen.models.mvdiffusion.config import (
    DOMAINS,
    FRONT_VIEW,
    VIEW_AZIMUTHS,
    MultiViewDiffusionConfig,
    paper_config,
    small_config,
    tiny_config,
)
from stdgen.models.mvdiffusion.model import MultiViewDiffusion, MultiViewDiffusionOutput, prepare_image, split_outputs

__all__ = ["DOMAINS", "FRONT_VIEW", "VIEW_AZIMUTHS", "MultiViewDiffusion", "MultiViewDiffusionConfig",
           "MultiViewDiffusionOutput", "paper_config", "prepare_image", "small_config", "split_outputs",
           "tiny_config"]
