"""Speed of the multi-view diffusion model: training steps per second on synthetic batches (the
model alone, bf16 autocast + fused AdamW on CUDA, the trainer's settings) and seconds per
``generate`` at the default steps, on the GPU and the CPU.

    python benchmarks/mv_speed.py --preset small --device cuda --batch-size 16 --resolutions 128,256
    python benchmarks/mv_speed.py --preset small --device cpu --generate-only --threads 2

The data stream's own rate is ``benchmarks/data_throughput.py``'s business; a training run's
samples/s in ``log.jsonl`` is the lesser of the two.
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def train_rate(task, model, dev: torch.device, batch_size: int, side: int, steps: int) -> float:
    """Training steps per second at ``side`` px (after 3 warm-up steps)."""
    g = torch.Generator(device=dev).manual_seed(0)
    alpha = torch.zeros(batch_size, 2, 6, 1, side, side, device=dev)
    alpha[..., side // 8: -side // 8, side // 3: -side // 3] = 1
    batch = {"target": torch.rand(batch_size, 2, 6, 4, side, side, device=dev, generator=g) * 2 - 1,
             "cond": torch.rand(batch_size, 4, side, side, device=dev, generator=g)}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=dev.type == "cuda")
    model.train()

    def step() -> None:
        with torch.autocast(dev.type, torch.bfloat16, enabled=dev.type == "cuda"):
            loss = sum(task.losses(model, batch, 10**9 if side > task.preset.resolution(0) else 0).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for _ in range(3):
        step()
    _sync(dev)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(dev)
    return steps / (time.perf_counter() - t)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--resolutions", default="128,256")
    ap.add_argument("--steps", type=int, default=20, help="timed training steps per resolution")
    ap.add_argument("--generate-only", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads")
    ap.add_argument("--sample-steps", type=int, default=None, help="sampler steps (default: the model's)")
    args = ap.parse_args(argv)

    from stdgen.train.tasks.mvdiff import PRESETS, MultiViewTask
    from stdgen.utils.device import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    task = MultiViewTask(PRESETS[args.preset]())
    torch.manual_seed(0)
    model = task.build_model().to(dev)
    out: dict = {"preset": args.preset, "device": str(dev), "parameters": sum(p.numel() for p in model.parameters()),
                 "gpu": torch.cuda.get_device_name() if dev.type == "cuda" else None,
                 "threads": torch.get_num_threads()}
    if not args.generate_only:
        for side in (int(s) for s in args.resolutions.split(",")):
            out[f"train_it_per_s_{side}_b{args.batch_size}"] = train_rate(task, model, dev, args.batch_size, side,
                                                                          args.steps)
            if dev.type == "cuda":
                out[f"peak_gib_{side}"] = torch.cuda.max_memory_allocated() / 2**30
                torch.cuda.reset_peak_memory_stats()
    model.eval()
    image = torch.rand(4, model.config.resolution, model.config.resolution)
    model.generate(image, seed=0, steps=1)  # warm-up
    _sync(dev)
    t = time.perf_counter()
    model.generate(image, seed=0, steps=args.sample_steps)
    _sync(dev)
    out[f"generate_s_{model.config.resolution}px_{args.sample_steps or model.config.default_steps}steps"] = \
        time.perf_counter() - t
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
