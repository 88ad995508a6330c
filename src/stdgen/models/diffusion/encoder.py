"""A small convolutional image encoder for conditioning: ``(N, C, H, W)`` picture -> a grid of tokens
for cross-attention and a pooled global embedding (the role CLIP's image embedding plays in the
paper's models; trained with the denoiser here, since no pretrained weights can be downloaded)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.resnet import ResnetBlock2D
from torch import nn


class _Residual(nn.Module):
    """A diffusers residual block without a time embedding, usable in ``nn.Sequential``."""

    def __init__(self, block: ResnetBlock2D):
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x, None)


class ImageEncoder(nn.Module):
    """``(N, in_channels, H, W)`` -> ``tokens`` ``(N, grid**2, token_dim)`` and a pooled
    ``(N, global_dim)`` embedding: stride-2 convolutions each followed by a residual block, pooled to
    a ``grid x grid`` token grid, plus learned positions."""

    def __init__(self, in_channels: int, channels: tuple[int, ...], grid: int, token_dim: int, global_dim: int,
                 norm_groups: int = 8):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        groups = min(norm_groups, 8)
        for cout in channels:
            layers.append(nn.Conv2d(c, cout, 3, stride=2, padding=1))
            layers.append(_Residual(ResnetBlock2D(in_channels=cout, out_channels=cout, temb_channels=None,
                                                  groups=groups if cout % groups == 0 else 1)))
            c = cout
        self.net = nn.Sequential(*layers)
        self.grid = grid
        self.to_tokens = nn.Linear(c, token_dim)
        self.pos = nn.Parameter(torch.randn(grid * grid, token_dim) * 0.02)
        self.to_global = nn.Sequential(nn.Linear(c, global_dim), nn.SiLU(), nn.Linear(global_dim, global_dim))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.net(image)
        grid = F.adaptive_avg_pool2d(f, self.grid).flatten(2).transpose(1, 2)  # (N, T*T, C)
        return self.to_tokens(grid) + self.pos, self.to_global(f.mean(dim=(2, 3)))
