"""One trainer for every model (nerfstudio's shape): a task gives batches, loss terms and parameter groups.

    task = make_task("mvdiff", "small", ["train.lr=1e-4"])      # preset dataclass + --set overrides
    train(task, "runs/mv", minutes=9)                          # one time-boxed chunk; checkpoint at the end
    train(task, "runs/mv", minutes=9, resume=True)             # the next chunk, exactly where it stopped
    export_run("runs/mv", "weights/mvdiff", dtype="fp16")      # EMA weights -> config.json + model.safetensors

- :class:`Task` (``stdgen/train/tasks/<name>.py``): ``build_model``, ``batches`` (endless, on the device,
  training seeds only, disjoint between ranks), ``losses`` (named, weighted scalars), ``param_groups``,
  ``stage`` / ``on_stage_change``, ``images``, ``validate``, ``export``. :mod:`stdgen.train.tasks.toy` is
  the worked example.
- :class:`Preset` (``model``, ``train``, ``batch_size`` + task fields) and :class:`TrainConfig` (lr, warm-up
  + cosine, grad clip, EMA, bf16, logging / checkpoint intervals, seed) are dataclasses; presets are
  registered in :data:`stdgen.train.tasks.PRESETS`.
- The trainer: bf16 autocast and fused AdamW on CUDA, EMA, ``minutes`` time box ending with a checkpoint,
  periodic checkpoints, exact resume, ``init`` from a weights folder, DDP under torchrun (NCCL / gloo),
  TensorBoard, ``run.json`` and ``log.jsonl`` (layout in :mod:`stdgen.train.trainer`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Lazy: the CLI imports stdgen.train.tasks (the registry of names) at registration, which runs this file;
# torch must not load then.
_EXPORTS = {
    "Preset": "stdgen.train.config", "TrainConfig": "stdgen.train.config", "apply_overrides": "stdgen.train.config",
    "Task": "stdgen.train.task", "unwrap": "stdgen.train.task",
    "PRESETS": "stdgen.train.tasks", "TASKS": "stdgen.train.tasks", "get_preset": "stdgen.train.tasks",
    "make_task": "stdgen.train.tasks",
    "export_run": "stdgen.train.trainer", "train": "stdgen.train.trainer",
}
__all__ = ["PRESETS", "TASKS", "Preset", "Task", "TrainConfig", "apply_overrides", "export_run", "get_preset",
           "make_task", "train", "unwrap"]

if TYPE_CHECKING:
    from stdgen.train.config import Preset, TrainConfig, apply_overrides
    from stdgen.train.task import Task, unwrap
    from stdgen.train.tasks import PRESETS, TASKS, get_preset, make_task
    from stdgen.train.trainer import export_run, train


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'stdgen.train' has no attribute {name!r}")
