"""The trainer's per-step overhead: the toy task through ``stdgen.train.train`` against a bare PyTorch loop doing
the same work (autocast, forward, backward, clipping, AdamW, EMA) on one fixed batch, so the data stream is
out of the picture.

    python benchmarks/train_overhead.py --device cuda --steps 600
    python benchmarks/train_overhead.py --device cuda --set model.hidden=1024 --set points=4096

Prints ms/step of both and the difference; ``--json PATH`` writes them.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

from stdgen.train import make_task, train
from stdgen.train.tasks.toy import ToyTask


class FixedBatchToy(ToyTask):
    """The toy task yielding one batch made once: the loop measures the trainer, not the data."""

    def batches(self, *, rank, world_size, device, seed, start=0):
        batch = next(iter(super().batches(rank=rank, world_size=world_size, device=device, seed=seed, start=0)))
        while True:
            yield batch


def bare_loop(task: FixedBatchToy, device: torch.device, steps: int, warm: int) -> float:
    """ms/step of a hand-written loop with the trainer's work per step."""
    cfg = task.preset.train
    torch.manual_seed(cfg.seed)
    model = task.build_model().to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay,
                            fused=device.type == "cuda" or None)
    ema = [p.detach().float().clone() for p in params]
    batch = next(task.batches(rank=0, world_size=1, device=device, seed=0))
    use_bf16 = cfg.bf16 and device.type == "cuda"
    t0 = 0.0
    for i in range(warm + steps):
        if i == warm:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            loss = sum(task.losses(model, batch, i).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip, foreach=True)
        opt.step()
        torch._foreach_lerp_(ema, [p.detach() for p in params], 1 - cfg.ema_decay)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps * 1e3


def trainer_loop(task: FixedBatchToy, device: torch.device, steps: int, warm: int) -> float:
    """ms/step through train(), timed between the log records at step ``warm`` and the last step."""
    marks: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as d:
        train(task, f"{d}/run", steps=warm + steps, device=device,
              callback=lambda r: marks.setdefault(r["step"], time.perf_counter()))
    return (marks[warm + steps] - marks[warm]) / steps * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--warm", type=int, default=50)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    device = torch.device(args.device)
    # log_every = warm: the trainer reads losses back at the same rate a real run would (every 50 steps).
    overrides = [f"train.log_every={args.warm}", "train.tensorboard=false", "train.image_every=0",
                 "train.val_every=0", "train.ckpt_every_minutes=0", *args.overrides]
    task = make_task("toy", args.preset, overrides)
    task = FixedBatchToy(task.preset)
    if args.steps % args.warm:
        raise SystemExit("--steps must be a multiple of --warm (the log interval)")
    bare = min(bare_loop(task, device, args.steps, args.warm) for _ in range(2))
    ours = min(trainer_loop(task, device, args.steps, args.warm) for _ in range(2))
    params = sum(p.numel() for p in task.build_model().parameters())
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    res = {"device": name, "preset": args.preset, "overrides": args.overrides, "parameters": params,
           "batch": task.preset.batch_size, "points": task.preset.points, "bare_ms": round(bare, 4),
           "trainer_ms": round(ours, 4), "overhead_ms": round(ours - bare, 4)}
    print(json.dumps(res))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
