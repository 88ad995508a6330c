"""Configuration of the figure segmenter and its sizes (``small`` = ``paper``, ``tiny``)."""

from __future__ import annotations

from dataclasses import dataclass

from stdgen.models.modeling import ModelConfig


@dataclass(frozen=True)
class SegmenterConfig(ModelConfig):
    """The U-Net's shape.

    ``resolution``: working image side of :meth:`~.Segmenter.predict` (the network is fully
    convolutional; ``forward`` takes any side that is a multiple of ``2 ** (len(channels) - 1)``);
    ``channels``: width per level (level 0 full resolution, each next level half the side);
    ``convs_per_block``: 3x3 convolutions per level going down and per level coming up;
    ``norm_groups``: GroupNorm groups (must divide every width).
    """

    resolution: int = 256
    channels: tuple[int, ...] = (24, 48, 96, 192)
    convs_per_block: int = 2
    norm_groups: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(self.channels))  # JSON gives lists
        if not self.channels or any(c < 1 for c in self.channels):
            raise ValueError(f"channels: expected a non-empty tuple of positive widths, got {self.channels}")
        if self.norm_groups < 1 or any(c % self.norm_groups for c in self.channels):
            raise ValueError(f"norm_groups: {self.norm_groups} must be >= 1 and divide every width of channels "
                             f"{self.channels}")
        if self.convs_per_block < 1:
            raise ValueError(f"convs_per_block: expected >= 1, got {self.convs_per_block}")
        step = 2 ** (len(self.channels) - 1)
        if self.resolution < step or self.resolution % step:
            raise ValueError(f"resolution: expected a positive multiple of {step} (2 ** (levels - 1)), "
                             f"got {self.resolution}")

    @property
    def multiple(self) -> int:
        """Image sides ``forward`` accepts are multiples of this."""
        return 2 ** (len(self.channels) - 1)


def small_config() -> SegmenterConfig:
    """The size to train and bundle: 1.1 M parameters, 256 px working resolution."""
    return SegmenterConfig()


def paper_config() -> SegmenterConfig:
    """The paper has no segmenter of its own (it assumes clean inputs): the same as :func:`small_config`."""
    return small_config()


def tiny_config() -> SegmenterConfig:
    """A few-thousand-parameter model for CPU tests."""
    return SegmenterConfig(resolution=32, channels=(8, 16), convs_per_block=1, norm_groups=4)
