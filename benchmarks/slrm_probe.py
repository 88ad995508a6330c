"""Throughput probe for S-LRM training on the GPU: the stream's batch time, the training step's time
and peak memory, for a few settings, with a plain AdamW loop (the trainer adds EMA and logging).

    python benchmarks/slrm_probe.py --batch-size 8 --seconds 60 [--set num_guided=8 ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-size", type=int, nargs="+", default=[8])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--workers", type=int, default=14)
    ap.add_argument("--pool", type=int, default=16)
    ap.add_argument("--stage", type=int, default=0)
    ap.add_argument("--set", nargs="*", default=[], help="preset field=value overrides")
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    from stdgen.train.tasks.slrm import SLRMTask, small

    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    for bs in args.batch_size:
        kw = {"batch_size": bs, "workers": args.workers, "pool_size": args.pool}
        for s in args.set:
            k, v = s.split("=")
            kw[k] = type(getattr(small(), k))(v)
        preset = dataclasses.replace(small(), **kw)
        task = SLRMTask(preset)
        model = task.build_model().to(args.device)
        step0 = {0: 0, 1: preset.stage1_step, 2: preset.stage2_step}[args.stage]
        if args.stage:
            task.on_stage_change(model, args.stage)
        params = [p for g in task.param_groups(model, step0) for p in g["params"]]
        opt = torch.optim.AdamW(params, 3e-4, fused=args.device == "cuda")
        it = task.batches(rank=0, world_size=1, device=torch.device(args.device), seed=0)
        t0 = time.perf_counter()
        batch = next(it)
        print(f"bs {bs}: first batch {time.perf_counter() - t0:.1f} s", flush=True)
        torch.cuda.reset_peak_memory_stats()
        n, t_data, t_step = 0, 0.0, 0.0
        start = time.perf_counter()
        while time.perf_counter() - start < args.seconds:
            a = time.perf_counter()
            batch = next(it)
            torch.cuda.synchronize()
            b = time.perf_counter()
            with torch.autocast("cuda", torch.bfloat16):
                losses = task.losses(model, batch, step0 + n)
            loss = sum(losses.values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            torch.cuda.synchronize()
            c = time.perf_counter()
            if n >= 2:
                t_data += b - a
                t_step += c - b
            n += 1
            if n % 20 == 0:
                terms = " ".join(f"{k}={float(v):.4f}" for k, v in losses.items())
                print(f"  step {n}: loss {float(loss):.4f} {terms}", flush=True)
        m = max(1, n - 2)
        peak = torch.cuda.max_memory_allocated() / 2**30
        print(f"bs {bs}: {n} steps, data wait {t_data / m * 1e3:.0f} ms, step {t_step / m * 1e3:.0f} ms, "
              f"{bs * m / (t_data + t_step):.1f} characters/s, peak {peak:.1f} GiB", flush=True)
        del it


if __name__ == "__main__":
    main()
