"""The one interface between a model family and the trainer (nerfstudio's shape): batches in, named loss
terms out, parameter groups, stages. See :class:`Task` and the worked example :mod:`stdgen.train.tasks.toy`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from stdgen.models.modeling import ModelMixin
from stdgen.train.config import Preset


class Task:
    """One per model family, in ``stdgen/train/tasks/<name>.py``; the trainer calls only these methods.

    ``__init__(preset)`` stores the preset (``self.preset``). Everything else is asked of it by the trainer:

    - :meth:`build_model` -> a fresh ``ModelMixin`` model from ``self.preset.model`` (the trainer seeds the
      RNG with ``train.seed`` first, so every rank builds the same weights);
    - :meth:`batches` -> an endless iterator of batches already on ``device``: this rank's share of the
      global batch (``self.local_batch_size(world_size)`` samples), training seeds only, disjoint between
      ranks. It may take ``start`` (the number of steps already trained): the trainer passes it when the
      signature has it, so a resumed run continues the stream where it stopped instead of replaying it;
    - :meth:`losses` -> ``{name: scalar tensor}``, already weighted; the trainer backpropagates their sum and
      logs each term. Compute through ``model(...)`` (its ``forward``): under DDP ``model`` is the wrapper,
      and gradients are averaged only for computation that goes through its forward (use
      :func:`stdgen.train.unwrap` for anything else, e.g. a frozen encoder's methods);
    - :meth:`param_groups`, :meth:`stage`, :meth:`on_stage_change`: what trains when. When ``stage(step)``
      changes, the trainer calls ``on_stage_change(model, stage)`` (freeze, add LoRA ...) and then rebuilds
      the optimiser from ``param_groups(model, step)``; on resume the changes are replayed in order;
    - :meth:`images` / :meth:`validate` (rank 0, no grad, the EMA weights when EMA is on) and :meth:`export`.
    """

    #: The task's name in the registry (``stdgen train NAME``).
    name: ClassVar[str] = ""
    #: DDP's ``find_unused_parameters`` (set True when some trainable parameters skip a step's graph).
    find_unused_parameters: ClassVar[bool] = False

    def __init__(self, preset: Preset) -> None:
        if not isinstance(preset, Preset):
            raise TypeError(f"{type(self).__name__}: preset must be a Preset, got {type(preset).__name__}")
        self.preset = preset

    def local_batch_size(self, world_size: int) -> int:
        """This rank's share of ``preset.batch_size`` (the trainer checks that it divides evenly)."""
        if self.preset.batch_size % world_size:
            raise ValueError(f"batch_size {self.preset.batch_size} does not split over {world_size} ranks")
        return self.preset.batch_size // world_size

    def build_model(self) -> ModelMixin:
        raise NotImplementedError

    def batches(self, *, rank: int, world_size: int, device: torch.device, seed: int) -> Iterator[Any]:
        raise NotImplementedError

    def losses(self, model: nn.Module, batch: Any, step: int) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def param_groups(self, model: nn.Module, step: int) -> list[dict]:
        """Default: the trainable parameters, with the weight decay on tensors of >= 2 dimensions only
        (norm scales and biases are not decayed). Groups without ``weight_decay`` / ``lr`` take the
        TrainConfig's; the schedule scales every group's lr."""
        params = [p for p in model.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        rest = [p for p in params if p.dim() < 2]
        groups = [{"params": decay, "name": "decay"}]
        if rest:
            groups.append({"params": rest, "weight_decay": 0.0, "name": "no_decay"})
        return groups

    def stage(self, step: int) -> int:
        return 0

    def adapt_init(self, model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The ``--init`` weights as this run's model takes them (default: unchanged; a task whose
        model grew, e.g. more input channels, maps older weights onto it here)."""
        return state

    def on_stage_change(self, model: nn.Module, stage: int) -> None:
        return None

    def images(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        """``{name: (N, 3, H, W) in [0, 1]}`` grids for TensorBoard (default: none)."""
        return {}

    def validate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        """Metrics on fixed validation-split seeds (default: none)."""
        return {}

    def export(self, model: nn.Module, directory: str | Path, dtype: str) -> None:
        """Write the model for inference (default: ``model.save_pretrained(directory, dtype=dtype)``)."""
        model.save_pretrained(directory, dtype=dtype)  # type: ignore[operator]


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DDP (or ``torch.compile``) wrapper; the model itself otherwise."""
    from torch.nn.parallel import DistributedDataParallel

    while True:
        if isinstance(model, DistributedDataParallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model
