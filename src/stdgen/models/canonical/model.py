"""The canonicalisation model: denoiser + ReferenceNet + reference encoder + A-pose check.

Shapes: ``B`` batch; images ``(B, 4, H, W)``: RGB composited over white, then alpha, in model
space [-1, 1] (``2 x - 1`` of values in [0, 1]). The reference (the posed picture) and the output
(the A-pose front, lit as the multi-view model's input) share that layout; they need not share the
side, but both are multiples of the U-Net's step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from stdgen.models.canonical.config import CanonicalizerConfig
from stdgen.models.diffusion.attention import Attention, FeedForward
from stdgen.models.diffusion.encoder import ImageEncoder
from stdgen.models.diffusion.flow import FlowMatching, guided
from stdgen.models.diffusion.unet import TimeEmbedding, UNetBackbone
from stdgen.models.modeling import ModelMixin
from stdgen.utils.checks import check_tensor

#: The empty picture (white, alpha 0) in model space: the reference of the unconditional branch.
NULL_REFERENCE = (1.0, 1.0, 1.0, -1.0)


@dataclass
class CanonicalizerOutput:
    """``sample``: ``(B, 4, H, W)`` predicted velocity (``eps - x0``) in model space; ``pose``:
    ``(B, 3)`` the A-pose check's outputs on the reference: the A-pose logit, then the left and right
    upper-arm angles below horizontal in units of 90 degrees."""

    sample: torch.Tensor
    pose: torch.Tensor


@dataclass
class ReferenceContext:
    """What the transformer blocks share during one pass: ``mode`` ``"write"`` (the ReferenceNet
    stores each block's normalised tokens in ``bank``) or ``"read"`` (the denoiser's block with the
    same index attends to them too); ``tokens`` ``(N, S, context_dim)`` cross-attention context;
    ``last``: the index of the ReferenceNet's last block, which only stores (nothing reads its output);
    ``pixels``: ``(N, 4, H, W)`` the re-framed reference the denoiser takes as extra input channels
    (``concat_reference`` models), else None."""

    mode: str
    tokens: torch.Tensor
    bank: dict[int, torch.Tensor] = field(default_factory=dict)
    last: int = -1
    pixels: torch.Tensor | None = None


class ReferenceBlock(nn.Module):
    """One transformer block on ``(N, C, H, W)`` features (pre-LayerNorm residuals):

    1. self-attention whose keys / values are the block's own normalised tokens concatenated with
       the ReferenceNet's at the same block, ``(N, L + L_ref, C)`` (in the ReferenceNet itself:
       plain self-attention, after storing its tokens);
    2. cross-attention to the reference encoder's tokens;
    3. a GELU MLP.
    """

    def __init__(self, index: int, dim: int, head_dim: int, context_dim: int):
        super().__init__()
        self.index = index
        heads = dim // head_dim
        self.norm_self, self.norm_cross, self.norm_ff = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.self_attn = Attention(dim, heads)
        self.cross_attn = Attention(dim, heads, context_dim=context_dim)
        self.ff = FeedForward(dim)

    def forward(self, h: torch.Tensor, ctx: ReferenceContext) -> torch.Tensor:
        n, c, height, width = h.shape
        t = h.flatten(2).transpose(1, 2)  # (N, H*W, C)
        x = self.norm_self(t)
        if ctx.mode == "write":
            ctx.bank[self.index] = x
            if self.index == ctx.last:
                return h
            kv = None
        else:
            kv = torch.cat([x, ctx.bank[self.index].to(x.dtype)], dim=1)
        t = t + self.self_attn(x, kv)
        t = t + self.cross_attn(self.norm_cross(t), ctx.tokens)
        t = t + self.ff(self.norm_ff(t))
        return t.transpose(1, 2).reshape(n, c, height, width)


def reference_attention_reference(attn: Attention, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Slow reference of the reference attention for tests: ``x`` ``(N, L, C)`` queries, keys /
    values from ``[x; ref]`` (``ref`` ``(N, L_ref, C)``), written out with explicit softmax."""
    kv = torch.cat([x, ref], dim=1)
    q = attn.to_q(x)
    k, v = attn.to_kv(kv).chunk(2, dim=-1)
    n, length, c = q.shape
    h = attn.heads
    q, k, v = (t.reshape(n, -1, h, c // h).transpose(1, 2) for t in (q, k, v))
    w = (q @ k.transpose(-1, -2) * (c // h) ** -0.5).softmax(-1)
    return attn.to_out((w @ v).transpose(1, 2).reshape(n, length, c))


class PoseCheck(nn.Module):
    """The A-pose check: ``(B, 4, H, W)`` picture in model space -> ``(B, 3)``: A-pose logit and
    the two upper-arm angles / 90 degrees. Stride-2 convolutions, global average and max pooling
    (the max keeps where the arms are, the average the overall shape), a linear head."""

    def __init__(self, config: CanonicalizerConfig):
        super().__init__()
        layers: list[nn.Module] = []
        c = 4
        for cout in config.check_channels:
            layers += [nn.Conv2d(c, cout, 3, stride=2, padding=1), nn.GroupNorm(min(8, cout), cout), nn.SiLU()]
            c = cout
        self.net = nn.Sequential(*layers)
        self.head = nn.Linear(2 * c, 3)
        self.resolution = config.check_resolution

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.shape[-1] != self.resolution or image.shape[-2] != self.resolution:
            image = F.interpolate(image, size=(self.resolution, self.resolution), mode="area")
        f = self.net(image)
        return self.head(torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1))


class Canonicalizer(ModelMixin, nn.Module):
    """Posed picture -> A-pose front picture (see the package docstring for the design).

    ``forward(sample, sigma, reference, keep_ref)`` predicts the flow-matching velocity (the
    training path); :meth:`sample` / :meth:`canonicalize` run the seeded Euler sampler with
    classifier-free guidance, encoding the reference once for all steps; :meth:`is_a_pose` runs the
    check alone.
    """

    config_class = CanonicalizerConfig

    def __init__(self, config: CanonicalizerConfig):
        nn.Module.__init__(self)
        self.config = config
        c = config
        p2 = c.patch_size ** 2

        def blocks() -> Callable[[int, int], nn.Module]:
            counter = iter(range(1 << 30))  # creation order = call order in UNetBackbone.forward

            def make(ch: int, level: int) -> nn.Module:
                return ReferenceBlock(next(counter), ch, c.head_dim, c.context_dim)

            return make

        self.time = TimeEmbedding(c.temb_dim)
        self.denoiser = UNetBackbone(self.denoiser_in_channels(c), 4 * p2, c.channels, c.layers_per_block,
                                     c.attention_levels, c.temb_dim, c.norm_groups, blocks())
        self.reference_net = UNetBackbone(4 * p2, 4 * p2, c.channels, c.layers_per_block, c.attention_levels,
                                          c.temb_dim, c.norm_groups, blocks())
        # The ReferenceNet only feeds the denoiser's attention: it stops after its last block, so the
        # layers after that (and its output convolution) would never train. Drop its output layers;
        # the remaining unused up-path blocks are listed by unused_reference_parameters().
        self.reference_net.norm_out = nn.Identity()
        self.reference_net.conv_out = nn.Identity()
        self._ref_last = self.reference_net.attention_modules()[-1]
        # The ReferenceNet sees a clean picture: a learned time embedding instead of sigma = 0's.
        self.reference_temb = nn.Parameter(torch.zeros(c.temb_dim))
        self.encoder = ImageEncoder(4, c.encoder_channels, c.context_tokens, c.context_dim, c.temb_dim, c.norm_groups)
        self.null_tokens = nn.Parameter(torch.zeros(c.context_tokens ** 2, c.context_dim))
        self.null_global = nn.Parameter(torch.zeros(c.temb_dim))
        self.check = PoseCheck(c)
        # A buffer, not a tensor made per call: building it on the GPU each step would be a
        # host-to-device copy that waits for the queued work.
        self.register_buffer("null_reference", torch.tensor(NULL_REFERENCE).reshape(1, 4, 1, 1), persistent=False)

    # --------------------------------------------------------------------------------- the parts
    @staticmethod
    def denoiser_in_channels(config: CanonicalizerConfig) -> int:
        """Channels of the denoiser's first convolution: the folded noisy picture, plus the folded
        re-framed reference with ``concat_reference``."""
        return 4 * config.patch_size ** 2 * (2 if config.concat_reference else 1)

    def widen_input_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Weights of a model without ``concat_reference`` -> this model's (with it): the denoiser's
        first convolution gets zero weights for the reference channels, so the widened model computes
        exactly what the old one did until training moves them. Other states pass unchanged."""
        key = "denoiser.conv_in.weight"
        want = self.denoiser.conv_in.weight.shape[1]
        w = state.get(key)
        if w is not None and w.shape[1] < want:
            state[key] = torch.cat([w, w.new_zeros(w.shape[0], want - w.shape[1], *w.shape[2:])], dim=1)
        return state

    def frame_reference(self, reference: torch.Tensor) -> torch.Tensor:
        """``(B, 4, H, W)`` pictures in model space -> the same re-framed as the dataset frames an A-pose
        front: each figure's bounding box (alpha > 0, i.e. > 0.5 in [0, 1]) centred and scaled so its
        longer side is :data:`FIGURE_HEIGHT` of the picture; empty pictures come back unchanged. One
        batched ``grid_sample`` (bilinear; outside the picture: the empty picture)."""
        b, _, h, w = reference.shape
        dt = reference.dtype
        inside = reference[:, 3].float() > 0
        rows, cols = inside.any(2), inside.any(1)  # (B, H), (B, W)
        has = rows.any(1)
        ar_h = torch.arange(h, device=reference.device, dtype=torch.float32)
        ar_w = torch.arange(w, device=reference.device, dtype=torch.float32)
        big = float(max(h, w))
        top = torch.where(rows, ar_h, big).amin(1)
        bottom = torch.where(rows, ar_h, -1.0).amax(1) + 1
        left = torch.where(cols, ar_w, big).amin(1)
        right = torch.where(cols, ar_w, -1.0).amax(1) + 1
        # Normalised coordinates (align_corners=False: pixel edges at -1 and 1).
        cx, cy = (left + right) / w - 1, (top + bottom) / h - 1
        extent = torch.maximum((bottom - top) * 2 / h, (right - left) * 2 / w)
        k = torch.where(has, extent / (2 * FIGURE_HEIGHT), torch.ones_like(extent))
        cx, cy = torch.where(has, cx, torch.zeros_like(cx)), torch.where(has, cy, torch.zeros_like(cy))
        theta = torch.zeros(b, 2, 3, device=reference.device, dtype=torch.float32)
        theta[:, 0, 0], theta[:, 1, 1], theta[:, 0, 2], theta[:, 1, 2] = k, k, cx, cy
        grid = F.affine_grid(theta, [b, 4, h, w], align_corners=False)
        null = self.null_reference.to(torch.float32)
        out = F.grid_sample(reference.float() - null, grid, mode="bilinear", padding_mode="zeros",
                            align_corners=False) + null
        return out.to(dt)

    def flow(self, side: int) -> FlowMatching:
        """The objective / sampler at ``side`` px: time shift ``shift * side / resolution`` (at least
        1), as in the multi-view model."""
        return FlowMatching(shift=max(1.0, self.config.shift * side / self.config.resolution),
                            prediction=self.config.prediction)

    def _fold(self, x: torch.Tensor) -> torch.Tensor:
        p = self.config.patch_size
        return F.pixel_unshuffle(x, p) if p > 1 else x

    def encode_reference(self, reference: torch.Tensor, keep_ref: torch.Tensor | None = None) -> ReferenceContext:
        """``reference`` ``(B, 4, H, W)`` in model space, ``keep_ref`` ``(B,)`` bool (False: the
        unconditional branch: the empty picture and the learned null tokens) -> the context the
        denoiser reads (the ReferenceNet's bank, the cross-attention tokens) plus the global
        embedding under ``ctx.bank[-1]`` ``(B, temb_dim)``."""
        c = self.config
        step = c.patch_size * 2 ** (len(c.channels) - 1)
        check_tensor(reference, "reference", (None, 4, None, None))
        if reference.shape[-1] % step or reference.shape[-2] % step:
            raise ValueError(f"reference: sides must be multiples of {step}, got {tuple(reference.shape[-2:])}")
        if keep_ref is not None:
            k = keep_ref.to(reference.dtype)[:, None, None, None]
            reference = reference * k + self.null_reference.to(reference.dtype) * (1 - k)
        tokens, glob = self.encoder(reference)
        if keep_ref is not None:
            k = keep_ref.to(tokens.dtype)
            tokens = tokens * k[:, None, None] + self.null_tokens.to(tokens.dtype) * (1 - k[:, None, None])
            glob = glob * k[:, None] + self.null_global.to(glob.dtype) * (1 - k[:, None])
        ctx = ReferenceContext("write", tokens, last=self._ref_last.index)
        if c.concat_reference:
            ctx.pixels = self.frame_reference(reference)
        temb = (self.reference_temb.to(glob.dtype) + glob)
        self.reference_net(self._fold(reference), temb, ctx, stop_after_attention=self._ref_last)
        ctx.mode = "read"
        ctx.bank[-1] = glob
        return ctx

    def denoise(self, sample: torch.Tensor, sigma: torch.Tensor, ctx: ReferenceContext) -> torch.Tensor:
        """``sample`` ``(B, 4, H, W)`` noisy image, ``sigma`` ``(B,)`` -> ``(B, 4, H, W)`` velocity."""
        temb = self.time(sigma) + ctx.bank[-1]
        if ctx.pixels is not None:
            pix = ctx.pixels
            if pix.shape[-2:] != sample.shape[-2:]:
                pix = F.interpolate(pix.float(), size=sample.shape[-2:], mode="bilinear", antialias=True,
                                    align_corners=False).to(pix.dtype)
            sample = torch.cat([sample, pix.to(sample.dtype)], dim=1)
        out = self.denoiser(self._fold(sample), temb, ctx)
        p = self.config.patch_size
        return F.pixel_shuffle(out, p) if p > 1 else out

    def forward(self, sample: torch.Tensor, sigma: torch.Tensor, reference: torch.Tensor,
                keep_ref: torch.Tensor | None = None) -> CanonicalizerOutput:
        """``sample`` ``(B, 4, H, W)`` noisy A-pose pictures; ``sigma`` ``(B,)`` noise levels in [0, 1];
        ``reference`` ``(B, 4, H', W')`` the posed pictures in model space; ``keep_ref`` ``(B,)`` bool
        (False drops the reference: guidance's unconditional branch; the check still sees it)."""
        b = sample.shape[0]
        check_tensor(sample, "sample", (None, 4, None, None))
        check_tensor(sigma, "sigma", (b,))
        check_tensor(reference, "reference", (b, 4, None, None))
        ctx = self.encode_reference(reference, keep_ref)
        return CanonicalizerOutput(self.denoise(sample, sigma, ctx), self.check(reference))

    def unused_reference_parameters(self) -> list[str]:
        """Names of the ReferenceNet's parameters its truncated forward never reaches (the up-path
        blocks after its last attention block): never trained, kept so the ReferenceNet has the
        denoiser's shape. Found by a dry run with forward hooks."""
        used: set[int] = set()
        hooks = [mod.register_forward_hook(lambda mod, i, o: used.add(id(mod)))
                 for mod in self.reference_net.modules()]
        try:
            c = self.config
            step = c.patch_size * 2 ** (len(c.channels) - 1)
            p = next(self.parameters())
            with torch.no_grad():
                self.encode_reference(torch.zeros(1, 4, step, step, device=p.device, dtype=p.dtype))
        finally:
            for hk in hooks:
                hk.remove()
        return [f"reference_net.{name}.{pn}" for name, mod in self.reference_net.named_modules()
                if id(mod) not in used for pn, _ in mod.named_parameters(recurse=False)]

    # ----------------------------------------------------------------------------------- sampling
    def _autocast(self, dev: torch.device, dtype: torch.dtype):
        if dev.type == "cuda" and dtype == torch.float32:
            return torch.autocast("cuda", torch.bfloat16)
        return torch.autocast(dev.type, enabled=False)

    @torch.no_grad()
    def sample(self, reference: torch.Tensor, *, seed: int = 0, steps: int | None = None,
               guidance: float | None = None, resolution: int | None = None,
               generator: torch.Generator | None = None,
               on_step: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """``reference`` ``(B, 4, H, W)`` posed pictures in [0, 1] (RGB over white + alpha) -> ``(B,
        4, R, R)`` A-pose front pictures in [0, 1] (RGB over white + alpha), R = ``resolution``
        (default the reference's side). The reference is encoded once for every step; with guidance
        != 1 the conditional and unconditional branches run as one batch. Seeded."""
        check_tensor(reference, "reference", (None, 4, None, None))
        c = self.config
        steps = c.default_steps if steps is None else int(steps)
        guidance = c.default_guidance if guidance is None else float(guidance)
        b = reference.shape[0]
        side = reference.shape[-1] if resolution is None else int(resolution)
        param = next(self.parameters())
        dev = param.device
        ref = reference.to(dev, param.dtype) * 2 - 1
        use_cfg = guidance != 1.0
        keep = None
        if use_cfg:
            ref = torch.cat([ref, ref])
            keep = torch.arange(2 * b, device=dev) < b  # first half conditional, second unconditional
        autocast = self._autocast(dev, param.dtype)
        was_training = self.training
        self.eval()
        try:
            with autocast:
                ctx = self.encode_reference(ref, keep)

            def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
                xin = x.to(param.dtype)
                if use_cfg:
                    xin, sigma = torch.cat([xin, xin]), torch.cat([sigma, sigma])
                with autocast:
                    v = self.denoise(xin, sigma.to(param.dtype), ctx).float()
                return guided(v[:b], v[b:], guidance) if use_cfg else v

            x = self.flow(side).sample(denoise, (b, 4, side, side), steps=steps, seed=seed, generator=generator,
                                       device=dev, on_step=on_step)
        finally:
            self.train(was_training)
        return ((x + 1) / 2).clamp(0, 1)

    @torch.no_grad()
    def pose_scores(self, reference: torch.Tensor) -> torch.Tensor:
        """``(B, 4, H, W)`` pictures in [0, 1] -> ``(B, 3)``: A-pose probability, left and right
        upper-arm angles in degrees below horizontal."""
        param = next(self.parameters())
        out = self.check(reference.to(param.device, param.dtype) * 2 - 1).float()
        return torch.stack([torch.sigmoid(out[:, 0]), out[:, 1] * 90, out[:, 2] * 90], dim=1)

    @torch.no_grad()
    def is_a_pose(self, image) -> tuple[bool, float]:
        """One picture (PIL or ``(3|4, H, W)`` tensor in [0, 1]) -> (already in A-pose?, the check's
        probability)."""
        x = prepare_picture(image, self.config.check_resolution)
        p = float(self.pose_scores(x[None])[0, 0].item())
        return p >= self.config.check_threshold, p

    @torch.no_grad()
    def canonicalize(self, image, *, seed: int = 0, steps: int | None = None, guidance: float | None = None,
                     resolution: int | None = None,
                     on_step: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """One picture in any pose (PIL image, or ``(4, H, W)`` / ``(3, H, W)`` float tensor in [0,
        1], straight alpha; any framing: padded to a square) -> ``(4, R, R)`` float32 CPU straight
        RGBA in [0, 1]: the character in A-pose from the front, framed as the dataset frames its
        A-pose front; R = ``resolution`` (default the config's)."""
        res = self.config.resolution if resolution is None else int(resolution)
        x = prepare_picture(image, res)
        out = self.sample(x[None], seed=seed, steps=steps, guidance=guidance, on_step=on_step)[0].float().cpu()
        return to_straight_rgba(out)

    def canonicalize_pil(self, image, **kwargs):
        """:meth:`canonicalize` for a PIL picture -> an RGBA PIL picture."""
        from PIL import Image

        rgba = self.canonicalize(image, **kwargs)
        arr = (rgba.permute(1, 2, 0).numpy() * 255 + 0.5).clip(0, 255).astype("uint8")
        return Image.fromarray(arr, "RGBA")


def prepare_picture(image, resolution: int) -> torch.Tensor:
    """A picture -> ``(4, R, R)`` float32 in [0, 1], RGB over white then alpha (padded to a square,
    resized): the multi-view model's input preparation, shared."""
    from stdgen.models.mvdiffusion.model import prepare_image

    return prepare_image(image, resolution)


def to_straight_rgba(x: torch.Tensor) -> torch.Tensor:
    """``(4, H, W)`` RGB over white + alpha in [0, 1] -> straight-alpha RGBA (the colour under
    partial alpha un-composited from the white; fully transparent pixels white)."""
    rgb, a = x[:3], x[3:4].clamp(0, 1)
    straight = torch.where(a > 0.02, (rgb - (1 - a)) / a.clamp_min(0.02), torch.ones_like(rgb))
    return torch.cat([straight.clamp(0, 1), a])


#: The dataset's framing of an A-pose front: the character's height is this share of the image
#: (``1 / margin`` with the renders' margin 1.1).
FIGURE_HEIGHT = 1 / 1.1


def frame_like_dataset(rgba: torch.Tensor, side: int, threshold: float = 0.5) -> torch.Tensor:
    """Re-frame a straight-alpha ``(4, H, W)`` picture in [0, 1] as the dataset frames its A-pose
    front: the figure (alpha > ``threshold``) scaled so its height is :data:`FIGURE_HEIGHT` of the
    side (less if it is wider than that), its bounding box centred -> ``(4, side, side)``. A
    picture with no figure comes back resized only. Used when canonicalisation is skipped."""
    check_tensor(rgba, "rgba", (4, None, None))
    mask = rgba[3] > threshold
    if not bool(mask.any()):
        return F.interpolate(rgba[None], size=(side, side), mode="bilinear", antialias=True,
                             align_corners=False)[0].clamp(0, 1)
    rows, cols = torch.nonzero(mask.any(1)).flatten(), torch.nonzero(mask.any(0)).flatten()
    top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    crop = rgba[:, top:bottom, left:right]
    h, w = crop.shape[1:]
    scale = FIGURE_HEIGHT * side / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    # Resize premultiplied so the transparent surroundings do not bleed into the edge colours.
    pm = torch.cat([crop[:3] * crop[3:4], crop[3:4]])[None]
    pm = F.interpolate(pm, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)[0].clamp(0, 1)
    out = torch.zeros(4, side, side, dtype=rgba.dtype)
    y0, x0 = (side - nh) // 2, (side - nw) // 2
    out[:, y0:y0 + nh, x0:x0 + nw] = pm
    a = out[3:4]
    out[:3] = torch.where(a > 1e-4, out[:3] / a.clamp_min(1e-4), torch.ones_like(out[:3])).clamp(0, 1)
    return out
