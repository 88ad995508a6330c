"""Configuration of the pose-canonicalisation model and its three sizes (``paper``, ``small``, ``tiny``)."""

from __future__ import annotations

from dataclasses import dataclass

from stdgen.models.diffusion.checks import check_unet_fields
from stdgen.models.diffusion.flow import PREDICTIONS
from stdgen.models.modeling import ModelConfig


@dataclass(frozen=True)
class CanonicalizerConfig(ModelConfig):
    """The denoiser / ReferenceNet shape (the two are the same U-Net), the reference encoder, the
    A-pose check and the sampling defaults.

    ``resolution``: default image side (fully convolutional: any multiple of ``patch_size * 2 **
    (levels - 1)`` works); ``patch_size``: pixel blocks folded into channels (2 quarters the cost of
    the full-resolution level); ``channels``: U-Net width per level; ``layers_per_block``: residual
    blocks per level going down (one more up); ``attention_levels``: levels with reference-attention
    transformer blocks (the middle block always has one); ``head_dim``: attention head width (must
    divide the widths of the attention levels and the last level); ``norm_groups``: GroupNorm groups
    (divides every width); ``temb_dim``: time embedding width; ``encoder_channels`` /
    ``context_tokens`` / ``context_dim``: the reference's global encoder (stride-2 widths, a
    ``context_tokens ** 2`` token grid of width ``context_dim`` for cross-attention, and a pooled
    embedding added to the time embedding); ``check_resolution`` / ``check_channels``: the A-pose
    check's input side and stride-2 widths; ``check_threshold``: the probability above which
    :meth:`~.Canonicalizer.is_a_pose` says yes; ``shift``: flow-matching time shift at
    ``resolution`` (>= 1); ``default_steps`` / ``default_guidance``: sampling defaults; ``prediction``: what the network
    outputs, the velocity ("v") or the clean image ("x"; see :mod:`stdgen.models.diffusion.flow`);
    ``concat_reference``: also give the denoiser the reference's pixels, re-framed as the dataset frames
    an A-pose front (figure height 91 %, centred), as four more input channels (Zero123's image
    concatenation beside the ReferenceNet: the posed figure's torso, legs and head then lie near where
    the A-pose output draws them, so colours are a local copy instead of an attention lookup).
    """

    resolution: int = 128
    patch_size: int = 2
    channels: tuple[int, ...] = (48, 96, 128, 192)
    layers_per_block: int = 1
    attention_levels: tuple[bool, ...] = (False, True, True, True)
    head_dim: int = 32
    norm_groups: int = 16
    temb_dim: int = 256
    encoder_channels: tuple[int, ...] = (32, 64, 128, 256)
    context_tokens: int = 4
    context_dim: int = 256
    check_resolution: int = 64
    check_channels: tuple[int, ...] = (16, 32, 64, 128)
    check_threshold: float = 0.5
    shift: float = 2.0
    default_steps: int = 20
    default_guidance: float = 1.0
    prediction: str = "v"
    concat_reference: bool = False

    def __post_init__(self) -> None:
        # JSON gives lists: keep the tuple fields tuples (hashable, comparable with the presets).
        for name in ("channels", "attention_levels", "encoder_channels", "check_channels"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        check_unet_fields(self)
        for name in ("encoder_channels", "check_channels"):
            v = getattr(self, name)
            if not v or any(c < 1 for c in v):
                raise ValueError(f"{name}: expected a non-empty tuple of positive widths, got {v}")
        for name in ("temb_dim", "context_tokens", "context_dim", "default_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if self.check_resolution < 2 ** len(self.check_channels):
            raise ValueError(f"check_resolution: expected >= {2 ** len(self.check_channels)} (one pixel after "
                             f"{len(self.check_channels)} stride-2 layers), got {self.check_resolution}")
        if not 0.0 < self.check_threshold < 1.0:
            raise ValueError(f"check_threshold: expected a probability in (0, 1), got {self.check_threshold}")
        if not self.shift >= 1:
            raise ValueError(f"shift: expected >= 1, got {self.shift}")
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"prediction: expected one of {PREDICTIONS}, got {self.prediction!r}")
        if not self.default_guidance >= 1:
            raise ValueError(f"default_guidance: expected >= 1 (1 = no guidance), got {self.default_guidance}")


def paper_config() -> CanonicalizerConfig:
    """A paper-scale denoiser + ReferenceNet (SD-like widths at 512 px; built and forward-tested, never
    trained here)."""
    return CanonicalizerConfig(resolution=512, patch_size=1, channels=(128, 256, 512, 512), layers_per_block=2,
                               attention_levels=(False, True, True, True), head_dim=64, norm_groups=32, temb_dim=512,
                               encoder_channels=(64, 128, 256, 512), context_tokens=16, context_dim=768,
                               check_resolution=128, check_channels=(32, 64, 128, 256, 256), shift=3.0,
                               default_steps=30, default_guidance=2.0)


def small_config() -> CanonicalizerConfig:
    """The size to train and bundle here: 128 px, 10.7 M parameters (denoiser + ReferenceNet +
    encoder + check; ~21 MB in fp16, ~11 MB in int8); ~0.3 s per denoising step on the 2-core CPU."""
    return CanonicalizerConfig(channels=(32, 64, 96, 128), encoder_channels=(16, 32, 64, 128), temb_dim=128,
                               context_dim=128, prediction="x", concat_reference=True)


def tiny_config() -> CanonicalizerConfig:
    """A few-thousand-parameter model for CPU tests."""
    return CanonicalizerConfig(resolution=16, patch_size=2, channels=(16, 32), layers_per_block=1,
                               attention_levels=(True, True), head_dim=8, norm_groups=8, temb_dim=32,
                               encoder_channels=(8, 16), context_tokens=2, context_dim=16, check_resolution=16,
                               check_channels=(8, 16), default_steps=4, default_guidance=2.0)
