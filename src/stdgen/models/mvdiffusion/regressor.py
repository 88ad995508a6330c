"""A deterministic multi-view predictor: the conditional mean of the six views, in one forward.

The six views of an A-posed character are nearly determined by its front picture, and the metrics
the pipeline is judged on (SSIM, silhouette IoU, normal error) reward that mean. The diffusion model
learns the mean slowly because it spends its capacity on the spread (README, "Multi-view
diffusion", diagnosis); this network learns only the mean. It is used alone, or as the start of
the diffusion sampler (:meth:`~stdgen.models.mvdiffusion.MultiViewDiffusion.sample`'s ``init``),
which then only adds detail from an intermediate noise level.

Layouts as the diffusion model's: the condition ``(B, 4, H, W)`` RGB over white + alpha in [0, 1];
the output ``(B, D, V, 4, H, W)`` in [0, 1] with D = 2 domains (RGB + alpha, normals as
``(n + 1) / 2`` + alpha; one alpha shared by both) and V = 6 views.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from stdgen.models.diffusion.attention import Attention, FeedForward
from stdgen.models.diffusion.checks import check_unet_fields
from stdgen.models.diffusion.unet import UNetBackbone
from stdgen.models.modeling import ModelConfig, ModelMixin
from stdgen.models.mvdiffusion.config import VIEW_AZIMUTHS
from stdgen.models.mvdiffusion.model import prepare_image, split_outputs
from stdgen.utils.checks import check_tensor

#: Output channels per view: RGB, alpha, normal xyz.
_PER_VIEW = 7


@dataclass(frozen=True)
class MultiViewRegressorConfig(ModelConfig):
    """``resolution``: the side it is trained and run at by default (fully convolutional: any
    multiple of ``patch_size * 2 ** (levels - 1)`` runs). ``patch_size``: pixel blocks folded into
    channels (1: the U-Net's first level at full resolution). ``channels`` / ``layers_per_block`` /
    ``norm_groups``: the U-Net's widths per level, residual blocks per level, GroupNorm groups.
    ``attention_levels``: levels with a self-attention block over the whole feature map after each
    residual block (the middle block always has one): the side views' widths are read from the
    whole front, which a convolution's receptive field reaches only at the lowest levels.
    ``head_dim``: attention head width. ``temb_dim``: width of the learned global embedding the
    residual blocks take in place of a time embedding. ``views``: the six generation views."""

    resolution: int = 128
    patch_size: int = 1
    channels: tuple[int, ...] = (48, 96, 128, 160, 160)
    layers_per_block: int = 1
    attention_levels: tuple[bool, ...] = (False, False, False, False, False)
    head_dim: int = 32
    norm_groups: int = 16
    temb_dim: int = 64
    views: int = 6

    def __post_init__(self) -> None:
        for name in ("channels", "attention_levels"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        check_unet_fields(self)
        if self.temb_dim < 1:
            raise ValueError(f"temb_dim: expected >= 1, got {self.temb_dim}")
        if self.views != len(VIEW_AZIMUTHS):
            raise ValueError(f"views: the dataset has {len(VIEW_AZIMUTHS)} generation views, got {self.views}")


def small_regressor_config() -> MultiViewRegressorConfig:
    """The size trained and bundled here (8.2 M parameters, int8 ≈ 8 MB; five levels, so the
    middle block's attention sees the whole picture at 8 x 8 from 128 px)."""
    return MultiViewRegressorConfig()


def tiny_regressor_config() -> MultiViewRegressorConfig:
    """A small model for CPU tests."""
    return MultiViewRegressorConfig(resolution=16, channels=(16, 32), layers_per_block=1,
                                    attention_levels=(False, True), head_dim=8, norm_groups=8, temb_dim=16)


class SelfAttentionBlock(nn.Module):
    """Pre-LayerNorm self-attention over all ``H W`` positions of ``(N, C, H, W)`` features, then a
    GELU MLP, both residual (the U-Net calls it as ``block(h, context)``; ``context`` unused)."""

    def __init__(self, dim: int, head_dim: int):
        super().__init__()
        self.norm_attn, self.norm_ff = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, dim // head_dim)
        self.ff = FeedForward(dim)

    def forward(self, h: torch.Tensor, context=None) -> torch.Tensor:
        n, c, height, width = h.shape
        t = h.flatten(2).transpose(1, 2)  # (N, HW, C)
        t = t + self.attn(self.norm_attn(t))
        t = t + self.ff(self.norm_ff(t))
        return t.transpose(1, 2).reshape(n, c, height, width)


class MultiViewRegressor(ModelMixin, nn.Module):
    """``forward(cond)``: ``(B, 4, H, W)`` condition in [0, 1] -> ``(B, D, V, 4, H, W)`` views, in
    [0, 1] once trained but not clamped (training sees the unclamped values; :meth:`sample` clamps).
    The six views are output channels of one U-Net over the front picture: every view sees the whole
    picture through the lowest levels."""

    config_class = MultiViewRegressorConfig

    def __init__(self, config: MultiViewRegressorConfig):
        nn.Module.__init__(self)
        self.config = c = config
        p2 = c.patch_size ** 2
        self.temb = nn.Parameter(torch.zeros(1, c.temb_dim))
        self.unet = UNetBackbone(4 * p2, c.views * _PER_VIEW * p2, c.channels, c.layers_per_block,
                                 c.attention_levels, c.temb_dim, c.norm_groups,
                                 lambda ch, level: SelfAttentionBlock(ch, c.head_dim))
        # The backbone zero-initialises its last layer (a residual denoiser's start); a regressor
        # starting at exactly zero would give every pixel the same gradient direction.
        nn.init.normal_(self.unet.conv_out.weight, std=1e-3)

    def forward(self, cond: torch.Tensor) -> torch.Tensor:
        check_tensor(cond, "cond", (None, 4, None, None))
        b, _, h, w = cond.shape
        step = self.config.patch_size * 2 ** (len(self.config.channels) - 1)
        if h % step or w % step:
            raise ValueError(f"cond: sides must be multiples of {step}, got {h} x {w}")
        x = cond * 2 - 1
        p = self.config.patch_size
        if p > 1:
            x = F.pixel_unshuffle(x, p)
        out = self.unet(x, self.temb.expand(b, -1).to(x.dtype))
        if p > 1:
            out = F.pixel_shuffle(out, p)
        # Linear heads (model space -> [0, 1]), clamped only by :meth:`sample`: the targets sit exactly at
        # 0 and 1 (white background, alpha), which a sigmoid reaches only at infinite logits, so under L1
        # its logits grow without end and saturate the foreground too. The first trained weights
        # (session j, sigmoid heads) came out white wherever the truth was not dark: colour logits
        # around +9 on the figure, fg PSNR 8.5 dB, while alpha and normals had been learned.
        out = out.reshape(b, self.config.views, _PER_VIEW, h, w) * 0.5 + 0.5
        rgb, alpha, normal = out[:, :, :3], out[:, :, 3:4], out[:, :, 4:7]
        return torch.stack([torch.cat([rgb, alpha], 2), torch.cat([normal, alpha], 2)], dim=1)

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, *, seed: int = 0, steps: int | None = None, guidance: float | None = None,
               generator: torch.Generator | None = None,
               on_step: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """The diffusion model's sampling interface: ``cond`` ``(B, 4, H, W)`` in [0, 1] ->
        ``(B, D, V, 4, H, W)`` float32 in [0, 1]. Deterministic: ``seed``, ``steps``, ``guidance``
        and ``generator`` are accepted and ignored."""
        param = next(self.parameters())
        dev = param.device
        autocast = torch.autocast("cuda", torch.bfloat16) if dev.type == "cuda" and param.dtype == torch.float32 \
            else torch.autocast(dev.type, enabled=False)
        was_training = self.training
        self.eval()
        try:
            with autocast:
                out = self(cond.to(dev, param.dtype)).float().clamp(0, 1)
        finally:
            self.train(was_training)
        if on_step is not None:
            on_step(1, 1)
        return out

    @torch.no_grad()
    def generate(self, image, *, seed: int = 0, steps: int | None = None, guidance: float | None = None,
                 resolution: int | None = None,
                 on_step: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`MultiViewDiffusion.generate`: one picture -> ``rgba`` ``(6, 4, R, R)`` and
        ``normal`` ``(6, 3, R, R)`` in [0, 1] on the CPU (``seed`` / ``steps`` / ``guidance`` ignored)."""
        res = self.config.resolution if resolution is None else int(resolution)
        cond = prepare_image(image, res)
        out = self.sample(cond[None], on_step=on_step)[0].float().cpu()
        return split_outputs(out)
