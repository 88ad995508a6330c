"""``stdgen train segment``: the figure segmenter's training task and presets.

Batches come on the fly from :class:`~stdgen.data.stream.RenderStream` (training seeds; pool mode:
arm-angle-augmented A-poses, random clothes / hair colours, a random key light per variant): the
*lit* (cel-shaded) renders of the six generation views plus ``random_views`` perspective views at
random azimuths and elevations, ``views_per_character`` of them drawn per character. On the
device each picture is zoomed and moved (figures small, large or cut by the frame), composited
over a synthetic background (:mod:`stdgen.train.backgrounds`) and restyled
(:func:`stdgen.train.augment.style_augment`: outlines, toon bands, colour shifts, blur, JPEG). The
target is the render's alpha. Loss: binary cross-entropy on the logits plus soft IoU (Dice).
Validation: IoU at alpha 0.5 on the first ``val_characters`` validation seeds (front and one random
view) over fixed backgrounds of every kind.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from stdgen.models.segment import Segmenter, paper_config, small_config, tiny_config
from stdgen.train import Preset, Task, TrainConfig, unwrap
from stdgen.train.augment import affine_jitter, style_augment
from stdgen.train.backgrounds import KINDS, random_kinds, synthetic_backgrounds
from stdgen.utils.config import check_range

log = logging.getLogger(__name__)

#: Index of the front view among the stream's generation views.
_FRONT = 2
#: Seed of the validation backgrounds.
_VAL_SEED = 20_261_206


@dataclass
class SegmentPreset(Preset):
    """Task fields on top of the trainer's (``model``, ``train``, ``batch_size`` = characters per step).

    ``resolution``: training image side (a multiple of the model's ``multiple``);
    ``stream_workers`` / ``pool_size`` / ``pool_start``: the RenderStream's character workers, the
    pool per worker and the training index it starts at; ``random_views``: perspective views per
    character besides the six generation views; ``views_per_character``: pictures drawn from those
    per character (the step sees ``batch_size * views_per_character`` pictures);
    ``scale_range``: zoom of the figure about the centre (< 1 smaller, > 1 larger and possibly cut
    by the frame); ``shift_jitter``: move of up to that fraction of the side; ``style_probability``:
    per-style probability of :func:`style_augment`; ``bce_weight`` / ``dice_weight``: loss weights;
    ``val_characters``: validation seeds (two pictures each); ``image_samples``: rows in the grids.
    """

    resolution: int = 256
    stream_workers: int = 14
    pool_size: int = 48
    pool_start: int = 0
    random_views: int = 4
    views_per_character: int = 4
    scale_range: tuple[float, float] = (0.55, 1.3)
    shift_jitter: float = 0.15
    style_probability: float = 0.3
    bce_weight: float = 1.0
    dice_weight: float = 1.0
    val_characters: int = 16
    image_samples: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "scale_range", tuple(float(s) for s in self.scale_range))
        m = self.model.multiple
        if self.resolution < m or self.resolution % m:
            raise ValueError(f"resolution: expected a positive multiple of {m}, got {self.resolution}")
        lo, hi = self.scale_range if len(self.scale_range) == 2 else (0.0, -1.0)
        if not 0.1 <= lo <= hi <= 4.0:
            raise ValueError(f"scale_range: expected (low, high) with 0.1 <= low <= high <= 4, got {self.scale_range}")
        check_range(self, "shift_jitter", 0.0, 0.5, hi_open=True)
        check_range(self, "style_probability", 0.0, 1.0)
        if not 1 <= self.views_per_character <= 6 + self.random_views:
            raise ValueError(f"views_per_character: expected 1 .. {6 + self.random_views} (6 + random_views), "
                             f"got {self.views_per_character}")
        for name in ("stream_workers", "pool_size", "pool_start", "random_views", "val_characters", "image_samples"):
            check_range(self, name, 0, integer=True)
        for name in ("bce_weight", "dice_weight"):
            check_range(self, name, 0.0)


def tiny() -> SegmentPreset:
    """CPU smoke runs: 32 px, a pool of two characters, no workers."""
    return SegmentPreset(model=tiny_config(), train=TrainConfig(warmup_steps=2, max_steps=50, ema_decay=0.0,
                                                                log_every=1, image_every=10, val_every=10),
                         batch_size=2, resolution=32, stream_workers=0, pool_size=2, random_views=1,
                         views_per_character=2, val_characters=2, image_samples=2)


def small() -> SegmentPreset:
    """The size to train and bundle: 8 characters x 4 views = 32 pictures of 256 px per step."""
    return SegmentPreset(model=small_config(), train=TrainConfig(lr=1e-3, warmup_steps=500, max_steps=20_000,
                                                                 ema_decay=0.999, image_every=1000,
                                                                 val_every=1000),
                         batch_size=8)


def paper() -> SegmentPreset:
    """The paper has no segmenter: the same as :func:`small`."""
    p = small()
    return SegmentPreset(**{**{k: getattr(p, k) for k in p.__dataclass_fields__}, "model": paper_config()})


def soft_iou_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Dice loss ``1 - (2 |P T| + eps) / (|P| + |T| + eps)`` per image, averaged; ``logits`` and
    ``target`` ``(N, 1, H, W)`` (target alpha in [0, 1])."""
    p = torch.sigmoid(logits.float())
    t = target.float()
    inter = (p * t).sum(dim=(1, 2, 3))
    return (1 - (2 * inter + eps) / (p.sum(dim=(1, 2, 3)) + t.sum(dim=(1, 2, 3)) + eps)).mean()


def mask_iou(pred: torch.Tensor, true: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """``(N,)`` IoU of ``pred > threshold`` and ``true > threshold``, both ``(N, 1, H, W)``
    (1 where both are empty)."""
    a, b = pred > threshold, true > threshold
    inter = (a & b).sum(dim=(1, 2, 3)).float()
    union = (a | b).sum(dim=(1, 2, 3)).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def compose(lit: torch.Tensor, alpha: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """``lit`` ``(N, 3, H, W)`` premultiplied colour (over black) + ``alpha`` ``(N, 1, H, W)`` over
    ``background`` ``(N, 3, H, W)`` -> ``(N, 3, H, W)`` in [0, 1]."""
    return (lit + background * (1 - alpha)).clamp(0, 1)


class SegmentTask(Task):
    """See the module docstring."""

    name = "segment"

    def __init__(self, preset: SegmentPreset):
        super().__init__(preset)
        self.preset = preset
        self._val: tuple[torch.Tensor, torch.Tensor] | None = None

    def build_model(self) -> Segmenter:
        return Segmenter(self.preset.model)

    # ----------------------------------------------------------------------------------- data
    def batches(self, *, rank: int, world_size: int, device: torch.device, seed: int, start: int = 0):
        """Endless ``{"image": (N, 3, H, W) [0, 1], "alpha": (N, 1, H, W) [0, 1]}`` on ``device``,
        ``N = local batch x views_per_character``. A resumed run (``start`` steps done) starts
        further along the training seeds."""
        from stdgen.data.stream import RenderStream, StreamConfig

        p = self.preset
        device = torch.device(device)
        gen = torch.Generator(device=device).manual_seed(seed * 7919 + rank)
        rng = np.random.default_rng([seed, rank, start])
        cfg = StreamConfig(batch_size=self.local_batch_size(world_size), resolution=p.resolution, views="gen",
                           random_views=p.random_views, layers=("full",), maps=("lit", "normal", "depth"),
                           split="train", start=p.pool_start + start * p.batch_size, workers=p.stream_workers,
                           pool_size=p.pool_size, background="black", random_light=True, device=str(device),
                           rank=rank, world_size=world_size, seed=seed * 1009 + start)
        for raw in RenderStream(cfg):
            yield self.make_batch(raw, gen, rng)

    def make_batch(self, raw: dict, generator: torch.Generator | None = None,
                   rng: np.random.Generator | None = None) -> dict:
        """A stream batch (``lit`` over black, ``alpha``, ``normal``, ``depth``: ``(B, 1, V, C, H, W)``)
        -> the training batch: views drawn, jittered, composited over backgrounds and restyled."""
        p = self.preset
        rng = rng if rng is not None else np.random.default_rng(0)
        maps = [raw["lit"][:, 0], raw["alpha"][:, 0], raw["normal"][:, 0]]
        if "depth" in raw:
            maps.append(raw["depth"][:, 0])
        stack = torch.cat(maps, dim=2)  # (B, V, C, H, W)
        b, v, c, h, w = stack.shape
        dev = stack.device
        k = min(p.views_per_character, v)
        pick = torch.rand(b, v, device=dev, generator=generator).argsort(dim=1)[:, :k]  # k distinct views each
        stack = stack.gather(1, pick[:, :, None, None, None].expand(b, k, c, h, w)).reshape(b * k, c, h, w)
        n = b * k
        lo, hi = p.scale_range
        scale = lo + (hi - lo) * torch.rand(n, device=dev, generator=generator)
        shift = p.shift_jitter * (2 * torch.rand(n, 2, device=dev, generator=generator) - 1)
        # Off the render everything is 0 (black, transparent), so the border padding adds nothing.
        stack = affine_jitter(stack, scale, shift)
        lit, alpha, normal = stack[:, :3], stack[:, 3:4].clamp(0, 1), stack[:, 4:7]
        depth = stack[:, 7:8] if stack.shape[1] > 7 else None
        bg = synthetic_backgrounds(random_kinds(n, rng), h, device=dev, generator=generator)
        image = compose(lit, alpha, bg)
        image = style_augment(image, alpha, normal, depth, probability=p.style_probability, generator=generator)
        return {"image": image, "alpha": alpha}

    # ----------------------------------------------------------------------------------- losses
    def losses(self, model, batch: dict, step: int) -> dict[str, torch.Tensor]:
        p = self.preset
        logits = model(batch["image"]).logits
        target = batch["alpha"].to(logits.dtype)
        bce = F.binary_cross_entropy_with_logits(logits.float(), target.float())
        return {"bce": p.bce_weight * bce, "dice": p.dice_weight * soft_iou_loss(logits, target)}

    # ----------------------------------------------------------------------------------- looking
    def images(self, model, batch: dict) -> dict[str, torch.Tensor]:
        """``{"samples": (N, 3, H, 4W)}``: per sample the input, the predicted alpha, the true alpha and
        the predicted cut-out over a grey checkerboard."""
        model = unwrap(model)
        n = max(1, min(self.preset.image_samples, batch["image"].shape[0]))
        image, alpha = batch["image"][:n].float(), batch["alpha"][:n].float()
        pred = torch.sigmoid(model(image).logits.float())
        return {"samples": segmentation_grid(image, pred, alpha)}

    def _validation_batch(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Fixed pictures: each validation character's front view and first random view (fixed light)
        over backgrounds cycling through every kind, drawn from a fixed CPU seed."""
        if self._val is None:
            from stdgen.data.stream import RenderStream, StreamConfig

            p = self.preset
            cfg = StreamConfig(batch_size=p.val_characters, resolution=p.resolution, views="gen", random_views=1,
                               layers=("full",), maps=("lit",), split="validation", count=p.val_characters,
                               background="black", random_light=False, device=str(device))
            raw = next(iter(RenderStream(cfg)))
            lit = raw["lit"][:, 0, [_FRONT, 6]].flatten(0, 1).float().cpu()  # (2C, 3, H, W)
            alpha = raw["alpha"][:, 0, [_FRONT, 6]].flatten(0, 1).float().cpu()
            kinds = [i % len(KINDS) for i in range(lit.shape[0])]
            bg = synthetic_backgrounds(kinds, lit.shape[-1], generator=torch.Generator().manual_seed(_VAL_SEED))
            self._val = (compose(lit, alpha, bg), alpha)
        return self._val

    def validate(self, model, device) -> dict[str, float]:
        """``val/iou`` (mean) and ``val/iou_min`` at alpha 0.5 over the fixed validation pictures."""
        if self.preset.val_characters == 0:
            return {}
        model = unwrap(model)
        device = torch.device(device)
        image, alpha = self._validation_batch(device)
        preds = []
        for i in range(0, image.shape[0], 16):
            preds.append(torch.sigmoid(model(image[i:i + 16].to(device)).logits.float()).cpu())
        iou = mask_iou(torch.cat(preds), alpha)
        return {"val/iou": float(iou.mean()), "val/iou_min": float(iou.min())}


def segmentation_grid(image: torch.Tensor, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """``image`` ``(N, 3, H, W)``, ``pred`` / ``true`` ``(N, 1, H, W)`` alpha in [0, 1] -> ``(N, 3, H,
    4W)``: input | predicted alpha | true alpha | cut-out over a grey checkerboard."""
    n, _, h, w = image.shape
    yy, xx = torch.meshgrid(torch.arange(h, device=image.device), torch.arange(w, device=image.device), indexing="ij")
    cell = max(1, h // 16)
    checks = (0.6 + 0.2 * (((yy // cell) + (xx // cell)) % 2)).float().expand(n, 3, h, w)
    cut = image * pred + checks * (1 - pred)
    return torch.cat([image, pred.expand(n, 3, h, w), true.expand(n, 3, h, w), cut], dim=3).clamp(0, 1)


TASK = SegmentTask
PRESETS = {"tiny": tiny, "small": small, "paper": paper}
