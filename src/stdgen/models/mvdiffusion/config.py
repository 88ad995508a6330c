"""Configuration of the multi-view diffusion model and its three sizes (``paper``, ``small``, ``tiny``)."""

from __future__ import annotations

from dataclasses import dataclass

from stdgen.models.diffusion.checks import check_unet_fields
from stdgen.models.diffusion.flow import PREDICTIONS
from stdgen.models.modeling import ModelConfig

#: Azimuths (degrees) of the six generated views, in the dataset's tile order.
VIEW_AZIMUTHS: tuple[float, ...] = (-90.0, -45.0, 0.0, 45.0, 90.0, 180.0)
#: The two domains denoised jointly; each image has 4 channels: RGB + alpha, normal xyz + alpha.
DOMAINS: tuple[str, ...] = ("rgb", "normal")
#: Index of the front view (azimuth 0) among :data:`VIEW_AZIMUTHS`.
FRONT_VIEW = 2


@dataclass(frozen=True)
class MultiViewDiffusionConfig(ModelConfig):
    """The denoiser's shape and its sampling defaults.

    ``resolution``: default image side for :meth:`~.MultiViewDiffusion.generate` (the model is fully
    convolutional; any multiple of ``patch_size * 2 ** (levels - 1)`` works). ``patch_size``: the
    U-Net runs on ``patch_size x patch_size`` pixel blocks folded into channels (pixel unshuffle in,
    pixel shuffle out): 2 quarters the cost of the full-resolution level. ``channels``: U-Net width
    per level (level 0 full resolution); ``layers_per_block``: residual blocks per level going down
    (one more up); ``attention_levels``: levels with multi-view transformer blocks (the middle block
    always has one); ``image_attention_tokens``: at levels whose H*W is at most this, the cross-
    domain attention is full attention over both domains of a view, above it only between the same
    pixel of the two domains; ``head_dim``: attention head width (must divide the attention levels'
    widths); ``norm_groups``: GroupNorm groups (must divide every width); ``temb_dim``: time / view /
    domain embedding width;
    ``encoder_channels``: the condition encoder's widths (stride 2 each); ``context_tokens``: side
    of its token grid (``context_tokens ** 2`` tokens of width ``context_dim``); ``views``: number
    of views (:data:`VIEW_AZIMUTHS`); ``shift``: flow-matching time shift at ``resolution`` (>= 1,
    more weight on high noise; scaled with the side, see :meth:`~.MultiViewDiffusion.flow`);
    ``default_steps`` / ``default_guidance``: sampling defaults; ``prediction``: what the network
    outputs, the velocity ("v") or the clean image ("x"; see :mod:`stdgen.models.diffusion.flow`);
    ``pixel_refiner``: width of a small full-resolution convolution head after the pixel shuffle
    (0 = none): with ``patch_size`` 2 every 2 x 2 pixel block comes out of one linear map of one
    feature vector, which leaves a 2-pixel checker in the samples; two 3 x 3 convolutions over the
    shuffled output and the full-resolution input, added as a residual whose last layer starts at
    zero, let neighbouring blocks agree (weights without it start a run with it unchanged).
    """

    resolution: int = 128
    patch_size: int = 2
    channels: tuple[int, ...] = (48, 96, 128, 192)
    layers_per_block: int = 1
    attention_levels: tuple[bool, ...] = (False, True, True, True)
    image_attention_tokens: int = 256
    head_dim: int = 32
    norm_groups: int = 16
    temb_dim: int = 256
    encoder_channels: tuple[int, ...] = (32, 64, 128, 256)
    context_tokens: int = 8
    context_dim: int = 256
    views: int = 6
    shift: float = 2.0
    default_steps: int = 10
    default_guidance: float = 1.0
    prediction: str = "v"
    pixel_refiner: int = 0

    def __post_init__(self) -> None:
        # JSON gives lists: keep the tuple fields tuples (hashable, comparable with the presets).
        for name in ("channels", "attention_levels", "encoder_channels"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        check_unet_fields(self)
        if not self.encoder_channels or any(c < 1 for c in self.encoder_channels):
            raise ValueError(f"encoder_channels: expected positive widths, got {self.encoder_channels}")
        for name in ("temb_dim", "context_tokens", "context_dim", "default_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if self.views != len(VIEW_AZIMUTHS):
            raise ValueError(f"views: the dataset has {len(VIEW_AZIMUTHS)} generation views, got {self.views}")
        if not self.shift >= 1:
            raise ValueError(f"shift: expected >= 1, got {self.shift}")
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"prediction: expected one of {PREDICTIONS}, got {self.prediction!r}")
        if not self.default_guidance >= 1:
            raise ValueError(f"default_guidance: expected >= 1 (1 = no guidance), got {self.default_guidance}")
        if self.image_attention_tokens < 0:
            raise ValueError(f"image_attention_tokens: expected >= 0, got {self.image_attention_tokens}")
        if self.pixel_refiner < 0:
            raise ValueError(f"pixel_refiner: expected >= 0 (0 = none), got {self.pixel_refiner}")


def paper_config() -> MultiViewDiffusionConfig:
    """A paper-scale denoiser (~ Era3D's width; built and forward-tested, never trained here)."""
    return MultiViewDiffusionConfig(resolution=512, patch_size=1, channels=(128, 256, 512, 512), layers_per_block=2,
                                    attention_levels=(False, True, True, True), image_attention_tokens=1024,
                                    head_dim=64, norm_groups=32, temb_dim=512,
                                    encoder_channels=(64, 128, 256, 512), context_tokens=16, context_dim=768,
                                    shift=3.0, default_steps=30, default_guidance=2.0)


def small_config() -> MultiViewDiffusionConfig:
    """The size trained and bundled here: 14.1 M parameters; 81 GFLOP per forward of the 12 images at
    128 px, 319 at 256 px (see the README)."""
    return MultiViewDiffusionConfig(resolution=256, shift=3.0, prediction="x")


def tiny_config() -> MultiViewDiffusionConfig:
    """A few-thousand-parameter model for CPU tests."""
    return MultiViewDiffusionConfig(resolution=16, patch_size=2, channels=(16, 32), layers_per_block=1,
                                    attention_levels=(False, True), image_attention_tokens=16, head_dim=8,
                                    norm_groups=8, temb_dim=32, encoder_channels=(8, 16), context_tokens=2,
                                    context_dim=16, default_steps=4, default_guidance=2.0)
