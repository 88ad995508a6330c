"""The one trainer: a :class:`~stdgen.train.Task` gives batches, named loss terms and parameter groups; the
trainer owns precision, the optimiser, the schedule, EMA, checkpoints, the time box, DDP and logging.

    summary = train(task, "runs/mv1", minutes=9)                 # first chunk
    summary = train(task, "runs/mv1", minutes=9, resume=True)    # the next chunks, same machine
    summary = train(task, "runs/mv2", init="weights/mvdiff")     # a fresh machine: weights only

Run folder (written by rank 0; every file replaced atomically):

    run.json         task, preset, overrides, config, git revision, device / GPU, world size, chunks
                     (start / end step, seconds, stop reason), seconds and samples seen, GPU-minutes total
    log.jsonl        one line per log step: step, stage, loss, terms {name: value}, lr, grad_norm,
                     samples_per_s, elapsed_s
    checkpoint.pt    the full state: model, optimiser, EMA, step, stage, samples seen, every rank's RNG
    export/          the EMA weights (config.json + model.safetensors, fp32) after every chunk
    tb/              TensorBoard scalars (loss terms, lr, grad norm, samples/s, validation) and image grids

DDP: launched under torchrun (``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` in the environment) the trainer
joins the process group itself (NCCL on CUDA, gloo on the CPU), each rank on ``cuda:LOCAL_RANK``; every
rank reads its share of the global batch from the task; gradients are averaged by DDP; logged losses are
averaged over the ranks.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import random
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from stdgen.errors import StdgenError
from stdgen.models.modeling import load_weights
from stdgen.train.config import TrainConfig, parse_overrides
from stdgen.train.ema import EMA
from stdgen.train.task import Task
from stdgen.utils.io import atomic_path, atomic_write, remove_stale_temporaries

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
RUN_JSON = "run.json"
LOG_JSONL = "log.jsonl"
EXPORT_DIR = "export"
TB_DIR = "tb"
_CKPT_FORMAT = 1
#: In a multi-process run the ranks agree on "stop" / "checkpoint" every this many steps (one tiny
#: broadcast, the only host sync outside log steps).
SYNC_EVERY = 10


# ---------------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------------

def dist_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment variables (0, 1, 0 without them)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return rank, world, local


def _git_revision() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10)
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _rng_state() -> dict:
    # The legacy global numpy RNG: tasks or libraries may draw from it, so a resume restores it too.
    np_state = np.random.get_state()  # noqa: NPY002
    state = {
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, key, *rest = state["numpy"]
    np.random.set_state((name, key.numpy().astype(np.uint32), *rest))  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002
    torch.manual_seed(seed)


def make_grid(images: torch.Tensor, nrow: int = 8, pad: int = 2) -> torch.Tensor:
    """(N, C, H, W) -> (C, rows * (H + pad) + pad, nrow * (W + pad) + pad) tiled on a white background."""
    n, c, h, w = images.shape
    nrow = max(1, min(nrow, n))
    rows = math.ceil(n / nrow)
    grid = images.new_ones((c, rows * (h + pad) + pad, nrow * (w + pad) + pad))
    for i in range(n):
        r, col = divmod(i, nrow)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        grid[:, y: y + h, x: x + w] = images[i]
    return grid


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _write_json(path: Path, data: dict) -> None:
    with atomic_write(path, "w") as f:
        f.write(json.dumps(data, indent=2, default=str) + "\n")


class _Dist:
    """The process group for one train() call: joined from torchrun's environment when needed."""

    def __init__(self, device_type: str) -> None:
        self.rank, self.world, self.local_rank = dist_env()
        self.owned = False
        if self.world > 1 and not dist.is_initialized():
            if device_type == "cuda":
                # Bind the rank to its GPU before NCCL starts, so collectives never guess the device.
                gpu = torch.device("cuda", self.local_rank)
                torch.cuda.set_device(gpu)
                dist.init_process_group("nccl", device_id=gpu)
            else:
                dist.init_process_group("gloo")
            self.owned = True
        if self.world > 1:
            self.rank, self.world = dist.get_rank(), dist.get_world_size()

    @property
    def active(self) -> bool:
        return self.world > 1

    def close(self) -> None:
        if self.owned and dist.is_initialized():
            dist.destroy_process_group()


# ---------------------------------------------------------------------------------------------------------
# The trainer
# ---------------------------------------------------------------------------------------------------------

class Trainer:
    """One chunk of training of ``task`` in ``run_dir`` (use :func:`train`)."""

    def __init__(self, task: Task, run_dir: str | Path, *, minutes: float | None = None, steps: int | None = None,
                 resume: bool = False, init: str | Path | None = None, device: str | torch.device | None = None,
                 overrides: list[str] | dict[str, str] | None = None, preset_name: str | None = None,
                 callback: Callable[[dict], None] | None = None) -> None:
        if minutes is not None and not minutes > 0:
            raise StdgenError(f"--minutes must be > 0, got {minutes}")
        if steps is not None and steps < 0:
            raise StdgenError(f"--steps must be >= 0, got {steps}")
        if resume and init is not None:
            raise StdgenError("--resume continues a run with its own weights; --init is only for a new run")
        self.task = task
        self.cfg: TrainConfig = task.preset.train
        self.run_dir = Path(run_dir)
        self.minutes = minutes
        self.stop_step = self.cfg.max_steps if steps is None else steps
        self.resume = resume
        self.init = init
        self.overrides = parse_overrides(overrides)
        self.preset_name = preset_name
        self.callback = callback

        if device is None or str(device) == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise StdgenError("--device cuda was asked for, but PyTorch sees no CUDA device here; use --device cpu")
        self.dist = _Dist(device.type)
        if device.type == "cuda":
            device = torch.device("cuda", self.dist.local_rank if self.dist.active else (device.index or 0))
            torch.cuda.set_device(device)
            # fp32 matmuls left outside autocast (losses, EMA) may use TF32: training does not need the bits.
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.device = device
        self.is_main = self.dist.rank == 0
        try:
            task.local_batch_size(self.dist.world)
        except ValueError as exc:
            raise StdgenError(str(exc)) from None

    # --- checkpoint ---------------------------------------------------------------------------------------

    @property
    def ckpt_path(self) -> Path:
        return self.run_dir / CHECKPOINT

    def _save_checkpoint(self) -> float:
        t = time.monotonic()
        rng = _rng_state()
        if self.dist.active:
            states: list[Any] = [None] * self.dist.world
            dist.all_gather_object(states, rng)
        else:
            states = [rng]
        if self.is_main:
            state = {
                "format": _CKPT_FORMAT, "task": self.task.name, "step": self.step, "stage": self.stage,
                "samples_seen": self.samples_seen, "world_size": self.dist.world,
                "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "ema": self.ema.state_dict() if self.ema is not None else None, "rng": states,
            }
            with atomic_path(self.ckpt_path) as tmp:
                torch.save(state, tmp)
            self._write_run_json(status="running")
        if self.dist.active:
            dist.barrier()
        self.last_ckpt = time.monotonic()
        return self.last_ckpt - t

    def _load_checkpoint(self) -> dict:
        try:
            ckpt = torch.load(self.ckpt_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated / foreign files
            raise StdgenError(f"{self.ckpt_path}: unreadable checkpoint ({type(exc).__name__}: {exc})") from None
        if not isinstance(ckpt, dict) or ckpt.get("format") != _CKPT_FORMAT:
            raise StdgenError(f"{self.ckpt_path}: not a stdgen training checkpoint (format {_CKPT_FORMAT})")
        if ckpt.get("task") != self.task.name:
            raise StdgenError(f"{self.ckpt_path}: a checkpoint of task {ckpt.get('task')!r}, not {self.task.name!r}")
        return ckpt

    # --- optimiser, DDP -------------------------------------------------------------------------------------

    def _build_optimizer(self) -> torch.optim.Optimizer:
        groups = []
        for g in self.task.param_groups(self.model, self.step):
            g = dict(g)
            g["params"] = [p for p in g["params"] if p.requires_grad]
            if not g["params"]:
                continue
            g.setdefault("weight_decay", self.cfg.weight_decay)
            g.setdefault("lr", self.cfg.lr)
            g["base_lr"] = g["lr"]
            groups.append(g)
        if not groups:
            raise StdgenError(f"task {self.task.name!r}: no trainable parameters at step {self.step}")
        fused = self.device.type == "cuda"
        opt = torch.optim.AdamW(groups, lr=self.cfg.lr, betas=tuple(self.cfg.betas),
                                weight_decay=self.cfg.weight_decay, fused=fused or None)
        self.params = [p for g in opt.param_groups for p in g["params"]]
        return opt

    def _wrap(self) -> nn.Module:
        if not self.dist.active:
            return self.model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(self.model, device_ids=ids,
                                       find_unused_parameters=self.task.find_unused_parameters)

    def _enter_stage(self, stage: int) -> None:
        logger.info("step %d: stage %d -> %d", self.step, self.stage, stage)
        self.task.on_stage_change(self.model, stage)
        self.stage = stage
        self.model.to(self.device)  # modules added at the change start on the model's device
        if self.ema is not None:
            self.ema.sync_keys(self.model)
        self.opt = self._build_optimizer()
        self.wrapped = self._wrap()

    # --- setup ----------------------------------------------------------------------------------------------

    def _setup(self) -> None:
        cfg = self.cfg
        ckpt = None
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.run_dir)
        if self.resume:
            if not self.ckpt_path.is_file():
                raise StdgenError(f"--resume: no {CHECKPOINT} in {self.run_dir}")
            ckpt = self._load_checkpoint()
        elif self.ckpt_path.exists():
            raise StdgenError(f"{self.run_dir} already holds a run ({CHECKPOINT}); pass --resume to continue it "
                              f"or choose a new folder")

        _seed_all(cfg.seed)  # the same initial weights on every rank
        self.model = self.task.build_model().to(self.device)
        self.model.train()
        self.step = int(ckpt["step"]) if ckpt else 0
        self.samples_seen = int(ckpt["samples_seen"]) if ckpt else 0
        self.stage = 0
        self.ema = None
        # Replay the stage changes of the steps already trained (the last one's stage is what the
        # checkpointed model and optimiser were built for); the loop handles the next one.
        for k in range(self.step):
            s = self.task.stage(k)
            if s != self.stage:
                self.task.on_stage_change(self.model, s)
                self.stage = s
        self.model.to(self.device)
        if ckpt is not None:
            try:
                self.model.load_state_dict(ckpt["model"], strict=True)
            except RuntimeError as exc:
                raise StdgenError(f"{self.ckpt_path}: model weights do not match: {exc}") from None
        elif self.init is not None:
            load_weights(self.model, self.init, adapt=lambda st: self.task.adapt_init(self.model, st))
        if cfg.ema_decay > 0:
            self.ema = EMA(self.model, cfg.ema_decay)
            if ckpt is not None and ckpt.get("ema") is not None:
                self.ema.load_state_dict(ckpt["ema"])
        self.opt = self._build_optimizer()
        if ckpt is not None:
            # The optimiser's moments come from the checkpoint, its settings (lr, betas, decay) from the
            # config: a --set on resume (a lower lr, say) takes effect instead of being loaded over.
            fresh = [{k: v for k, v in g.items() if k != "params"} for g in self.opt.param_groups]
            try:
                self.opt.load_state_dict(ckpt["optimizer"])
            except ValueError as exc:
                raise StdgenError(f"{self.ckpt_path}: optimiser state does not match the parameter groups: "
                                  f"{exc}") from None
            for g, f in zip(self.opt.param_groups, fresh):
                g.update(f)
        self.wrapped = self._wrap()

        # Per-rank RNG for the losses' own randomness (noise, timesteps): restored exactly on resume with
        # the same world size, else derived from the seed, rank and step.
        rngs = ckpt.get("rng") if ckpt else None
        if rngs is not None and len(rngs) == self.dist.world:
            _set_rng_state(rngs[self.dist.rank])
        else:
            if rngs is not None:
                logger.warning("resuming on %d ranks from a checkpoint of %d: fresh RNG streams",
                               self.dist.world, len(rngs))
            _seed_all(cfg.seed + 1 + self.dist.rank + 7919 * self.step)

        kwargs = {"rank": self.dist.rank, "world_size": self.dist.world, "device": self.device, "seed": cfg.seed}
        if "start" in inspect.signature(self.task.batches).parameters:
            kwargs["start"] = self.step
        elif self.step:
            # No way to continue the stream: draw a different one rather than replay the first batches.
            kwargs["seed"] = cfg.seed + self.step
            logger.warning("task %r: batches() takes no start; resumed with data seed %d", self.task.name,
                           kwargs["seed"])
        self.batches: Iterator[Any] = iter(self.task.batches(**kwargs))

        self.tb = None
        if self.is_main and self.cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.run_dir / TB_DIR))
            except ImportError:
                logger.warning("tensorboard is not installed: no TensorBoard logs (pip install tensorboard)")
        if self.is_main:
            if ckpt is not None:
                self._truncate_log(self.step)
            prev = _read_json(self.run_dir / RUN_JSON) if ckpt is not None else {}
            self.chunks = list(prev.get("chunks", []))
            self.gpu_minutes_before = float(prev.get("gpu_minutes_total", 0.0))
            self.seconds_before = float(prev.get("seconds_total", 0.0))
            if ckpt is not None and not self.preset_name:
                self.preset_name = prev.get("preset")
            if ckpt is not None and not self.overrides:
                self.overrides = dict(prev.get("overrides", {}))

    def _truncate_log(self, step: int) -> None:
        """Drop log lines past the checkpoint (written by a chunk that died before its next checkpoint)."""
        path = self.run_dir / LOG_JSONL
        if not path.is_file():
            return
        keep = []
        for line in path.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    keep.append(line)
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
        with atomic_write(path, "w") as f:
            f.write("".join(k + "\n" for k in keep))

    # --- run.json -------------------------------------------------------------------------------------------

    def _write_run_json(self, status: str) -> None:
        seconds = time.monotonic() - self.t0
        gpu = self.device.type == "cuda"
        chunk = {"start_step": self.start_step, "end_step": self.step, "seconds": round(seconds, 3),
                 "world_size": self.dist.world, "device": str(self.device),
                 "gpu": torch.cuda.get_device_name(self.device) if gpu else None, "status": status,
                 "started": self.started}
        data = {
            "task": self.task.name, "preset": self.preset_name, "overrides": self.overrides,
            "config": self.task.preset.to_dict(), "model_class": type(self.model).__name__,
            "num_parameters": sum(p.numel() for p in self.model.parameters()),
            "git_revision": self.git_revision, "torch": torch.__version__, "status": status,
            "step": self.step, "samples_seen": self.samples_seen, "world_size": self.dist.world,
            "device": str(self.device), "gpu": chunk["gpu"],
            "seconds_total": round(self.seconds_before + seconds, 3),
            "gpu_minutes_total": round(self.gpu_minutes_before + (seconds * self.dist.world / 60 if gpu else 0.0), 4),
            "chunks": [*self.chunks, chunk],
        }
        _write_json(self.run_dir / RUN_JSON, data)

    # --- logging, images, validation ------------------------------------------------------------------------

    def _log(self, acc: dict[str, torch.Tensor], counts: dict[str, int], gnorm: torch.Tensor | None, n_gn: int,
             since: float, steps_since: int) -> dict:
        names = list(acc)
        vals = [acc[n] / counts[n] for n in names]
        if gnorm is not None:
            vals.append(gnorm / max(1, n_gn))
        packed = torch.stack(vals) if vals else torch.zeros(0, device=self.device)
        if self.dist.active:
            dist.all_reduce(packed)
            packed = packed / self.dist.world
        host = packed.tolist()  # the only read-back of losses: at log steps
        terms = dict(zip(names, host[: len(names)]))
        now = time.monotonic()
        record = {
            "step": self.step, "stage": self.stage, "loss": float(sum(terms.values())), "terms": terms,
            "lr": self.opt.param_groups[0]["lr"],
            "grad_norm": host[len(names)] if gnorm is not None else None,
            "samples_per_s": steps_since * self.task.preset.batch_size / max(now - since, 1e-9),
            "elapsed_s": round(now - self.t0, 3),
        }
        if not all(math.isfinite(v) for v in host):
            raise StdgenError(f"non-finite loss at step {self.step}: {terms} (last checkpoint: {self.ckpt_path})")
        if self.is_main:
            with open(self.run_dir / LOG_JSONL, "a") as f:
                f.write(json.dumps(record) + "\n")
            if self.tb is not None:
                self.tb.add_scalar("loss/total", record["loss"], self.step)
                for k, v in terms.items():
                    self.tb.add_scalar(f"loss/{k}", v, self.step)
                self.tb.add_scalar("train/lr", record["lr"], self.step)
                self.tb.add_scalar("train/samples_per_s", record["samples_per_s"], self.step)
                self.tb.add_scalar("train/stage", self.stage, self.step)
                if record["grad_norm"] is not None:
                    self.tb.add_scalar("train/grad_norm", record["grad_norm"], self.step)
            logger.info("step %d loss %.5g %s lr %.3g %.1f samples/s", self.step, record["loss"],
                        " ".join(f"{k} {v:.4g}" for k, v in terms.items()), record["lr"], record["samples_per_s"])
            if self.callback is not None:
                self.callback(record)
        return record

    def _eval_model(self):
        """Context: the unwrapped model in eval mode with the EMA weights (when EMA is on), no grad."""
        import contextlib

        @contextlib.contextmanager
        def ctx():
            was = self.model.training
            self.model.eval()
            try:
                with torch.no_grad(), (self.ema.swapped(self.model) if self.ema is not None
                                       else contextlib.nullcontext()):
                    yield self.model
            finally:
                self.model.train(was)
        return ctx()

    def _images(self, batch: Any) -> None:
        with self._eval_model() as m, self._autocast():
            grids = self.task.images(m, batch)
        for name, img in grids.items():
            grid = make_grid(img.detach().float().clamp(0, 1).cpu())
            if self.tb is not None:
                self.tb.add_image(f"images/{name}", grid, self.step)
            # PNGs too, to look at without TensorBoard (the latest one under a fixed name).
            from PIL import Image

            pixels = (grid.permute(1, 2, 0).numpy() * 255 + 0.5).astype("uint8")
            (self.run_dir / "images").mkdir(exist_ok=True)
            Image.fromarray(pixels).save(self.run_dir / "images" / f"{name}_{self.step:07d}.png")
            Image.fromarray(pixels).save(self.run_dir / "images" / f"{name}_latest.png")

    def _validate(self) -> dict[str, float]:
        with self._eval_model() as m, self._autocast():
            metrics = self.task.validate(m, self.device)
        metrics = {k: float(v) for k, v in metrics.items()}
        if metrics:
            with open(self.run_dir / LOG_JSONL, "a") as f:
                f.write(json.dumps({"step": self.step, "stage": self.stage, "validation": metrics}) + "\n")
            if self.tb is not None:
                for k, v in metrics.items():
                    self.tb.add_scalar(f"val/{k}", v, self.step)
            logger.info("step %d validation %s", self.step, metrics)
        return metrics

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16,
                              enabled=self.cfg.bf16 and self.device.type == "cuda")

    def _export(self) -> Path:
        out = self.run_dir / EXPORT_DIR
        with self._eval_model() as m:
            self.task.export(m, out, "fp32")
        return out

    # --- the loop -------------------------------------------------------------------------------------------

    def _decide(self, step_seconds: float, save_seconds: float) -> tuple[bool, bool]:
        """(stop for the time box, periodic checkpoint due), agreed by all ranks (rank 0 decides)."""
        now = time.monotonic()
        stop = self.deadline is not None and now + save_seconds + 2 * step_seconds >= self.deadline
        every = self.cfg.ckpt_every_minutes * 60
        ckpt = every > 0 and now - self.last_ckpt >= every
        if self.dist.active:
            flags = torch.tensor([float(stop), float(ckpt)], device=self.device)
            dist.broadcast(flags, 0)
            stop, ckpt = bool(flags[0].item()), bool(flags[1].item())
        return stop, ckpt

    def run(self) -> dict:
        self.t0 = time.monotonic()
        self.started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.deadline = self.t0 + self.minutes * 60 if self.minutes is not None else None
        self.git_revision = _git_revision() if self.dist.rank == 0 else None
        self.chunks, self.gpu_minutes_before, self.seconds_before = [], 0.0, 0.0
        try:
            self._setup()
            return self._loop()
        finally:
            if getattr(self, "tb", None) is not None:
                self.tb.close()
            self.dist.close()

    def _loop(self) -> dict:
        cfg = self.cfg
        self.start_step = self.step
        self.last_ckpt = time.monotonic()
        if self.is_main:
            self._write_run_json(status="running")
        acc: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}
        gnorm, n_gn = None, 0
        since, steps_since = time.monotonic(), 0
        # Time the closing checkpoint + export will take, reserved inside the time box: a guess from the
        # state's size (weights, two AdamW moments, EMA, the export) until a periodic checkpoint is timed.
        state_bytes = sum(p.numel() * 4 for p in self.model.parameters())
        step_seconds, save_seconds = 0.0, 1.0 + 5 * state_bytes / 200e6
        last_record: dict | None = None
        stopped = "steps"
        batch = None
        checked_at, checked_step = time.monotonic(), self.step
        while self.step < self.stop_step:
            stage = self.task.stage(self.step)
            if stage != self.stage:
                self._enter_stage(stage)
            batch = next(self.batches)
            factor = cfg.lr_factor(self.step)
            for g in self.opt.param_groups:
                g["lr"] = g["base_lr"] * factor
            with self._autocast():
                terms = self.task.losses(self.wrapped, batch, self.step)
            if not terms:
                raise StdgenError(f"task {self.task.name!r}: losses() returned no terms at step {self.step}")
            loss = sum(terms.values())
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                gn = torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip, foreach=True)
                gnorm = gn.detach().float() if gnorm is None else gnorm + gn.detach().float()
                n_gn += 1
            self.opt.step()
            if self.ema is not None:
                self.ema.update(self.model, self.step)
            self.step += 1
            self.samples_seen += self.task.preset.batch_size
            steps_since += 1
            for name, t in terms.items():
                t = t.detach().float()
                acc[name] = acc[name] + t if name in acc else t
                counts[name] = counts.get(name, 0) + 1

            last = self.step >= self.stop_step
            if self.step % cfg.log_every == 0 or last:
                last_record = self._log(acc, counts, gnorm, n_gn, since, steps_since)
                acc, counts, gnorm, n_gn = {}, {}, None, 0
                since, steps_since = time.monotonic(), 0
            if self.is_main and cfg.image_every and self.step % cfg.image_every == 0:
                self._images(batch)
            if self.is_main and cfg.val_every and self.step % cfg.val_every == 0:
                self._validate()
            if not last and (not self.dist.active or self.step % SYNC_EVERY == 0 or self.step % cfg.log_every == 0):
                now = time.monotonic()
                step_seconds = (now - checked_at) / max(1, self.step - checked_step)
                checked_at, checked_step = now, self.step
                stop, ckpt = self._decide(step_seconds, save_seconds)
                if stop:
                    stopped = "time"
                    break
                if ckpt:
                    save_seconds = 1.5 * self._save_checkpoint()  # + the export, a fraction of it
                    checked_at = time.monotonic()

        if steps_since:  # the last log step was before a time-box stop: log the rest
            last_record = self._log(acc, counts, gnorm, n_gn, since, steps_since)
        self._save_checkpoint()
        export = None
        if self.is_main:
            export = self._export()
            self._write_run_json(status="done" if self.step >= self.cfg.max_steps else stopped)
        if self.dist.active:
            dist.barrier()
        summary = {"step": self.step, "start_step": self.start_step, "stopped": stopped,
                   "samples_seen": self.samples_seen, "seconds": round(time.monotonic() - self.t0, 3),
                   "last": last_record, "run_dir": str(self.run_dir), "export": str(export) if export else None}
        logger.info("trained %d -> %d (%s) in %.1f s", self.start_step, self.step, stopped, summary["seconds"])
        return summary


def train(task: Task, run_dir: str | Path, *, minutes: float | None = None, steps: int | None = None,
          resume: bool = False, init: str | Path | None = None, device: str | torch.device | None = None,
          overrides: list[str] | dict[str, str] | None = None, preset_name: str | None = None,
          callback: Callable[[dict], None] | None = None) -> dict:
    """Train ``task`` in ``run_dir`` for one chunk; returns a summary dict (step, start_step, stopped:
    ``"steps"`` or ``"time"``, samples_seen, seconds, last log record, run_dir, export).

    ``minutes``: time box of this call (the loop stops early enough to write the checkpoint and the export
    inside it, judged from the measured step and save times; leave a margin for start-up); ``steps``: the
    step to stop at, counted from the start of the run (default ``train.max_steps``); ``resume``: continue
    ``run_dir/checkpoint.pt`` exactly (weights, optimiser, EMA, step, stage, RNG, data position); ``init``:
    a weights folder to start a new run from (weights only, fresh optimiser); ``device``: ``"cuda"``,
    ``"cpu"`` or ``None`` (CUDA when available; under torchrun ``cuda:LOCAL_RANK``); ``overrides`` and
    ``preset_name``: the ``--set`` strings and preset that built ``task.preset``, recorded in run.json (they
    are not applied here: build the task with :func:`stdgen.train.tasks.make_task`); ``callback(record)``
    is called on rank 0 with every log record.
    """
    return Trainer(task, run_dir, minutes=minutes, steps=steps, resume=resume, init=init, device=device,
                   overrides=overrides, preset_name=preset_name, callback=callback).run()


def export_run(run_dir: str | Path, output: str | Path, *, dtype: str = "fp16") -> Path:
    """Write the EMA weights (the model's when EMA was off) of ``run_dir``'s checkpoint to ``output`` through
    the task's ``export`` in storage ``dtype`` (fp32, fp16, int8). The task and preset come from run.json."""
    from stdgen.models.modeling import STORAGE_DTYPES
    from stdgen.train.tasks import make_task

    run_dir = Path(run_dir)
    if dtype not in STORAGE_DTYPES:
        raise StdgenError(f"--dtype must be one of {', '.join(STORAGE_DTYPES)}, got {dtype!r}")
    info = _read_json(run_dir / RUN_JSON)
    if not info.get("task") or not info.get("preset"):
        raise StdgenError(f"{run_dir}: no readable {RUN_JSON} naming the task and preset")
    ckpt_path = run_dir / CHECKPOINT
    if not ckpt_path.is_file():
        raise StdgenError(f"{run_dir}: no {CHECKPOINT} to export")
    task = make_task(info["task"], info["preset"], info.get("overrides"))
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise StdgenError(f"{ckpt_path}: unreadable checkpoint ({type(exc).__name__}: {exc})") from None
    _seed_all(task.preset.train.seed)
    model = task.build_model()
    stage = 0
    for k in range(int(ckpt["step"])):
        s = task.stage(k)
        if s != stage:
            task.on_stage_change(model, s)
            stage = s
    model.load_state_dict(ckpt["model"], strict=True)
    if ckpt.get("ema") is not None:
        ema = EMA(model, ckpt["ema"]["decay"])
        ema.load_state_dict(ckpt["ema"])
        with torch.no_grad():
            params = dict(model.named_parameters())
            for k, v in ema.shadow.items():
                params[k].copy_(v)
    model.eval()
    task.export(model, output, dtype)
    return Path(output)
