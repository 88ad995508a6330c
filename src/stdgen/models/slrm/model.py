"""The S-LRM: multi-view images -> triplane -> SDF, colour and semantics (the paper's stage 3).

Shapes (``B`` characters, ``V`` input views, ``C`` input channels, ``R`` triplane side):

    images (B, V, C, H, W) in [0, 1]  --encoder (conv, or ViT in the paper config)-->
        image tokens (B, V * h * w, D)            (+ Plücker rays of every pixel as input channels)
    learned triplane tokens (B, 3 * T * T, D)     (+ ``lift="ortho"``: encoder features placed on
        the plane that each view looks straight at, see :func:`ortho_lift`)
    --transformer: [cross-attention to image tokens, self-attention, MLP] x depth-->
    --upsampler (transposed conv)--> planes (B, 3, Ct, R, R) in XY, XZ, YZ order
    --decoders (one small MLP each, on the concatenated plane features of a point)-->
        sdf (negative inside), rgb (sigmoid), class logits (body, clothes, hair)

Everything is in the character's **normalised frame**: the box the input views frame,
``[-1, 1]^3`` (a world point is ``center + half_size * p``). Densities for volume rendering come
from the SDF (VolSDF: ``sigma = Laplace-CDF(-sdf / beta) / beta``, ``beta`` learned), so one field
is both rendered in training and extracted as a surface by the semantic-equivalent SDF.

Attention blocks name their projections ``to_q``, ``to_k``, ``to_v`` and ``to_out``: the LoRA
targets of training stages 1-3 (``lora_rank > 0`` builds the model with the adapters in place, so
base + LoRA weights reload strictly; :meth:`SLRM.merged` folds them in for inference).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from stdgen.geometry.rays import camera_rays, pixel_ndc, plucker
from stdgen.geometry.triplane import PLANE_AXES, sample_triplane
from stdgen.models.modeling import ModelConfig, ModelMixin
from stdgen.structures.semantics import NUM_PARTS
from stdgen.utils.checks import check_tensor

__all__ = ["LORA_TARGETS", "SLRM", "FieldOutput", "SLRMConfig", "SLRMOutput", "ortho_lift"]

#: Module names LoRA adapts (every linear layer of the self- and cross-attention blocks).
LORA_TARGETS: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out")


@dataclass(frozen=True)
class SLRMConfig(ModelConfig):
    """The S-LRM's sizes.

    Attributes:
        in_channels: channels per input view: 3 (RGB) or 6 (RGB + normal map as (n + 1) / 2).
        image_size: input view side (square).
        encoder: ``"conv"`` (a small residual CNN, features at 1/2, 1/4 and 1/8 of the input) or
            ``"vit"`` (patch embedding + transformer blocks, the paper's DINO-ViT shape).
        encoder_channels: conv encoder widths at full, 1/2, 1/4 and 1/8 resolution (the last is the
            token width fed to the transformer's cross-attention).
        patch_size, encoder_depth: the ViT encoder's patch and depth.
        dim: transformer width; depth: blocks; heads: attention heads; mlp_ratio: MLP width / dim.
        token_res: triplane tokens per plane side; triplane_res: plane side after upsampling (a
            multiple of token_res); triplane_channels: feature channels per plane.
        lift: ``"ortho"`` adds the encoder's features to the planes each view looks straight at
            (front/back -> XY, sides -> YZ) before and after the transformer; ``"none"`` is the
            paper's pure cross-attention design.
        decoder_hidden, decoder_layers: each decoder MLP's width and hidden layers.
        num_classes: semantic classes (body, clothes, hair).
        lora_rank, lora_alpha: LoRA adapters on the attention projections (0: none).
        beta_init: VolSDF's initial Laplace scale in normalised units; beta_min its floor.
        sphere_prior: radius of the sphere the SDF starts as (added as ``|p| - r``); 0 disables.
    """

    in_channels: int = 3
    image_size: int = 128
    encoder: str = "conv"
    encoder_channels: tuple[int, ...] = (32, 64, 128, 256)
    patch_size: int = 16
    encoder_depth: int = 12
    dim: int = 256
    depth: int = 6
    heads: int = 8
    mlp_ratio: float = 4.0
    token_res: int = 32
    triplane_res: int = 64
    triplane_channels: int = 32
    lift: str = "ortho"
    decoder_hidden: int = 64
    decoder_layers: int = 2
    num_classes: int = NUM_PARTS
    lora_rank: int = 0
    lora_alpha: float = 0.0
    beta_init: float = 0.03
    beta_min: float = 0.002
    sphere_prior: float = 0.5

    def __post_init__(self) -> None:
        def need(ok: bool, field: str, rule: str) -> None:
            if not ok:
                raise ValueError(f"SLRMConfig.{field}: {getattr(self, field)!r} is invalid; {rule}")

        need(self.in_channels in (3, 6), "in_channels", "expected 3 (RGB) or 6 (RGB + normals)")
        need(self.encoder in ("conv", "vit"), "encoder", "expected 'conv' or 'vit'")
        need(len(self.encoder_channels) == 4 and all(c >= 1 for c in self.encoder_channels), "encoder_channels",
             "expected four positive widths (full, 1/2, 1/4, 1/8 resolution)")
        need(self.image_size >= 16 and self.image_size % 16 == 0, "image_size", "expected a multiple of 16")
        if self.encoder == "vit":
            need(self.image_size % self.patch_size == 0, "patch_size", "must divide image_size")
        need(self.dim >= 8 and self.dim % self.heads == 0, "dim", "expected >= 8 and a multiple of heads")
        need(self.heads >= 1, "heads", "expected >= 1")
        need(self.depth >= 1, "depth", "expected >= 1")
        need(self.token_res >= 2, "token_res", "expected >= 2")
        need(self.triplane_res >= self.token_res and self.triplane_res % self.token_res == 0
             and (self.triplane_res // self.token_res) & (self.triplane_res // self.token_res - 1) == 0,
             "triplane_res", "expected token_res times a power of two")
        need(self.triplane_channels >= 1, "triplane_channels", "expected >= 1")
        need(self.lift in ("ortho", "none"), "lift", "expected 'ortho' or 'none'")
        need(self.decoder_hidden >= 1 and self.decoder_layers >= 1, "decoder_hidden", "decoder width/layers >= 1")
        need(self.num_classes >= 1, "num_classes", "expected >= 1")
        need(self.lora_rank >= 0, "lora_rank", "expected >= 0")
        need(0 < self.beta_min <= self.beta_init, "beta_init", "expected 0 < beta_min <= beta_init")
        need(self.sphere_prior >= 0, "sphere_prior", "expected >= 0")

    @classmethod
    def small(cls, **kw) -> SLRMConfig:
        """The configuration trained here and bundled."""
        return cls(**kw)

    @classmethod
    def paper(cls, **kw) -> SLRMConfig:
        """The paper's (InstantMesh-large-like) sizes: ViT-B encoder at 320 px... here 256 px (a multiple
        of 16), a 1024-wide 16-block transformer on 32^2 tokens per plane, 64^2 x 80 planes, LoRA 128."""
        base = dict(image_size=256, encoder="vit", patch_size=16, encoder_depth=12,
                    encoder_channels=(64, 128, 256, 768),
                    dim=1024, depth=16, heads=16, token_res=32, triplane_res=64, triplane_channels=80, lift="none",
                    decoder_hidden=64, decoder_layers=3)
        base.update(kw)
        return cls(**base)

    @classmethod
    def tiny(cls, **kw) -> SLRMConfig:
        """A few-thousand-parameter instance for tests."""
        base = dict(image_size=32, encoder_channels=(4, 8, 8, 16), dim=16, depth=1, heads=2, token_res=4,
                    triplane_res=8, triplane_channels=4, decoder_hidden=8, decoder_layers=1)
        base.update(kw)
        return cls(**base)


@dataclass
class FieldOutput:
    """The field at points ``(B, N)``: ``sdf`` (B, N) negative inside, ``sigma`` (B, N) the VolSDF
    density, ``rgb`` (B, N, 3) in [0, 1], ``logits`` (B, N, K) class logits."""

    sdf: torch.Tensor
    sigma: torch.Tensor
    rgb: torch.Tensor
    logits: torch.Tensor


@dataclass
class SLRMOutput:
    """``planes`` (B, 3, Ct, R, R); ``field`` at the points given to ``forward`` (None without)."""

    planes: torch.Tensor
    field: FieldOutput | None = None


# --- building blocks ------------------------------------------------------------------------------


class Attention(nn.Module):
    """Multi-head attention with separate ``to_q/to_k/to_v/to_out`` projections (LoRA targets)."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None):
        super().__init__()
        self.heads = heads
        ctx = context_dim or dim
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(ctx, dim, bias=False)
        self.to_v = nn.Linear(ctx, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (B, N, D), ``context`` (B, M, Dc) (None: self-attention) -> (B, N, D)."""
        ctx = x if context is None else context
        b, n, d = x.shape
        h = self.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, t.shape[1], h, d // h).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.to_q(x)), split(self.to_k(ctx)), split(self.to_v(ctx)))
        return self.to_out(out.transpose(1, 2).reshape(b, n, d))


class MLP(nn.Sequential):
    def __init__(self, dim: int, ratio: float):
        hidden = int(dim * ratio)
        super().__init__(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))


class TriplaneBlock(nn.Module):
    """Cross-attention to the image tokens, self-attention among the triplane tokens, MLP (pre-norm)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, context_dim: int):
        super().__init__()
        self.norm_cross = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(context_dim)
        self.cross = Attention(dim, heads, context_dim)
        self.norm_self = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_ratio)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.cross(self.norm_cross(x), self.norm_context(context))
        x = x + self.attn(self.norm_self(x))
        return x + self.mlp(self.norm_mlp(x))


class EncoderBlock(nn.Module):
    """ViT block: self-attention + MLP (pre-norm)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def _groups(c: int) -> int:
    return math.gcd(c, 8)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1)
        self.norm1 = nn.GroupNorm(_groups(cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.skip = nn.Identity() if cin == cout and stride == 1 else nn.Conv2d(cin, cout, 1, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.silu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return F.silu(y + self.skip(x))


class ConvEncoder(nn.Module):
    """Residual CNN: features at 1/2, 1/4 and 1/8 of the input (the last are the image tokens)."""

    def __init__(self, cin: int, widths: tuple[int, ...]):
        super().__init__()
        c0, c1, c2, c3 = widths
        self.stem = ResBlock(cin, c0)
        self.down1 = ResBlock(c0, c1, 2)
        self.down2 = nn.Sequential(ResBlock(c1, c2, 2), ResBlock(c2, c2))
        self.down3 = nn.Sequential(ResBlock(c2, c3, 2), ResBlock(c3, c3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f1 = self.down1(self.stem(x))
        f2 = self.down2(f1)
        return f1, f2, self.down3(f2)


class ViTEncoder(nn.Module):
    """Patch embedding + transformer blocks (the paper's DINO-ViT shape, trained from scratch here).
    Returns the token map at 1/patch resolution three times (no finer features for lifting)."""

    def __init__(self, cin: int, dim: int, patch: int, depth: int, heads: int, mlp_ratio: float, grid: int):
        super().__init__()
        self.patch = nn.Conv2d(cin, dim, patch, patch)
        self.pos = nn.Parameter(torch.randn(1, grid * grid, dim) * 0.02)
        self.blocks = nn.ModuleList(EncoderBlock(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor):
        t = self.patch(x)
        n, d, h, w = t.shape
        t = t.flatten(2).transpose(1, 2) + self.pos
        for blk in self.blocks:
            t = blk(t)
        t = self.norm(t).transpose(1, 2).reshape(n, d, h, w)
        return t, t, t


def _decoder(cin: int, hidden: int, layers: int, cout: int) -> nn.Sequential:
    mods: list[nn.Module] = [nn.Linear(cin, hidden), nn.SiLU()]
    for _ in range(layers - 1):
        mods += [nn.Linear(hidden, hidden), nn.SiLU()]
    mods.append(nn.Linear(hidden, cout))
    return nn.Sequential(*mods)


def plane_points(res: int, bound: float = 1.0, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """``(3, res * res, 3)`` world points at the texel centres of the XY, XZ and YZ planes (the third
    coordinate 0), row-major (H then W) as :mod:`stdgen.geometry.triplane` lays the planes out."""
    c = ((2 * torch.arange(res, device=device, dtype=dtype) + 1) / res - 1) * bound
    hh, ww = torch.meshgrid(c, c, indexing="ij")
    out = torch.zeros(3, res * res, 3, device=device, dtype=dtype)
    for k, (a0, a1) in enumerate(PLANE_AXES):
        out[k, :, a0] = ww.reshape(-1)
        out[k, :, a1] = hh.reshape(-1)
    return out


def ortho_lift(features: torch.Tensor, full_proj: torch.Tensor, world_to_cam: torch.Tensor, res: int,
               bound: float = 1.0) -> torch.Tensor:
    """Place view features on the planes the views look straight at.

    A view whose axis is parallel to a plane's normal (front/back -> XY, sides -> YZ, top/bottom ->
    XZ) sees every point of a plane texel's line at one pixel: that pixel's features go to the texel,
    averaged over such views. Other views contribute nothing (their features reach the planes
    through cross-attention).

    Args:
        features: ``(B, V, C, h, w)`` per-view feature maps.
        full_proj: ``(B, V, 4, 4)`` normalised-frame ``proj @ world_to_cam``.
        world_to_cam: ``(B, V, 4, 4)`` normalised-frame view matrices (for the view axes).
        res: plane side.

    Returns:
        ``(B, 3, C, res, res)``.
    """
    with torch.autocast(features.device.type, enabled=False):  # in float32, never bf16
        return _ortho_lift(features.float(), full_proj.float(), world_to_cam.float(), res, bound).to(features.dtype)


def _ortho_lift(features, full_proj, world_to_cam, res, bound):
    b, v, c, h, w = features.shape
    pts = plane_points(res, bound, device=features.device, dtype=torch.float32)  # (3, P, 3)
    hom = torch.cat([pts, torch.ones_like(pts[..., :1])], -1).reshape(1, 1, -1, 4)
    clip = hom @ full_proj.transpose(-1, -2)  # (B, V, 3P, 4)
    grid = torch.stack([clip[..., 0], -clip[..., 1]], -1) / clip[..., 3:4]  # row 0 = NDC y +1
    sampled = F.grid_sample(features.reshape(b * v, c, h, w), grid.reshape(b * v, 1, -1, 2),
                            mode="bilinear", padding_mode="zeros", align_corners=False)
    sampled = sampled.reshape(b, v, c, 3, res, res)
    # Viewing directions (the camera looks down -Z), normalised: a normalised-frame view matrix
    # carries the framing's scale in its rotation rows.
    axis = -world_to_cam[..., 2, :3].float()
    axis = axis / axis.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    normals = torch.eye(3, device=axis.device, dtype=axis.dtype)[[2, 1, 0]]  # XY->z, XZ->y, YZ->x
    aligned = ((axis @ normals.T).abs() > 0.99).float()  # (B, V, 3)
    weight = aligned / aligned.sum(1, keepdim=True).clamp_min(1)
    return torch.einsum("bvcpij,bvp->bpcij", sampled, weight)


# --- the model ------------------------------------------------------------------------------------


class SLRM(ModelMixin, nn.Module):
    """Semantic large reconstruction model (see the module docstring)."""

    config_class = SLRMConfig

    def __init__(self, config: SLRMConfig):
        super().__init__()
        self.config = config
        c = config
        cin = c.in_channels + 6  # + Plücker rays
        if c.encoder == "conv":
            self.encoder = ConvEncoder(cin, c.encoder_channels)
            fine_c, mid_c, token_c = c.encoder_channels[1], c.encoder_channels[2], c.encoder_channels[3]
        else:
            grid = c.image_size // c.patch_size
            token_c = c.encoder_channels[3]
            self.encoder = ViTEncoder(cin, token_c, c.patch_size, c.encoder_depth, max(1, token_c // 64), c.mlp_ratio,
                                      grid)
            fine_c = mid_c = token_c
        self.tokens = nn.Parameter(torch.randn(1, 3 * c.token_res**2, c.dim) * 0.02)
        self.view_embed = nn.Linear(6, token_c)  # Plücker ray of each token's pixel, as its position
        self.lift_mid = nn.Conv2d(mid_c, c.dim, 1) if c.lift == "ortho" else None
        self.lift_fine = nn.Conv2d(fine_c, c.triplane_channels, 1) if c.lift == "ortho" else None
        self.blocks = nn.ModuleList(TriplaneBlock(c.dim, c.heads, c.mlp_ratio, token_c) for _ in range(c.depth))
        self.norm = nn.LayerNorm(c.dim)
        up = []
        ch = c.dim
        for k in range(int(math.log2(c.triplane_res // c.token_res))):
            nxt = c.triplane_channels if k == int(math.log2(c.triplane_res // c.token_res)) - 1 else max(
                c.triplane_channels, ch // 2)
            up += [nn.ConvTranspose2d(ch, nxt, 2, 2), nn.SiLU()]
            ch = nxt
        up.append(nn.Conv2d(ch, c.triplane_channels, 3, 1, 1))
        self.upsample = nn.Sequential(*up)
        self.refine_planes = nn.Sequential(nn.SiLU(), nn.Conv2d(c.triplane_channels, c.triplane_channels, 3, 1, 1))
        feat = 3 * c.triplane_channels
        self.sdf_decoder = _decoder(feat, c.decoder_hidden, c.decoder_layers, 1)
        self.rgb_decoder = _decoder(feat, c.decoder_hidden, c.decoder_layers, 3)
        self.sem_decoder = _decoder(feat, c.decoder_hidden, c.decoder_layers, c.num_classes)
        self.log_beta = nn.Parameter(torch.tensor(math.log(c.beta_init)))
        if c.lora_rank > 0:
            self._inject_lora()

    # -- LoRA --

    def _inject_lora(self) -> None:
        from peft import LoraConfig, inject_adapter_in_model

        c = self.config
        cfg = LoraConfig(r=c.lora_rank, lora_alpha=c.lora_alpha or c.lora_rank, target_modules=list(LORA_TARGETS),
                         lora_dropout=0.0, bias="none")
        # Only the triplane transformer's attention (the paper's "self- and cross-attention blocks").
        inject_adapter_in_model(cfg, self.blocks)

    def add_lora(self, rank: int, alpha: float | None = None) -> None:
        """Add LoRA adapters in place (the base weights are kept; adapters start as a zero change)."""
        if self.config.lora_rank:
            raise ValueError("the model already has LoRA adapters")
        if rank < 1:
            raise ValueError(f"rank: expected >= 1, got {rank}")
        self.config = dataclasses.replace(self.config, lora_rank=rank, lora_alpha=float(alpha or rank))
        device = next(self.parameters()).device
        self._inject_lora()
        self.to(device)

    def merged(self) -> SLRM:
        """An equivalent model without adapters (LoRA folded into the base weights)."""
        if not self.config.lora_rank:
            return self
        sd = self.state_dict()
        scale = self.config.lora_alpha / self.config.lora_rank
        out: dict[str, torch.Tensor] = {}
        for k, t in sd.items():
            if "lora_" in k:
                continue
            if k.endswith(".base_layer.weight"):
                stem = k[: -len(".base_layer.weight")]
                a = sd[f"{stem}.lora_A.default.weight"]
                b = sd[f"{stem}.lora_B.default.weight"]
                out[f"{stem}.weight"] = t + scale * (b.float() @ a.float()).to(t.dtype)
            elif ".base_layer." in k:
                out[k.replace(".base_layer.", ".")] = t
            else:
                out[k] = t
        plain = SLRM(dataclasses.replace(self.config, lora_rank=0, lora_alpha=0.0))
        plain.load_state_dict(out, strict=True)
        return plain.to(next(self.parameters()).device)

    def lora_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if "lora_" in n]

    # -- forward --

    @property
    def beta(self) -> torch.Tensor:
        return self.log_beta.exp().clamp_min(self.config.beta_min)

    def forward(self, images: torch.Tensor, world_to_cam: torch.Tensor, proj: torch.Tensor,
                points: torch.Tensor | None = None) -> SLRMOutput:
        """Images -> triplane (:meth:`encode`), and the field at ``points`` ``(B, N, 3)`` (normalised
        frame) when given (:meth:`query`). Training goes through here (under DDP only ``forward``'s
        computation has its gradients averaged)."""
        planes = self.encode(images, world_to_cam, proj)
        return SLRMOutput(planes, None if points is None else self.query(planes, points))

    def widen_input_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Weights of an RGB-input model (``in_channels`` 3) -> this model's when it also reads normal
        maps (``in_channels`` 6): every weight that takes the encoder's input (image channels, then
        the 6 Plücker channels) gets zero weights for the three normal channels, inserted after the
        colour ones, so the widened model computes exactly what the RGB model did until training
        moves them. Other states pass unchanged."""
        extra = self.config.in_channels - 3
        if extra <= 0:
            return state
        own = self.state_dict()
        for k, w in list(state.items()):
            want = own.get(k)
            if (want is not None and w.dim() >= 2 and want.dim() == w.dim() and w.shape[1] == 3 + 6
                    and want.shape[1] == 3 + extra + 6 and w.shape[0] == want.shape[0]):
                zeros = w.new_zeros(w.shape[0], extra, *w.shape[2:])
                state[k] = torch.cat([w[:, :3], zeros, w[:, 3:]], dim=1)
        return state

    def encode(self, images: torch.Tensor, world_to_cam: torch.Tensor, proj: torch.Tensor) -> torch.Tensor:
        """Images -> triplane.

        Args:
            images: ``(B, V, C, H, W)`` input views in [0, 1] (RGB, or RGB + normals as (n+1)/2).
            world_to_cam, proj: ``(B, V, 4, 4)`` or ``(V, 4, 4)`` cameras in the normalised frame.

        Returns:
            planes ``(B, 3, Ct, R, R)`` (XY, XZ, YZ).
        """
        c = self.config
        check_tensor(images, "images", (None, None, c.in_channels, c.image_size, c.image_size))
        b, v = images.shape[:2]
        w2c = world_to_cam.to(images.dtype).expand(b, v, 4, 4)
        pr = proj.to(images.dtype).expand(b, v, 4, 4)
        ndc = pixel_ndc(c.image_size, c.image_size, device=images.device, dtype=torch.float32)
        o, d, _ = camera_rays(w2c.float(), pr.float(), ndc.reshape(1, 1, -1, 2).expand(b, v, -1, 2))
        rays = plucker(o, d).to(images.dtype)  # (B, V, H*W, 6)
        x = torch.cat([images, rays.transpose(-1, -2).reshape(b, v, 6, c.image_size, c.image_size)], 2)
        f_fine, f_mid, f_tok = self.encoder(x.reshape(b * v, -1, c.image_size, c.image_size))
        th, tw = f_tok.shape[-2:]
        tok_ndc = pixel_ndc(th, tw, device=images.device, dtype=torch.float32).reshape(1, 1, -1, 2)
        to, td, _ = camera_rays(w2c.float(), pr.float(), tok_ndc.expand(b, v, -1, 2))
        context = f_tok.reshape(b, v, -1, th * tw).transpose(-1, -2) + self.view_embed(plucker(to, td).to(f_tok.dtype))
        context = context.reshape(b, v * th * tw, -1)
        tokens = self.tokens.expand(b, -1, -1).to(images.dtype)
        with torch.autocast(images.device.type, enabled=False):
            full_proj = pr.float() @ w2c.float()
        if self.lift_mid is not None:
            mid = self.lift_mid(f_mid).reshape(b, v, c.dim, *f_mid.shape[-2:])
            lifted = ortho_lift(mid, full_proj, w2c, c.token_res)  # (B, 3, D, T, T)
            tokens = tokens + lifted.permute(0, 1, 3, 4, 2).reshape(b, -1, c.dim)
        for blk in self.blocks:
            tokens = blk(tokens, context)
        tokens = self.norm(tokens)
        grid = tokens.reshape(b * 3, c.token_res, c.token_res, c.dim).permute(0, 3, 1, 2)
        planes = self.upsample(grid)
        if self.lift_fine is not None:
            fine = self.lift_fine(f_fine).reshape(b, v, c.triplane_channels, *f_fine.shape[-2:])
            planes = planes + ortho_lift(fine, full_proj, w2c, c.triplane_res).reshape_as(planes)
        planes = planes + self.refine_planes(planes)
        return planes.reshape(b, 3, c.triplane_channels, c.triplane_res, c.triplane_res)

    def query(self, planes: torch.Tensor, points: torch.Tensor) -> FieldOutput:
        """The field at ``points`` ``(B, N, 3)`` (normalised frame) from ``planes`` ``(B, 3, Ct, R, R)``."""
        # Sample in float32: bf16 positions would be off by up to 1/8 texel near the box's faces.
        feat = sample_triplane(planes.float(), points.float())
        sdf = self.sdf_decoder(feat)[..., 0]
        if self.config.sphere_prior > 0:
            sdf = sdf + (points.norm(dim=-1) - self.config.sphere_prior).to(sdf.dtype)
        rgb = torch.sigmoid(self.rgb_decoder(feat))
        return FieldOutput(sdf, self.density(sdf.float()), rgb, self.sem_decoder(feat))

    def density(self, sdf: torch.Tensor) -> torch.Tensor:
        """VolSDF density ``(...)`` from signed distances ``(...)``: ``alpha * Psi_beta(-sdf)``,
        ``alpha = 1 / beta``, Psi the Laplace CDF."""
        beta = self.beta.to(sdf.dtype)
        s = -sdf / beta
        psi = torch.where(s <= 0, 0.5 * torch.exp(s.clamp_max(0)), 1 - 0.5 * torch.exp(-s.clamp_min(0)))
        return psi / beta
