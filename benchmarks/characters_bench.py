"""Procedural characters generated per second on the CPU (``make_character`` alone, one core).

Usage::

    python benchmarks/characters_bench.py [--count 20] [--repeats 3] [--first-seed 1000]

Prints the one-off cost of the body template (built once per process), then the median over
``--repeats`` runs of generating ``--count`` characters: wall and CPU seconds per character and
characters per second, with the spread of single-character times and a split of where the time
goes (body, textures, garments, hair). Re-runnable: the seeds are fixed, so every run makes the
same characters. Run it on a quiet machine for figures you publish; on a shared one, the CPU
seconds are the steadier number.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=20, help="characters per run (default 20)")
    ap.add_argument("--repeats", type=int, default=3, help="runs (default 3); the median is reported")
    ap.add_argument("--first-seed", type=int, default=1000, help="first seed (default 1000)")
    args = ap.parse_args()

    # One core: the figure is per core (the dataset engine runs one generator per core).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from stdgen.data.procedural import make_character
    from stdgen.data.procedural.body import body_template

    t0, c0 = time.perf_counter(), time.process_time()
    body_template()
    make_character(args.first_seed - 1)  # warm numba's compiled kernels
    print(f"template + first character (once per process): {time.perf_counter() - t0:.2f} s wall, "
          f"{time.process_time() - c0:.2f} s CPU")

    runs_wall, runs_cpu, singles, faces = [], [], [], []
    for r in range(args.repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        for i in range(args.count):
            s0 = time.perf_counter()
            ch = make_character(args.first_seed + i)
            singles.append(time.perf_counter() - s0)
            if r == 0:
                faces.append(sum(ch.part(p).num_faces for p in ("body", "clothes", "hair")))
        runs_wall.append((time.perf_counter() - w0) / args.count)
        runs_cpu.append((time.process_time() - c0) / args.count)
    wall, cpu = statistics.median(runs_wall), statistics.median(runs_cpu)
    last = args.first_seed + args.count - 1
    print(f"{args.count} characters x {args.repeats} runs (seeds {args.first_seed}..{last})")
    print(f"  median per character: {wall * 1000:.0f} ms wall, {cpu * 1000:.0f} ms CPU "
          f"-> {1 / wall:.2f} characters/s (wall), {1 / cpu:.2f} characters/s (CPU time)")
    print(f"  single characters: p10 {np.percentile(singles, 10) * 1000:.0f} ms, "
          f"p50 {np.percentile(singles, 50) * 1000:.0f} ms, p90 {np.percentile(singles, 90) * 1000:.0f} ms")
    print(f"  triangles per character: median {int(np.median(faces))} (body + clothes + hair)")
    _stages(args.first_seed, min(args.count, 8))


def _stages(first: int, count: int) -> None:
    """Where the time goes, from a profile of ``count`` characters."""
    import cProfile
    import pstats

    from stdgen.data.procedural import make_character

    prof = cProfile.Profile()
    prof.enable()
    for i in range(count):
        make_character(first + i)
    prof.disable()
    stats = pstats.Stats(prof)
    total = sum(v[3] for k, v in stats.stats.items() if k[2] == "make_character")
    parts = {
        "body shape": "make_body_shape",
        "body texture (face)": "paint_body_texture",
        "garments": "build_garment",
        "garment fit (pose space)": "correct_in_pose",
        "hair": "build_hair",
    }
    line = []
    for label, fn in parts.items():
        t = sum(v[3] for k, v in stats.stats.items() if k[2] == fn)
        line.append(f"{label} {100 * t / max(total, 1e-9):.0f}%")
    print("  time split (profiled): " + ", ".join(line))


if __name__ == "__main__":
    main()
