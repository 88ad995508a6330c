"""Profile one batch of the on-the-fly dataset renderer (``RenderStream.render_batch``).

    python benchmarks/data_profile.py --device cuda --batch-size 32 --resolution 256

Prints the wall time per batch and PyTorch profiler tables (host time and device time by op), to
find what bounds characters per second.
"""

from __future__ import annotations

import argparse
import time

import torch


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--rows", type=int, default=25)
    args = p.parse_args(argv)
    from stdgen.data.stream import CharacterSource, RenderStream, StreamConfig

    dev = torch.device(args.device)
    cfg = StreamConfig(batch_size=args.batch_size, resolution=args.resolution, views="eval", device=str(dev),
                       background="random", start=0, count=args.batch_size)
    t = time.perf_counter()
    items = list(CharacterSource(cfg, None))
    print(f"made {len(items)} characters in {time.perf_counter() - t:.1f} s")
    stream = RenderStream(cfg)
    gen = torch.Generator().manual_seed(0)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(2):
        stream.render_batch(items, dev, gen)
    sync()
    times = []
    for _ in range(3):
        t = time.perf_counter()
        stream.render_batch(items, dev, gen)
        sync()
        times.append(time.perf_counter() - t)
    print("batch seconds", [round(x, 3) for x in times], "->", f"{len(items) / min(times):.1f} characters/s")
    acts = [torch.profiler.ProfilerActivity.CPU]
    if dev.type == "cuda":
        acts.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=acts) as prof:
        stream.render_batch(items, dev, gen)
        sync()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    if dev.type == "cuda":
        print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
