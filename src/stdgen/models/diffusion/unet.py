"""A pixel-space U-Net backbone from diffusers building blocks (``ResnetBlock2D``, ``Downsample2D``,
``Upsample2D``, ``Timesteps`` / ``TimestepEmbedding``) with pluggable attention.

The backbone owns the convolutional path; the model owns what attention means. At every level
flagged in ``attention_levels`` (and in the middle block, counted as the last level) it calls
``make_attention(channels, level)`` once per residual block and applies the module as
``attn(h, context)``, where ``h`` is ``(N, C, H, W)`` and ``context`` whatever object the model
passed to :meth:`UNetBackbone.forward` (the multi-view model passes the view/domain layout and the
conditioning tokens; a single-view model could pass reference features). The module returns the
updated ``(N, C, H, W)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.resnet import Downsample2D, ResnetBlock2D, Upsample2D
from torch import nn


class TimeEmbedding(nn.Module):
    """``(N,)`` times in [0, 1] -> ``(N, dim)``: sinusoids of ``1000 t`` (the scale the diffusers
    schedulers use for timesteps), then an MLP."""

    def __init__(self, dim: int, frequencies: int = 128):
        super().__init__()
        self.proj = Timesteps(frequencies, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.mlp = TimestepEmbedding(frequencies, dim)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        emb = self.proj(t * 1000.0)
        return self.mlp(emb.to(self.mlp.linear_1.weight.dtype))


class UNetBackbone(nn.Module):
    """``(N, in_channels, H, W)`` + ``temb`` ``(N, temb_dim)`` -> ``(N, out_channels, H, W)``; H and W
    divisible by ``2 ** (len(channels) - 1)``.

    ``channels[i]`` is the width of level i (level 0 at full resolution); ``layers_per_block``
    residual blocks per level on the way down, one more on the way up (taking the skips);
    ``attention_levels[i]`` puts an attention module after each residual block of level i; the
    middle block always has one when ``make_attention`` is given.
    """

    def __init__(self, in_channels: int, out_channels: int, channels: tuple[int, ...], layers_per_block: int,
                 attention_levels: tuple[bool, ...], temb_dim: int, norm_groups: int,
                 make_attention: Callable[[int, int], nn.Module] | None = None):
        super().__init__()
        if len(attention_levels) != len(channels):
            raise ValueError("attention_levels must have one flag per level of channels")

        def res(cin: int, cout: int) -> ResnetBlock2D:
            return ResnetBlock2D(in_channels=cin, out_channels=cout, temb_channels=temb_dim, groups=norm_groups,
                                 eps=1e-5, non_linearity="silu", output_scale_factor=1.0)

        def attn(c: int, level: int, flag: bool) -> nn.Module:
            return make_attention(c, level) if flag and make_attention is not None else nn.Identity()

        self.conv_in = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        self.down_res, self.down_attn, self.downsample = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        skips = [channels[0]]
        c = channels[0]
        for i, (cout, flag) in enumerate(zip(channels, attention_levels)):
            for _ in range(layers_per_block):
                self.down_res.append(res(c, cout))
                self.down_attn.append(attn(cout, i, flag))
                c = cout
                skips.append(c)
            if i < len(channels) - 1:
                self.downsample.append(Downsample2D(c, use_conv=True, out_channels=c, padding=1))
                skips.append(c)
        self.mid_res1 = res(c, c)
        self.mid_attn = attn(c, len(channels) - 1, True)
        self.mid_res2 = res(c, c)
        self.up_res, self.up_attn, self.upsample = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(len(channels))):
            cout = channels[i]
            for _ in range(layers_per_block + 1):
                self.up_res.append(res(c + skips.pop(), cout))
                self.up_attn.append(attn(cout, i, attention_levels[i]))
                c = cout
            if i > 0:
                # The upsampling convolution runs at the finer level: give it that level's (smaller)
                # width rather than this one's, which halves its cost.
                self.upsample.append(Upsample2D(c, use_conv=True, out_channels=channels[i - 1]))
                c = channels[i - 1]
        self.norm_out = nn.GroupNorm(norm_groups, c, eps=1e-5)
        self.conv_out = nn.Conv2d(c, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)
        self.levels = len(channels)
        self.layers_per_block = layers_per_block

    @staticmethod
    def _attend(module: nn.Module, h: torch.Tensor, context: Any) -> torch.Tensor:
        return h if isinstance(module, nn.Identity) else module(h, context)

    def attention_modules(self) -> list[nn.Module]:
        """The attention modules (not the Identity placeholders) in the order :meth:`forward` calls them."""
        order = list(self.down_attn) + [self.mid_attn] + list(self.up_attn)
        return [m for m in order if not isinstance(m, nn.Identity)]

    def forward(self, x: torch.Tensor, temb: torch.Tensor, context: Any = None,
                stop_after_attention: nn.Module | None = None) -> torch.Tensor:
        """``stop_after_attention``: return the features right after that attention module has run
        (an encoder that only feeds its attention layers, like a ReferenceNet, skips the rest)."""
        h = self.conv_in(x)
        skips = [h]
        k = 0
        for i in range(self.levels):
            for _ in range(self.layers_per_block):
                h = self._attend(self.down_attn[k], self.down_res[k](h, temb), context)
                if self.down_attn[k] is stop_after_attention:
                    return h
                skips.append(h)
                k += 1
            if i < self.levels - 1:
                h = self.downsample[i](h)
                skips.append(h)
        h = self._attend(self.mid_attn, self.mid_res1(h, temb), context)
        if self.mid_attn is stop_after_attention:
            return h
        h = self.mid_res2(h, temb)
        k = 0
        for j, _ in enumerate(reversed(range(self.levels))):
            for _ in range(self.layers_per_block + 1):
                h = self.up_res[k](torch.cat([h, skips.pop()], dim=1), temb)
                h = self._attend(self.up_attn[k], h, context)
                if self.up_attn[k] is stop_after_attention:
                    return h
                k += 1
            if j < self.levels - 1:
                h = self.upsample[j](h)
        return self.conv_out(nn.functional.silu(self.norm_out(h)))
