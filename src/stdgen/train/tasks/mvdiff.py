"""``stdgen train mvdiff``: the multi-view diffusion model's training task and presets.

Batches come on the fly from :class:`~stdgen.data.stream.RenderStream` (training seeds, pool mode:
arm-angle-augmented A-poses, random clothes / hair colours, a random key light per variant) at
the six generation views, full layer set: the input is the *lit* front render, jittered in scale
and position and restyled on the GPU (:func:`stdgen.train.augment.style_augment`, outlines from the front view's depth
and normals); the targets are
the six views' *unlit* RGB + alpha and world normals. Loss: flow-matching velocity MSE per domain,
with the condition dropped for classifier-free guidance. Resolution follows the preset's
``resolution_schedule`` (progressive: e.g. 128 then 256).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from stdgen.models.diffusion.flow import training_flow
from stdgen.models.mvdiffusion import (
    FRONT_VIEW,
    MultiViewDiffusion,
    paper_config,
    small_config,
    tiny_config,
)
from stdgen.train import Preset, Task, TrainConfig, unwrap
from stdgen.train.augment import affine_jitter, style_augment
from stdgen.utils.config import check_range

log = logging.getLogger(__name__)


@dataclass
class MultiViewPreset(Preset):
    """Task fields on top of the trainer's (``model``, ``train``, ``batch_size``).

    ``resolution_schedule``: ``((from_step, side), ...)`` ascending steps, the first from 0 (on the
    command line as JSON: ``--set 'resolution_schedule=[[0,128],[8000,256]]'``);
    ``stream_workers`` / ``pool_size`` / ``pool_start`` / ``pool_refresh``: the RenderStream's
    character workers, the pool per worker, the training index it starts at (move it between chunks
    for new characters) and the share of draws that swap a pool member for a new character;
    ``cond_dropout``: probability of dropping the condition (guidance);
    ``style_probability``: per-style probability in :func:`style_augment`; ``scale_jitter`` /
    ``shift_jitter``: input zoom ``1 +- scale_jitter`` and shift ``+- shift_jitter`` of the side;
    ``rgb_weight`` / ``alpha_weight`` / ``normal_weight``: loss weights; ``sigma_logit_mean``: mean
    of the logit-normal training times (0: the model's schedule; > 0 draws more steps near pure
    noise, where the layout the sampler commits to in its first step is learned; see
    :func:`stdgen.models.diffusion.flow.training_flow`); ``val_characters`` /
    ``val_steps`` / ``val_guidance``: validation size and sampling; ``image_samples``: samples in
    the TensorBoard grids; ``batch_repeats``: optimiser steps per streamed batch, each with its own
    jitter, style augmentation and noise (the character stream, not the GPU, bounds these small
    models: about 2.4 characters/s per CPU worker).
    """

    resolution_schedule: tuple[tuple[int, int], ...] = ((0, 128),)
    stream_workers: int = 14
    pool_size: int = 48
    pool_start: int = 0
    pool_refresh: float = 0.0
    cond_dropout: float = 0.1
    style_probability: float = 0.3
    scale_jitter: float = 0.05
    shift_jitter: float = 0.03
    rgb_weight: float = 1.0
    alpha_weight: float = 1.0
    normal_weight: float = 1.0
    sigma_logit_mean: float = 0.0
    val_characters: int = 16
    val_steps: int = 10
    val_guidance: float | None = None
    image_samples: int = 2
    batch_repeats: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        sched = tuple(tuple(s) for s in self.resolution_schedule)
        object.__setattr__(self, "resolution_schedule", sched)
        if not sched or sched[0][0] != 0 or any(a[0] >= b[0] for a, b in zip(sched, sched[1:])):
            raise ValueError(f"resolution_schedule: expected ((0, side), (step, side), ...) with ascending steps, "
                             f"got {sched}")
        step = getattr(self.model, "patch_size", 1) * 2 ** (len(self.model.channels) - 1)
        for _, side in sched:
            if side < step or side % step:
                raise ValueError(f"resolution_schedule: sides must be positive multiples of {step}, got {side}")
        for name in ("cond_dropout", "pool_refresh", "style_probability"):
            check_range(self, name, 0.0, 1.0)
        for name in ("scale_jitter", "shift_jitter"):
            check_range(self, name, 0.0, 0.5, hi_open=True)
        check_range(self, "sigma_logit_mean", -4.0, 4.0)
        for name in ("stream_workers", "pool_size", "pool_start", "val_characters", "image_samples"):
            check_range(self, name, 0, integer=True)
        check_range(self, "val_steps", 1, integer=True)
        check_range(self, "batch_repeats", 1, integer=True)

    def resolution(self, step: int) -> int:
        """The image side at training ``step``."""
        side = self.resolution_schedule[0][1]
        for start, s in self.resolution_schedule:
            if step >= start:
                side = s
        return side


def tiny() -> MultiViewPreset:
    """CPU smoke runs: 16 px, a pool of two characters per worker, no workers."""
    return MultiViewPreset(model=tiny_config(), train=TrainConfig(warmup_steps=2, max_steps=50, ema_decay=0.0,
                                                                  log_every=1, image_every=10, val_every=10),
                           batch_size=2, resolution_schedule=((0, 16),), stream_workers=0, pool_size=2,
                           val_characters=2, val_steps=2, image_samples=1)


def small() -> MultiViewPreset:
    """The trained, bundled size: batch 16, 128 px then 256 px from step 12 000 (at ~5 it/s on an
    H100 at 128 px that is ~40 GPU-minutes; resume chunks with ``--resume``)."""
    return MultiViewPreset(model=dataclasses.replace(small_config(), pixel_refiner=32),  # session f: 2-px checker
                           train=TrainConfig(lr=3e-4, warmup_steps=500, max_steps=20_000, ema_decay=0.999,
                                             image_every=1000, val_every=2000),
                           batch_size=16, resolution_schedule=((0, 128), (12_000, 256)),
                           sigma_logit_mean=1.0,  # session e: IoU 0.81 -> 0.89 in 15 minutes
                           pool_refresh=0.05)  # a fixed pool of 192 taught it ponytails (session e)


def paper() -> MultiViewPreset:
    """The paper's schedule on the paper-size model (512 -> 768 -> 1024 px at lr 5e-5): a
    reference, not trainable within this project's budget."""
    return MultiViewPreset(model=paper_config(), train=TrainConfig(lr=5e-5, warmup_steps=1000, max_steps=60_000),
                           batch_size=32, resolution_schedule=((0, 512), (30_000, 768), (50_000, 1024)),
                           val_characters=16, val_steps=30)


def _resize(x: torch.Tensor, side: int) -> torch.Tensor:
    """``(..., C, H, W)`` -> ``(..., C, side, side)`` (area when shrinking, bilinear when growing)."""
    if x.shape[-1] == side:
        return x
    lead = x.shape[:-3]
    flat = x.reshape(-1, *x.shape[-3:])
    mode = "area" if side < x.shape[-1] else "bilinear"
    kw = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(flat, size=(side, side), mode=mode, **kw).reshape(*lead, x.shape[-3], side, side)


def targets_from_stream(batch: dict) -> torch.Tensor:
    """A RenderStream batch (views ``gen``, one layer set) -> ``(B, 2, 6, 4, H, W)`` targets in
    model space: unlit RGB + alpha, normals + alpha, all in [-1, 1]."""
    rgb, alpha, normal = batch["rgb"][:, 0], batch["alpha"][:, 0], batch["normal"][:, 0]
    a = alpha * 2 - 1
    return torch.stack([torch.cat([rgb * 2 - 1, a], dim=2), torch.cat([normal, a], dim=2)], dim=1)


def multiview_metrics(pred: torch.Tensor, true: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-view metrics of generated vs true views, both ``(B, 2, V, 4, H, W)`` in [0, 1] (colour over
    white + alpha; normals as ``(n + 1) / 2`` + alpha): ``(B, V)`` float64 ``ssim``, ``psnr``,
    ``psnr_fg`` (over the union of the silhouettes), ``mask_iou`` and ``normal_deg`` (where both
    have a surface), from :func:`stdgen.eval.view_metrics`."""
    from stdgen.eval.protocol import view_metrics

    def normals(x: torch.Tensor) -> torch.Tensor:
        n = F.normalize(x[:, 1, :, :3].float() * 2 - 1, dim=2, eps=1e-6)
        return (n * (x[:, 0, :, 3:4] > 0.5)).permute(0, 1, 3, 4, 2)

    cl = lambda x: x.float().permute(0, 1, 3, 4, 2)  # (B, V, C, H, W) -> (B, V, H, W, C)
    m = view_metrics(cl(pred[:, 0, :, :3]), cl(true[:, 0, :, :3]), pred[:, 0, :, 3].float(),
                     true[:, 0, :, 3].float(), pred_normal=normals(pred), true_normal=normals(true))
    return {"ssim": m["ssim"], "psnr": m["psnr"], "psnr_fg": m["psnr_masked"], "mask_iou": m["mask_iou"],
            "normal_deg": m["normal_angle_deg"]}


def condition_from_stream(batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The lit front render as ``(B, 4, H, W)`` RGB over white + alpha in [0, 1], its normals
    ``(B, 3, H, W)`` and depth ``(B, 1, H, W)`` (None if not streamed), for outline augmentation."""
    lit = batch["lit"][:, 0, FRONT_VIEW]
    alpha = batch["alpha"][:, 0, FRONT_VIEW]
    depth = batch["depth"][:, 0, FRONT_VIEW] if "depth" in batch else None
    return torch.cat([lit, alpha], dim=1), batch["normal"][:, 0, FRONT_VIEW], depth


class MultiViewTask(Task):
    """See the module docstring."""

    name = "mvdiff"

    def __init__(self, preset: MultiViewPreset):
        try:
            super().__init__(preset)
        except TypeError:  # a base without an __init__ taking the preset
            super().__init__()
        self.preset = preset
        self._side = preset.resolution(0)
        self._val_batch: tuple[torch.Tensor, torch.Tensor] | None = None

    # ----------------------------------------------------------------------------------- model
    def build_model(self) -> MultiViewDiffusion:
        return MultiViewDiffusion(self.preset.model)

    def adapt_init(self, model, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Weights without the pixel refiner start a run of a model with it (its last layer at zero:
        :meth:`MultiViewDiffusion.complete_state`)."""
        return unwrap(model).complete_state(state)

    # ----------------------------------------------------------------------------------- data
    def _stream(self, side: int, *, rank: int, world_size: int, device: torch.device, seed: int, phase: int,
                start: int = 0):
        from stdgen.data.stream import RenderStream, StreamConfig

        p = self.preset
        per_rank = max(1, p.batch_size // world_size)
        cfg = StreamConfig(batch_size=per_rank, resolution=side, views="gen", layers=("full",),
                           maps=("rgb", "lit", "normal", "depth"), split="train",
                           start=p.pool_start + start * p.batch_size, workers=p.stream_workers,
                           pool_size=p.pool_size, pool_refresh=p.pool_refresh, background="white",
                           random_light=True, device=str(device), rank=rank, world_size=world_size,
                           seed=seed * 1009 + phase + start)
        return RenderStream(cfg)

    def batches(self, *, rank: int, world_size: int, device: torch.device, seed: int, start: int = 0):
        """Endless ``{"target": (B, 2, 6, 4, H, W) model space, "cond": (B, 4, H, W) [0, 1]}`` on
        ``device``. The stream is rebuilt when the schedule's resolution changes. A resumed run
        (``start`` steps done) continues further along the training seeds: in pool mode, a new pool."""
        device = torch.device(device)
        gen = torch.Generator(device=device).manual_seed(seed * 7919 + rank)
        phase = 0
        while True:
            side = self._side
            it = iter(self._stream(side, rank=rank, world_size=world_size, device=device, seed=seed, phase=phase,
                                   start=start))
            try:
                for raw in it:
                    for _ in range(self.preset.batch_repeats):
                        yield self.make_batch(raw, gen)
                    if self._side != side:
                        log.info("mvdiff: resolution %d -> %d, rebuilding the stream", side, self._side)
                        break
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    close()
            phase += 1

    def make_batch(self, raw: dict, generator: torch.Generator | None = None) -> dict:
        """A stream batch -> the training batch, with the condition jittered and restyled."""
        p = self.preset
        target = targets_from_stream(raw)
        cond, normal, depth = condition_from_stream(raw)
        b, dev = cond.shape[0], cond.device
        scale = 1 + p.scale_jitter * (2 * torch.rand(b, device=dev, generator=generator) - 1)
        shift = p.shift_jitter * (2 * torch.rand(b, 2, device=dev, generator=generator) - 1)
        maps = [cond, normal] + ([] if depth is None else [depth])
        moved = affine_jitter(torch.cat(maps, dim=1), scale, shift)
        cond, normal = moved[:, :4], moved[:, 4:7]
        depth = None if depth is None else moved[:, 7:8]
        rgb = style_augment(cond[:, :3], cond[:, 3:4], normal, depth, probability=p.style_probability,
                            generator=generator)
        return {"target": target, "cond": torch.cat([rgb, cond[:, 3:4]], dim=1)}

    # ----------------------------------------------------------------------------------- losses
    def stage(self, step: int) -> int:
        self._side = self.preset.resolution(step)
        return 0

    def losses(self, model: MultiViewDiffusion, batch: dict, step: int) -> dict[str, torch.Tensor]:
        p = self.preset
        side = p.resolution(step)
        self._side = side
        x0 = _resize(batch["target"], side)
        cond = _resize(batch["cond"], side) * 2 - 1
        b = x0.shape[0]
        flow = training_flow(unwrap(model).flow(side), p.sigma_logit_mean)
        noise = torch.randn_like(x0)
        sigma = flow.sample_sigma(b, x0.device)
        keep = torch.rand(b, device=x0.device) >= p.cond_dropout
        out = model(flow.noisy(x0, noise, sigma), sigma, cond, keep).sample
        err = flow.loss(out, x0, noise, sigma)  # (B, 2, V, 4, H, W)
        return {"rgb": p.rgb_weight * err[:, 0, :, :3].mean(),
                "alpha": p.alpha_weight * err[:, :, :, 3].mean(),
                "normal": p.normal_weight * err[:, 1, :, :3].mean()}

    # ----------------------------------------------------------------------------------- looking

    def images(self, model, batch: dict) -> dict[str, torch.Tensor]:
        """``{"samples": (N, 3, 4H, 7W)}``: per sample, rows generated RGB, true RGB, generated
        normals, true normals; the condition in the first column."""
        p = self.preset
        model = unwrap(model)
        n = max(1, min(p.image_samples, batch["cond"].shape[0]))
        cond = batch["cond"][:n].float()
        out = model.sample(cond, seed=0, steps=p.val_steps, guidance=p.val_guidance)
        true = (batch["target"][:n].float() + 1) / 2
        return {"samples": sample_grid(cond, out, true)}

    def _validation_batch(self, device: torch.device, side: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._val_batch is None or self._val_batch[0].shape[-1] != side:
            from stdgen.data.stream import RenderStream, StreamConfig

            p = self.preset
            cfg = StreamConfig(batch_size=max(1, p.val_characters), resolution=side, views="gen", layers=("full",),
                               maps=("rgb", "lit", "normal"), split="validation", count=p.val_characters,
                               background="white", random_light=False, device=str(device))
            raw = next(iter(RenderStream(cfg)))
            cond = condition_from_stream(raw)[0]
            self._val_batch = (cond.cpu(), ((targets_from_stream(raw) + 1) / 2).cpu())
        return self._val_batch

    def validate(self, model, device) -> dict[str, float]:
        """Mean metrics over the first ``val_characters`` validation seeds, from their lit A-pose
        front render (fixed light), sampled with seed 0."""
        p = self.preset
        if p.val_characters == 0:
            return {}
        model = unwrap(model)
        device = torch.device(device)
        cond, true = self._validation_batch(device, self._side)
        outs = []
        for i in range(0, cond.shape[0], 8):
            outs.append(model.sample(cond[i:i + 8].to(device), seed=i, steps=p.val_steps,
                                     guidance=p.val_guidance).float())
        m = multiview_metrics(torch.cat(outs), true.to(device))
        return {f"val/{k}": float(torch.nanmean(v).item()) for k, v in m.items()}


def sample_grid(cond: torch.Tensor, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """``cond`` ``(N, 4, H, W)``, ``pred`` / ``true`` ``(N, 2, V, 4, H, W)`` in [0, 1] -> ``(N, 3, 4H,
    (V + 1) W)`` grids: rows generated RGB, true RGB, generated normals, true normals (over white);
    the condition (over white) at the left of the first row."""
    n, _, v, _, h, w = pred.shape
    white = torch.ones(n, 3, h, w, device=pred.device)

    def over(x: torch.Tensor) -> torch.Tensor:  # (N, 4, H, W) -> (N, 3, H, W) over white
        return x[:, :3] * x[:, 3:4] + (1 - x[:, 3:4])

    rows = []
    for k, src in enumerate((pred[:, 0], true[:, 0], pred[:, 1], true[:, 1])):
        first = over(cond) if k == 0 else white
        rows.append(torch.cat([first] + [over(src[:, j]) for j in range(v)], dim=3))
    return torch.cat(rows, dim=2).clamp(0, 1)


TASK = MultiViewTask
PRESETS = {"tiny": tiny, "small": small, "paper": paper}
