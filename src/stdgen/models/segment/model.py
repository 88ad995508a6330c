"""The figure segmenter: a small U-Net, ``(B, 3, H, W)`` colour in [0, 1] -> ``(B, 1, H, W)`` alpha logits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stdgen.models.modeling import ModelMixin
from stdgen.models.segment.config import SegmenterConfig
from stdgen.utils.checks import check_tensor


@dataclass
class SegmenterOutput:
    """``logits``: ``(B, 1, H, W)`` alpha logits (``sigmoid`` gives alpha in [0, 1])."""

    logits: torch.Tensor


def _block(cin: int, cout: int, convs: int, groups: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(convs):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1), nn.GroupNorm(groups, cout), nn.SiLU()]
    return nn.Sequential(*layers)


class Segmenter(ModelMixin, nn.Module):
    """U-Net: per level a block of ``convs_per_block`` conv-GroupNorm-SiLU layers, 2x2 max pooling
    going down, bilinear upsampling and a skip concatenation coming up, a 1x1 convolution to one
    logit. Built from :class:`SegmenterConfig` only."""

    config_class = SegmenterConfig

    def __init__(self, config: SegmenterConfig):
        super().__init__(config)
        ch, k, g = config.channels, config.convs_per_block, config.norm_groups
        self.down = nn.ModuleList(_block(3 if i == 0 else ch[i - 1], ch[i], k, g) for i in range(len(ch)))
        self.up = nn.ModuleList(_block(ch[i + 1] + ch[i], ch[i], k, g) for i in range(len(ch) - 1))
        self.head = nn.Conv2d(ch[0], 1, 1)

    def forward(self, image: torch.Tensor) -> SegmenterOutput:
        """``image`` ``(B, 3, H, W)`` colour in [0, 1], ``H`` and ``W`` multiples of
        ``config.multiple`` -> :class:`SegmenterOutput` with ``(B, 1, H, W)`` logits."""
        check_tensor(image, "image", (None, 3, None, None))
        m = self.config.multiple
        if image.shape[1] != 3 or image.shape[-1] % m or image.shape[-2] % m:
            raise ValueError(f"image: expected (B, 3, H, W) with H and W multiples of {m}, got {tuple(image.shape)}")
        h = image * 2 - 1
        skips = []
        for i, block in enumerate(self.down):
            if i:
                h = F.max_pool2d(h, 2)
            h = block(h)
            skips.append(h)
        for i in reversed(range(len(self.up))):
            h = F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False)
            h = self.up[i](torch.cat([h, skips[i]], dim=1))
        return SegmenterOutput(logits=self.head(h))

    @torch.no_grad()
    def predict(self, image: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """The figure's alpha of one picture: ``image`` ``(H, W, 3)`` (or ``(H, W, 4)``, alpha ignored),
        uint8 or float in [0, 1] -> ``(H, W)`` float32 alpha in [0, 1], a numpy array for a numpy input,
        else a tensor on the input's device. The picture is padded to a square (edge pixels repeated),
        resized to ``config.resolution`` (antialiased), segmented, and the logits resized back."""
        as_numpy = isinstance(image, np.ndarray)
        x = torch.from_numpy(np.ascontiguousarray(image)) if as_numpy else image
        if x.ndim != 3 or x.shape[-1] not in (3, 4) or x.shape[0] < 1 or x.shape[1] < 1:
            raise ValueError(f"image: expected (H, W, 3) or (H, W, 4), got {tuple(x.shape)}")
        x = x[..., :3].float() / 255.0 if x.dtype == torch.uint8 else x[..., :3].float()
        param = next(self.parameters())
        x = x.to(param.device).permute(2, 0, 1)[None]  # (1, 3, H, W)
        h, w = x.shape[-2:]
        side = max(h, w)
        top, left = (side - h) // 2, (side - w) // 2
        x = F.pad(x, (left, side - w - left, top, side - h - top), mode="replicate")
        r = self.config.resolution
        x = F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False, antialias=side > r)
        logits = self(x.to(param.dtype)).logits.float()
        logits = F.interpolate(logits, size=(side, side), mode="bilinear", align_corners=False)
        alpha = torch.sigmoid(logits[0, 0, top:top + h, left:left + w])
        return alpha.cpu().numpy() if as_numpy else alpha
