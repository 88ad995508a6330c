"""Config checks the diffusion toolkit's networks share (plain Python, used in their ``__post_init__``)."""

from __future__ import annotations

__all__ = ["check_unet_fields"]


def check_unet_fields(cfg) -> None:
    """The checks every U-Net config of the toolkit shares (``channels``, ``attention_levels``,
    ``patch_size``, ``resolution``, ``layers_per_block``, ``norm_groups``, ``head_dim``): raises
    ``ValueError`` naming the field, the value and the rule."""
    levels = len(cfg.channels)
    if levels < 1 or any(c < 1 for c in cfg.channels):
        raise ValueError(f"channels: expected a non-empty tuple of positive widths, got {cfg.channels}")
    if len(cfg.attention_levels) != levels:
        raise ValueError(f"attention_levels: expected {levels} flags (one per level of channels), "
                         f"got {len(cfg.attention_levels)}")
    if cfg.patch_size not in (1, 2, 4):
        raise ValueError(f"patch_size: expected 1, 2 or 4, got {cfg.patch_size}")
    step = cfg.patch_size * 2 ** (levels - 1)
    if cfg.resolution < step or cfg.resolution % step:
        raise ValueError(f"resolution: expected a positive multiple of {step}, got {cfg.resolution}")
    if cfg.layers_per_block < 1:
        raise ValueError(f"layers_per_block: expected >= 1, got {cfg.layers_per_block}")
    for c in cfg.channels:
        if c % cfg.norm_groups:
            raise ValueError(f"norm_groups: {cfg.norm_groups} must divide every width of channels {cfg.channels}")
    for c, attn in zip(cfg.channels, cfg.attention_levels[:-1] + (True,)):
        if attn and c % cfg.head_dim:
            raise ValueError(f"head_dim: {cfg.head_dim} must divide the width of every attention level "
                             f"(and the last) of channels {cfg.channels}")
