"""``stdgen train canon``: the pose-canonicalisation model's training task and presets.

Pairs come on the fly from :class:`~stdgen.data.stream.RenderStream` with ``posed_input`` (training
seeds only; pool mode re-colours and re-lights a pool of characters and draws a new pose per
sample): the input is the character in a random pose (:func:`stdgen.data.posing.random_pose`) from a
random camera (elevation within +-15 degrees, orthographic or perspective, random zoom and offset),
its *lit* render over white + alpha, restyled on the GPU (:func:`stdgen.train.augment.style_augment`:
outlines, toon bands, colour shifts, blur, JPEG); the target is the same character's lit A-pose
front render over white + alpha in the dataset's framing (what the multi-view model takes as input).
A fraction of inputs keep the A-pose: the positives of the A-pose check, trained beside the
denoiser on every input (logit + the two upper-arm angles).

Loss: flow-matching velocity MSE on RGB and alpha, with the reference dropped for classifier-free
guidance, plus the check's cross-entropy and arm-angle regression.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from stdgen.models.canonical import Canonicalizer, paper_config, small_config, tiny_config
from stdgen.models.diffusion.flow import training_flow
from stdgen.train import Preset, Task, TrainConfig, unwrap
from stdgen.train.augment import style_augment
from stdgen.utils.config import check_range

log = logging.getLogger(__name__)

#: Index of the front view (azimuth 0) among the stream's generation views.
FRONT_VIEW = 2


@dataclass
class CanonPreset(Preset):
    """Task fields on top of the trainer's (``model``, ``train``, ``batch_size``).

    ``resolution``: training image side; ``stream_workers`` / ``pool_size`` / ``pool_start`` /
    ``pool_refresh``: the RenderStream's character workers, pool per worker, first training index
    (move it between chunks for new characters) and share of draws that swap a pool member for a
    new character; ``apose_fraction``: share of inputs kept in A-pose (the check's
    positives); ``perspective``: share of perspective input cameras; ``cond_dropout``: probability
    of dropping the reference (guidance); ``style_probability``: per-style probability in
    :func:`style_augment`; ``rgb_weight`` / ``alpha_weight`` / ``check_weight`` / ``arm_weight``:
    loss weights; ``sigma_logit_mean``: mean of the logit-normal training times (0: the model's
    schedule; > 0 trains more near pure noise, see
    :func:`stdgen.models.diffusion.flow.training_flow`); ``val_characters`` / ``val_steps`` /
    ``val_guidance``: validation size and
    sampling (validation inputs: half posed, half A-posed, fixed cameras per seed);
    ``image_samples``: samples in the TensorBoard grids; ``batch_repeats``: optimiser steps per
    streamed batch, each with its own noise, noise level, reference dropout and style augmentation
    (the stream, not the GPU, bounds this task when it shares the machine: 20 pictures/s over 3
    workers in sessions b and c).
    """

    resolution: int = 128
    stream_workers: int = 14
    pool_size: int = 48
    pool_start: int = 0
    pool_refresh: float = 0.0
    apose_fraction: float = 0.2
    perspective: float = 0.5
    cond_dropout: float = 0.1
    style_probability: float = 0.3
    rgb_weight: float = 1.0
    alpha_weight: float = 1.0
    check_weight: float = 0.1
    arm_weight: float = 0.1
    sigma_logit_mean: float = 0.0
    val_characters: int = 16
    val_steps: int = 20
    val_guidance: float | None = None
    image_samples: int = 4
    batch_repeats: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        step = self.model.patch_size * 2 ** (len(self.model.channels) - 1)
        if self.resolution < step or self.resolution % step:
            raise ValueError(f"resolution: expected a positive multiple of {step}, got {self.resolution}")
        for name in ("apose_fraction", "perspective", "cond_dropout", "pool_refresh", "style_probability"):
            check_range(self, name, 0.0, 1.0)
        check_range(self, "sigma_logit_mean", -4.0, 4.0)
        for name in ("stream_workers", "pool_size", "pool_start", "val_characters", "image_samples"):
            check_range(self, name, 0, integer=True)
        for name in ("rgb_weight", "alpha_weight", "check_weight", "arm_weight"):
            check_range(self, name, 0.0)
        check_range(self, "val_steps", 1, integer=True)
        check_range(self, "batch_repeats", 1, integer=True)


def tiny() -> CanonPreset:
    """CPU smoke runs: 16 px, two fresh characters per batch, no workers."""
    return CanonPreset(model=tiny_config(), train=TrainConfig(warmup_steps=2, max_steps=50, ema_decay=0.0,
                                                              log_every=1, image_every=10, val_every=10),
                       batch_size=2, resolution=16, stream_workers=0, pool_size=0, val_characters=2, val_steps=2,
                       image_samples=1)


def small() -> CanonPreset:
    """The size to train and bundle: batch 32 at 128 px, 20 000 steps (resume chunks with
    ``--resume``; move ``pool_start`` between chunks for new characters)."""
    return CanonPreset(model=small_config(), train=TrainConfig(lr=3e-4, warmup_steps=500, max_steps=20_000,
                                                               ema_decay=0.999, image_every=1000, val_every=2000),
                       batch_size=32, resolution=128, pool_refresh=0.05)


def paper() -> CanonPreset:
    """The paper's first stage (512 px at lr 5e-5) on the paper-size model: a reference, not
    trainable within this project's budget."""
    return CanonPreset(model=paper_config(), train=TrainConfig(lr=5e-5, warmup_steps=1000, max_steps=60_000),
                       batch_size=32, resolution=512, val_steps=30)


def target_from_stream(batch: dict) -> torch.Tensor:
    """A posed-input RenderStream batch -> ``(B, 4, H, W)`` the lit A-pose front over white + alpha,
    in [0, 1]."""
    return torch.cat([batch["lit"][:, 0, FRONT_VIEW], batch["alpha"][:, 0, FRONT_VIEW]], dim=1)


def reference_from_stream(batch: dict) -> torch.Tensor:
    """The posed input as ``(B, 4, H, W)`` lit RGB over white + alpha in [0, 1]."""
    return torch.cat([batch["posed_lit"], batch["posed_alpha"]], dim=1)


def canon_metrics(pred: torch.Tensor, true: torch.Tensor) -> dict[str, torch.Tensor]:
    """Generated vs true A-pose fronts, both ``(B, 4, H, W)`` RGB over white + alpha in [0, 1] ->
    ``(B,)`` float64 ``ssim``, ``psnr``, ``psnr_fg`` (over the union of the silhouettes) and
    ``mask_iou`` (:func:`stdgen.eval.view_metrics`, alpha thresholded there)."""
    from stdgen.eval.protocol import view_metrics

    cl = lambda x: x[:, :3].float().permute(0, 2, 3, 1)
    m = view_metrics(cl(pred), cl(true), pred[:, 3].float(), true[:, 3].float())
    return {"ssim": m["ssim"], "psnr": m["psnr"], "psnr_fg": m["psnr_masked"], "mask_iou": m["mask_iou"]}


class CanonTask(Task):
    """See the module docstring."""

    name = "canon"
    # The ReferenceNet's up-path after its last attention block never runs (see
    # Canonicalizer.unused_reference_parameters): DDP must not wait for its gradients.
    find_unused_parameters = True

    def __init__(self, preset: CanonPreset):
        super().__init__(preset)
        self._val: dict | None = None

    def build_model(self) -> Canonicalizer:
        return Canonicalizer(self.preset.model)

    def adapt_init(self, model, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Weights of a model without ``concat_reference`` start a run of one with it (zero weights
        on the new input channels: :meth:`Canonicalizer.widen_input_state`)."""
        return unwrap(model).widen_input_state(state)

    # ----------------------------------------------------------------------------------- data
    def stream_config(self, *, split: str = "train", rank: int = 0, world_size: int = 1, device="cpu",
                      seed: int = 0, count: int | None = None, batch_size: int | None = None, start: int = 0):
        """The RenderStream of posed pairs: training (from ``pool_start``, moved on by ``start`` steps
        already trained) or the fixed validation / test pairs (fresh characters, fixed light)."""
        from stdgen.data.stream import StreamConfig

        p = self.preset
        train = split == "train"
        return StreamConfig(batch_size=batch_size or max(1, p.batch_size // world_size), resolution=p.resolution,
                            views="gen", layers=("full",), maps=("lit", "normal", "depth"), split=split,
                            start=p.pool_start + start * p.batch_size if train else 0, count=count,
                            workers=p.stream_workers if train else 0,
                            pool_size=p.pool_size if train else 0, pool_refresh=p.pool_refresh,
                            background="white", random_light=train, device=str(device), rank=rank,
                            world_size=world_size, seed=seed, posed_input=True,
                            apose_input_fraction=p.apose_fraction if train else 0.5, posed_perspective=p.perspective)

    def batches(self, *, rank: int, world_size: int, device: torch.device, seed: int, start: int = 0):
        """Endless ``{"target": (B, 4, H, W) model space, "ref": (B, 4, H, W) [0, 1], "is_apose": (B,),
        "arms": (B, 2) degrees / 90}`` on ``device``. A resumed run (``start`` steps done) continues
        further along the training seeds: in pool mode, a new pool."""
        from stdgen.data.stream import RenderStream

        device = torch.device(device)
        gen = torch.Generator(device=device).manual_seed(seed * 7919 + rank)
        phase = 0
        while True:
            cfg = self.stream_config(rank=rank, world_size=world_size, device=device, seed=seed * 1009 + phase + start,
                                     start=start)
            it = iter(RenderStream(cfg))
            try:
                for raw in it:
                    for _ in range(self.preset.batch_repeats):
                        yield self.make_batch(raw, gen)
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    close()
            phase += 1

    def make_batch(self, raw: dict, generator: torch.Generator | None = None) -> dict:
        """A stream batch -> the training batch, the input restyled."""
        p = self.preset
        ref = reference_from_stream(raw)
        rgb = style_augment(ref[:, :3], ref[:, 3:4], raw["posed_normal"], raw.get("posed_depth"),
                            probability=p.style_probability, generator=generator)
        return {"target": target_from_stream(raw) * 2 - 1, "ref": torch.cat([rgb, ref[:, 3:4]], dim=1),
                "is_apose": raw["posed_is_apose"].float(), "arms": raw["posed_arm_deg"] / 90.0}

    # ----------------------------------------------------------------------------------- losses
    def losses(self, model: Canonicalizer, batch: dict, step: int) -> dict[str, torch.Tensor]:
        p = self.preset
        x0, ref = batch["target"], batch["ref"] * 2 - 1
        b = x0.shape[0]
        flow = training_flow(unwrap(model).flow(x0.shape[-1]), p.sigma_logit_mean)
        noise = torch.randn_like(x0)
        sigma = flow.sample_sigma(b, x0.device)
        keep = torch.rand(b, device=x0.device) >= p.cond_dropout
        out = model(flow.noisy(x0, noise, sigma), sigma, ref, keep)
        err = flow.loss(out.sample, x0, noise, sigma)  # (B, 4, H, W)
        pose = out.pose.float()
        return {"rgb": p.rgb_weight * err[:, :3].mean(), "alpha": p.alpha_weight * err[:, 3].mean(),
                "check": p.check_weight * F.binary_cross_entropy_with_logits(pose[:, 0], batch["is_apose"]),
                "arms": p.arm_weight * F.smooth_l1_loss(pose[:, 1:], batch["arms"], beta=0.1)}

    # ----------------------------------------------------------------------------------- looking
    def images(self, model, batch: dict) -> dict[str, torch.Tensor]:
        """``{"samples": (1, 3, N*H, 3W)}``: per row the input, the generated A-pose, the true one."""
        p = self.preset
        model = unwrap(model)
        n = max(1, min(p.image_samples, batch["ref"].shape[0]))
        ref = batch["ref"][:n].float()
        out = model.sample(ref, seed=0, steps=p.val_steps, guidance=p.val_guidance)
        return {"samples": sample_grid(ref, out, (batch["target"][:n].float() + 1) / 2)}

    def validation_batch(self, device) -> dict:
        """The fixed validation pairs (first ``val_characters`` validation seeds, half the inputs
        A-posed, fixed light), cached on the CPU."""
        if self._val is None or self._val["ref"].shape[-1] != self.preset.resolution:
            from stdgen.data.stream import RenderStream

            n = self.preset.val_characters
            raw = next(iter(RenderStream(self.stream_config(split="validation", count=n, batch_size=n,
                                                            device=device))))
            self._val = {"ref": reference_from_stream(raw).cpu(), "target": target_from_stream(raw).cpu(),
                         "is_apose": raw["posed_is_apose"].cpu()}
        return self._val

    def validate(self, model, device) -> dict[str, float]:
        """Mean SSIM / PSNR / foreground PSNR / silhouette IoU of the generated vs the true A-pose
        front over the validation pairs (sampled with seed = index), and the A-pose check's accuracy
        on their inputs."""
        p = self.preset
        if p.val_characters == 0:
            return {}
        model = unwrap(model)
        device = torch.device(device)
        val = self.validation_batch(device)
        ref, true = val["ref"].to(device), val["target"].to(device)
        outs = [model.sample(ref[i:i + 8], seed=i, steps=p.val_steps, guidance=p.val_guidance).float()
                for i in range(0, ref.shape[0], 8)]
        m = canon_metrics(torch.cat(outs), true)
        res = {f"val/{k}": float(torch.nanmean(v).item()) for k, v in m.items()}
        prob = model.pose_scores(ref)[:, 0]
        pred = prob >= model.config.check_threshold
        res["val/apose_accuracy"] = float((pred.cpu() == val["is_apose"]).float().mean().item())
        return res



def sample_grid(ref: torch.Tensor, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """``ref`` ``(N, 4, H, W)``, ``pred`` / ``true`` ``(N, 4, H, W)`` RGB over white + alpha in [0, 1] ->
    ``(1, 3, N*H, 3W)``: one row per sample, input | generated | true (RGB over white)."""
    rows = [torch.cat([ref[i, :3], pred[i, :3].to(ref.device), true[i, :3].to(ref.device)], dim=2)
            for i in range(ref.shape[0])]
    return torch.cat(rows, dim=1)[None].clamp(0, 1)


TASK = CanonTask
PRESETS = {"tiny": tiny, "small": small, "paper": paper}
