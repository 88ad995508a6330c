"""The diffusion toolkit shared by the image models (multi-view generation, canonicalisation).

- :mod:`.attention`: :class:`Attention` (``(N, L, C)`` over itself or a context, on
  ``scaled_dot_product_attention``), :class:`FeedForward`, and the token regroupings for multi-view
  grids ``(B, D, V, H, W, C)``: rows across views, pixels across domains, whole views; plus the
  masked full-attention reference the tests check them against.
- :mod:`.unet`: :class:`UNetBackbone`, a pixel-space U-Net of diffusers ``ResnetBlock2D`` /
  ``Downsample2D`` / ``Upsample2D`` with pluggable attention modules, and :class:`TimeEmbedding`.
- :mod:`.flow`: :class:`FlowMatching`, the rectified-flow objective (``x = (1 - s) x0 + s eps``,
  target ``eps - x0``) and a seeded Euler sampler around ``FlowMatchEulerDiscreteScheduler``;
  :func:`guided` for classifier-free guidance.
- :mod:`.encoder`: :class:`ImageEncoder`, a picture -> cross-attention tokens + a global embedding.
- :mod:`.checks`: :func:`check_unet_fields`, the U-Net config checks every network's config runs.
"""

from stdgen.models.diffusion.attention import Attention, FeedForward
from stdgen.models.diffusion.encoder import ImageEncoder
from stdgen.models.diffusion.flow import FlowMatching, guided
from stdgen.models.diffusion.unet import TimeEmbedding, UNetBackbone

__all__ = ["Attention", "FeedForward", "FlowMatching", "guided", "ImageEncoder", "TimeEmbedding", "UNetBackbone"]
