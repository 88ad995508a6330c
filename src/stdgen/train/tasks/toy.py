"""The toy task: a tiny coordinate network learns a fixed colour pattern. It exercises every part of the
trainer interface in a few CPU milliseconds per step (tests) and is the worked example of a task.

Data: each training sample is one seed of the training split (:func:`stdgen.data.splits.train_seed`) and
holds ``points`` random positions in [-1, 1]^2 with their target colours from :func:`pattern`. The global
batch of step ``k`` is the samples ``k * batch_size ... (k + 1) * batch_size - 1``; rank ``r`` of ``w``
takes the ``r``-th contiguous slice of it, so the ranks see disjoint samples and a DDP run sees exactly
the batches of a single-process run with the same global batch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from stdgen.data.splits import held_out_seeds, train_seed
from stdgen.models.modeling import ModelConfig, ModelMixin
from stdgen.train.config import Preset, TrainConfig
from stdgen.train.task import Task


@dataclass(frozen=True)
class ToyConfig(ModelConfig):
    """``frequencies`` Fourier features per input axis; ``hidden`` width and ``depth`` hidden layers of
    the MLP; ``out_channels`` colour channels."""

    frequencies: int = 4
    hidden: int = 32
    depth: int = 2
    out_channels: int = 3

    def __post_init__(self) -> None:
        if not 1 <= self.frequencies <= 16:
            raise ValueError(f"frequencies: expected 1..16, got {self.frequencies}")
        if not 2 <= self.hidden <= 4096:
            raise ValueError(f"hidden: expected 2..4096, got {self.hidden}")
        if not 1 <= self.depth <= 16:
            raise ValueError(f"depth: expected 1..16, got {self.depth}")
        if not 1 <= self.out_channels <= 16:
            raise ValueError(f"out_channels: expected 1..16, got {self.out_channels}")


@dataclass
class ToyOutput:
    """``color`` (..., C) in [0, 1]; ``logits`` (..., C) before the sigmoid."""

    color: torch.Tensor
    logits: torch.Tensor


class ToyField(ModelMixin, nn.Module):
    """(..., 2) positions in [-1, 1]^2 -> :class:`ToyOutput` with (..., C) colours."""

    config_class = ToyConfig

    def __init__(self, config: ToyConfig) -> None:
        super().__init__(config)
        c = config
        self.register_buffer("freqs", math.pi * 2.0 ** torch.arange(c.frequencies, dtype=torch.float32))
        layers: list[nn.Module] = [nn.Linear(2 + 4 * c.frequencies, c.hidden), nn.SiLU()]
        for _ in range(c.depth - 1):
            layers += [nn.Linear(c.hidden, c.hidden), nn.SiLU()]
        self.mlp = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(c.hidden)
        self.head = nn.Linear(c.hidden, c.out_channels)

    def forward(self, xy: torch.Tensor) -> ToyOutput:
        ang = xy[..., None] * self.freqs  # (..., 2, F)
        feats = torch.cat([xy, ang.sin().flatten(-2), ang.cos().flatten(-2)], dim=-1)
        logits = self.head(self.norm(self.mlp(feats)))
        return ToyOutput(color=torch.sigmoid(logits), logits=logits)


def pattern(xy: torch.Tensor) -> torch.Tensor:
    """The target: (..., 2) in [-1, 1]^2 -> (..., 3) colours in [0, 1] (rings, a diagonal wave, a disc)."""
    x, y = xy[..., 0], xy[..., 1]
    r = torch.sqrt(x * x + y * y)
    red = 0.5 + 0.5 * torch.cos(6.0 * r)
    green = 0.5 + 0.5 * torch.sin(3.0 * (x + y))
    blue = (r < 0.5).float()
    return torch.stack([red, green, blue], dim=-1)


@dataclass(kw_only=True)
class ToyPreset(Preset):
    """``points`` per sample; ``l1_weight`` / ``mse_weight`` loss weights; ``freeze_at`` step from which
    only the head trains (stage 1; ``0``: never), to exercise stage changes; ``val_samples`` validation
    seeds; ``image_size`` side of the TensorBoard pictures."""

    model: ToyConfig = field(default_factory=ToyConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(warmup_steps=10, max_steps=200, log_every=10,
                                                                    image_every=100, val_every=100))
    batch_size: int = 8
    points: int = 64
    l1_weight: float = 0.1
    mse_weight: float = 1.0
    freeze_at: int = 0
    val_samples: int = 4
    image_size: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.points < 1:
            raise ValueError(f"points: expected >= 1, got {self.points}")
        if self.l1_weight < 0 or self.mse_weight < 0:
            raise ValueError(f"l1_weight and mse_weight: expected >= 0, got {self.l1_weight}, {self.mse_weight}")
        if self.freeze_at < 0:
            raise ValueError(f"freeze_at: expected >= 0 (0 = never), got {self.freeze_at}")
        if not 0 <= self.val_samples <= 1000:
            raise ValueError(f"val_samples: expected 0..1000, got {self.val_samples}")
        if not 4 <= self.image_size <= 512:
            raise ValueError(f"image_size: expected 4..512, got {self.image_size}")


def tiny() -> ToyPreset:
    """Tests: a 2-layer, 16-wide field, batch 4."""
    return ToyPreset(model=ToyConfig(frequencies=3, hidden=16, depth=2), batch_size=4, points=32)


def small() -> ToyPreset:
    return ToyPreset()


def paper() -> ToyPreset:
    """The toy has no paper; a bigger field for throughput checks."""
    return ToyPreset(model=ToyConfig(frequencies=8, hidden=256, depth=4), batch_size=64, points=1024,
                     train=TrainConfig(warmup_steps=100, max_steps=5000, log_every=50))


def sample_points(seed: int, points: int, data_seed: int) -> torch.Tensor:
    """(points, 2) positions of one sample, a function of the character seed and the data seed only."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + data_seed)
    return torch.rand(points, 2, generator=g) * 2 - 1


class ToyTask(Task):
    name = "toy"
    preset: ToyPreset

    def build_model(self) -> ToyField:
        return ToyField(self.preset.model)

    def batches(self, *, rank: int, world_size: int, device: torch.device, seed: int,
                start: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        """Batches ``{"xy": (b, P, 2), "rgb": (b, P, 3)}`` on ``device``, b = batch_size / world_size."""
        b, gb, p = self.local_batch_size(world_size), self.preset.batch_size, self.preset.points
        step = start
        while True:
            first = step * gb + rank * b
            xy = torch.stack([sample_points(train_seed(first + i), p, seed) for i in range(b)])
            xy = xy.to(device, non_blocking=True)
            yield {"xy": xy, "rgb": pattern(xy)}
            step += 1

    def losses(self, model: nn.Module, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        out = model(batch["xy"])
        err = out.color.float() - batch["rgb"]
        terms = {"mse": self.preset.mse_weight * err.square().mean()}
        if self.preset.l1_weight:
            terms["l1"] = self.preset.l1_weight * err.abs().mean()
        return terms

    def stage(self, step: int) -> int:
        return int(bool(self.preset.freeze_at) and step >= self.preset.freeze_at)

    def on_stage_change(self, model: nn.Module, stage: int) -> None:
        for p in model.mlp.parameters():
            p.requires_grad_(stage == 0)

    def _grid_xy(self, device: torch.device) -> torch.Tensor:
        s = self.preset.image_size
        t = torch.linspace(-1, 1, s, device=device)
        yy, xx = torch.meshgrid(t, t, indexing="ij")
        return torch.stack([xx, yy], dim=-1)  # (S, S, 2)

    def images(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"field": (2, 3, S, S)}``: the prediction and the target over the square."""
        xy = self._grid_xy(batch["xy"].device)
        pred = model(xy).color.float().permute(2, 0, 1)
        return {"field": torch.stack([pred, pattern(xy).permute(2, 0, 1)]).clamp(0, 1)}

    def validate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        """MSE and PSNR over the first ``val_samples`` validation seeds."""
        seeds = held_out_seeds(self.preset.val_samples, "validation")
        if not seeds:
            return {}
        xy = torch.stack([sample_points(s, self.preset.points, 0) for s in seeds]).to(device)
        mse = float((model(xy).color.float() - pattern(xy)).square().mean())
        return {"mse": mse, "psnr": 10 * math.log10(1 / max(mse, 1e-12))}
