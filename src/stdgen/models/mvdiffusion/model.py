"""The multi-view diffusion denoiser: one A-pose picture -> six views x {RGB + alpha, normal}.

Shapes: ``B`` batch, ``D = 2`` domains (:data:`~.config.DOMAINS`), ``V = 6`` views
(:data:`~.config.VIEW_AZIMUTHS`), images ``(B, D, V, 4, H, W)`` with channels RGB + alpha (domain 0)
and normal xyz + alpha (domain 1), in model space [-1, 1] (``2 x - 1`` of colour / alpha in [0, 1];
normals as they are). The condition image is ``(B, 4, H, W)``: straight-alpha RGB composited over
white, plus alpha.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from stdgen.models.diffusion.attention import (
    Attention,
    FeedForward,
    domain_sequences,
    from_domain_sequences,
    from_image_sequences,
    from_row_sequences,
    image_sequences,
    row_sequences,
)
from stdgen.models.diffusion.encoder import ImageEncoder
from stdgen.models.diffusion.flow import FlowMatching, guided
from stdgen.models.diffusion.unet import TimeEmbedding, UNetBackbone
from stdgen.models.modeling import ModelMixin
from stdgen.models.mvdiffusion.config import DOMAINS, MultiViewDiffusionConfig
from stdgen.utils.checks import check_tensor


@dataclass
class MultiViewDiffusionOutput:
    """``sample``: ``(B, D, V, 4, H, W)`` predicted velocity (``eps - x0``) in model space."""

    sample: torch.Tensor


@dataclass
class _Layout:
    """What the attention blocks need beyond the ``(N, C, H, W)`` features: the batch layout
    ``N = B * D * V`` and the condition tokens ``(B, S, context_dim)``."""

    batch: int
    domains: int
    views: int
    context: torch.Tensor


class MultiViewBlock(nn.Module):
    """One multi-view transformer block on ``(B*D*V, C, H, W)`` features (pre-LayerNorm residuals):

    1. cross-domain attention: each token attends to the other domain of its view, over the whole
       view when ``image_attention`` (``(B*V, D*H*W)`` sequences), else at its own pixel only
       (``(B*V*H*W, D)``);
    2. row-wise multi-view attention (Era3D): each row attends to the same row of every view of its
       domain (``(B*D*H, V*W)`` sequences): with orthographic cameras at elevation 0 a pixel's
       epipolar line in another view is that row;
    3. cross-attention to the condition image's tokens;
    4. a GELU MLP.
    """

    def __init__(self, dim: int, head_dim: int, context_dim: int, image_attention: bool):
        super().__init__()
        heads = dim // head_dim
        self.image_attention = image_attention
        self.norm_domain, self.norm_row = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.norm_cross, self.norm_ff = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.domain_attn = Attention(dim, heads)
        self.row_attn = Attention(dim, heads)
        self.cross_attn = Attention(dim, heads, context_dim=context_dim)
        self.ff = FeedForward(dim)

    def forward(self, h: torch.Tensor, layout: _Layout) -> torch.Tensor:
        n, c, height, width = h.shape
        shape = torch.Size((layout.batch, layout.domains, layout.views, height, width, c))
        t = h.permute(0, 2, 3, 1).reshape(shape)
        if self.image_attention:
            s = image_sequences(self.norm_domain(t))
            t = t + from_image_sequences(self.domain_attn(s), shape)
        else:
            s = domain_sequences(self.norm_domain(t))
            t = t + from_domain_sequences(self.domain_attn(s), shape)
        t = t + from_row_sequences(self.row_attn(row_sequences(self.norm_row(t))), shape)
        t = t.reshape(n, height * width, c)
        ctx = layout.context.repeat_interleave(layout.domains * layout.views, dim=0)
        t = t + self.cross_attn(self.norm_cross(t), ctx)
        t = t + self.ff(self.norm_ff(t))
        return t.reshape(n, height, width, c).permute(0, 3, 1, 2)


class ConditionEncoder(ImageEncoder):
    """``(B, 4, H, W)`` condition image -> ``tokens`` ``(B, T*T, context_dim)`` and a pooled
    ``(B, temb_dim)`` global embedding (the toolkit's :class:`ImageEncoder` sized by the config)."""

    def __init__(self, config: MultiViewDiffusionConfig):
        super().__init__(4, config.encoder_channels, config.context_tokens, config.context_dim, config.temb_dim,
                         config.norm_groups)


class MultiViewDiffusion(ModelMixin, nn.Module):
    """Joint denoiser of the 12 images (see the module docstring for layouts), and its sampler.

    ``forward(sample, sigma, cond, keep_cond)`` predicts the flow-matching velocity;
    :meth:`sample` and :meth:`generate` run the seeded Euler sampler with classifier-free guidance.
    """

    config_class = MultiViewDiffusionConfig

    def __init__(self, config: MultiViewDiffusionConfig):
        nn.Module.__init__(self)
        self.config = config
        c = config
        self.time = TimeEmbedding(c.temb_dim)
        self.view_emb = nn.Embedding(c.views, c.temb_dim)
        self.domain_emb = nn.Embedding(len(DOMAINS), c.temb_dim)
        nn.init.normal_(self.view_emb.weight, std=0.02)
        nn.init.normal_(self.domain_emb.weight, std=0.02)
        self.encoder = ConditionEncoder(c)
        # Learned stand-ins for a dropped condition (classifier-free guidance's unconditional branch).
        self.null_tokens = nn.Parameter(torch.zeros(c.context_tokens ** 2, c.context_dim))
        self.null_global = nn.Parameter(torch.zeros(c.temb_dim))

        def make_attention(ch: int, level: int) -> nn.Module:
            # Whole-view cross-domain attention where the level's feature map (at the default
            # resolution) is small enough; per-pixel cross-domain attention above.
            side = c.resolution // (c.patch_size * 2 ** level)
            return MultiViewBlock(ch, c.head_dim, c.context_dim, side * side <= c.image_attention_tokens)

        p2 = c.patch_size ** 2
        self.unet = UNetBackbone(8 * p2, 4 * p2, c.channels, c.layers_per_block, c.attention_levels, c.temb_dim,
                                 c.norm_groups, make_attention)
        if c.pixel_refiner:
            # Full-resolution residual head over (shuffled output, input): its last layer starts at zero,
            # so a model given it computes what the model without it did until training moves it.
            self.refiner = nn.Sequential(nn.Conv2d(4 + 8, c.pixel_refiner, 3, padding=1), nn.SiLU(),
                                         nn.Conv2d(c.pixel_refiner, 4, 3, padding=1))
            nn.init.zeros_(self.refiner[2].weight)
            nn.init.zeros_(self.refiner[2].bias)

    def flow(self, side: int) -> FlowMatching:
        """The flow-matching objective / sampler for ``side`` px images: the time shift grows with
        the side (``shift * side / resolution``, at least 1; SD3's rule, shift proportional to the
        square root of the pixel count), because at more pixels the same noise level hides less of
        the image. Training and sampling at one side use the same shift; the network takes the
        noise level itself as its time, so it is shared by all sides."""
        return FlowMatching(shift=max(1.0, self.config.shift * side / self.config.resolution),
                            prediction=self.config.prediction)

    def forward(self, sample: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor,
                keep_cond: torch.Tensor | None = None) -> MultiViewDiffusionOutput:
        """``sample`` ``(B, D, V, 4, H, W)`` noisy images; ``sigma`` ``(B,)`` noise levels in [0, 1];
        ``cond`` ``(B, 4, H, W)`` condition image in model space; ``keep_cond`` ``(B,)`` bool (False:
        drop the condition, the unconditional branch), default all kept."""
        b, d, v, ch, h, w = sample.shape
        check_tensor(sample, "sample", (None, len(DOMAINS), self.config.views, 4, None, None))
        check_tensor(sigma, "sigma", (b,))
        check_tensor(cond, "cond", (b, 4, h, w))
        tokens, glob = self.encoder(cond)
        if keep_cond is not None:
            k = keep_cond.to(tokens.dtype)
            tokens = tokens * k[:, None, None] + self.null_tokens.to(tokens.dtype) * (1 - k[:, None, None])
            glob = glob * k[:, None] + self.null_global.to(glob.dtype) * (1 - k[:, None])
            cond = cond * k.to(cond.dtype)[:, None, None, None]
        temb = self.time(sigma) + glob  # (B, temb)
        temb = (temb[:, None, None] + self.domain_emb.weight[None, :, None] + self.view_emb.weight[None, None])
        x = torch.cat([sample, cond[:, None, None].expand(b, d, v, 4, h, w)], dim=3).reshape(b * d * v, 8, h, w)
        p = self.config.patch_size
        out = self.unet(F.pixel_unshuffle(x, p) if p > 1 else x, temb.reshape(b * d * v, -1), _Layout(b, d, v, tokens))
        if p > 1:
            out = F.pixel_shuffle(out, p)
        if self.config.pixel_refiner:
            out = out + self.refiner(torch.cat([out, x], dim=1))
        return MultiViewDiffusionOutput(out.reshape(b, d, v, 4, h, w))

    def complete_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Weights of a model without the pixel refiner -> this model's when it has one: the refiner's
        own initial weights are added (its last layer zero), so the completed model computes exactly
        what the old one did. Other states pass unchanged."""
        if not self.config.pixel_refiner or any(k.startswith("refiner.") for k in state):
            return state
        own = self.state_dict()
        return {**state, **{k: v.detach().clone() for k, v in own.items() if k.startswith("refiner.")}}

    # ----------------------------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(self, cond: torch.Tensor, *, seed: int = 0, steps: int | None = None, guidance: float | None = None,
               generator: torch.Generator | None = None,
               on_step: Callable[[int, int], None] | None = None, init: torch.Tensor | None = None,
               start_sigma: float = 1.0) -> torch.Tensor:
        """``cond`` ``(B, 4, H, W)`` condition images in [0, 1] (RGB over white + alpha) ->
        ``(B, D, V, 4, H, W)`` generated images in [0, 1] (normals as ``(n + 1) / 2``). Seeded: the
        same ``seed`` (or ``generator`` state), steps and guidance give the same result.

        ``init`` ``(B, D, V, 4, H, W)`` in [0, 1] (e.g. :class:`~.regressor.MultiViewRegressor`'s
        mean) with ``start_sigma`` < 1: start from it noised to that level instead of from pure
        noise (:meth:`FlowMatching.sample`)."""
        check_tensor(cond, "cond", (None, 4, None, None))
        c = self.config
        steps = c.default_steps if steps is None else int(steps)
        guidance = c.default_guidance if guidance is None else float(guidance)
        b, _, h, w = cond.shape
        param = next(self.parameters())
        dev = param.device
        cond_m = cond.to(dev, param.dtype) * 2 - 1
        use_cfg = guidance != 1.0
        autocast = torch.autocast("cuda", torch.bfloat16) if dev.type == "cuda" and param.dtype == torch.float32 \
            else torch.autocast(dev.type, enabled=False)
        if use_cfg:
            cond_m = torch.cat([cond_m, cond_m])
            keep = torch.arange(2 * b, device=dev) < b  # first half conditional, second unconditional
        else:
            keep = None

        def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            xin = x.to(param.dtype)
            if use_cfg:
                xin, sigma = torch.cat([xin, xin]), torch.cat([sigma, sigma])
            with autocast:
                v = self(xin, sigma.to(param.dtype), cond_m, keep).sample.float()
            if use_cfg:
                v = guided(v[:b], v[b:], guidance)
            return v

        was_training = self.training
        self.eval()
        try:
            x = self.flow(h).sample(denoise, (b, len(DOMAINS), c.views, 4, h, w), steps=steps, seed=seed,
                                 generator=generator, device=dev, on_step=on_step,
                                 init=None if init is None else init.to(dev, torch.float32) * 2 - 1,
                                 start_sigma=start_sigma)
        finally:
            self.train(was_training)
        return ((x + 1) / 2).clamp(0, 1)

    @torch.no_grad()
    def generate(self, image, *, seed: int = 0, steps: int | None = None, guidance: float | None = None,
                 resolution: int | None = None, on_step: Callable[[int, int], None] | None = None,
                 init: torch.Tensor | None = None, start_sigma: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """One RGBA A-pose front picture (PIL image, or ``(4, H, W)`` / ``(3, H, W)`` float tensor in
        [0, 1], straight alpha, in the dataset's framing) -> ``rgba`` ``(6, 4, R, R)`` unlit colour
        over white with the generated silhouette as alpha, and ``normal`` ``(6, 3, R, R)`` world
        normals as ``(n + 1) / 2`` (0 off the silhouette, as in the dataset); views in
        :data:`~.config.VIEW_AZIMUTHS` order, on the CPU, float32. ``init`` ``(D, V, 4, R, R)`` in
        [0, 1] and ``start_sigma``: see :meth:`sample`."""
        res = self.config.resolution if resolution is None else int(resolution)
        cond = prepare_image(image, res)
        out = self.sample(cond[None], seed=seed, steps=steps, guidance=guidance, on_step=on_step,
                          init=None if init is None else init[None], start_sigma=start_sigma)[0].float().cpu()
        return split_outputs(out)


def split_outputs(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(D, V, 4, H, W)`` sampler output in [0, 1] -> (``rgba`` ``(V, 4, H, W)``, ``normal``
    ``(V, 3, H, W)`` as ``(n + 1) / 2``, renormalised, 0 where the alpha is below 0.5)."""
    rgba = out[0]
    alpha = rgba[:, 3:4]
    n = F.normalize(out[1, :, :3] * 2 - 1, dim=1, eps=1e-6)
    normal = torch.where(alpha > 0.5, (n + 1) / 2, torch.zeros_like(n))
    return rgba, normal


def prepare_image(image, resolution: int) -> torch.Tensor:
    """A picture -> ``(4, R, R)`` float32 in [0, 1]: RGB composited over white, then alpha.

    PIL images and ``(4, H, W)`` tensors are read as straight alpha; an image without alpha gets the
    pixels that differ from white as its silhouette. Non-square pictures are padded with white
    to a square (centred) before resizing."""
    if not isinstance(image, torch.Tensor):
        import numpy as np

        arr = np.asarray(image.convert("RGBA") if image.mode not in ("RGB", "RGBA") else image, dtype=np.float32)
        image = torch.from_numpy(arr / 255.0).permute(2, 0, 1)
    check_tensor(image, "image", (None, None, None))
    if image.shape[0] not in (3, 4):
        raise ValueError(f"image: expected 3 or 4 channels (RGB or RGBA), got shape {tuple(image.shape)}")
    image = image.float().clamp(0, 1)
    if image.shape[0] == 3:
        alpha = ((1 - image).amax(0, keepdim=True) > 0.02).float()
        rgb = image
    else:
        alpha = image[3:4]
        rgb = image[:3] * alpha + (1 - alpha)
    h, w = rgb.shape[1:]
    if h != w:
        side = max(h, w)
        top, left = (side - h) // 2, (side - w) // 2
        rgb = F.pad(rgb, (left, side - w - left, top, side - h - top), value=1.0)
        alpha = F.pad(alpha, (left, side - w - left, top, side - h - top), value=0.0)
    x = torch.cat([rgb, alpha])[None]
    if x.shape[-1] != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
    return x[0].clamp(0, 1)
