"""Tuning aid for the Triton rasteriser (GPU): times the visibility pass under several launch
shapes and prints a per-kernel profile of forward + backward. Not part of the test suite.

    python benchmarks/render_tune.py [--cases 100k,1M]
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch

sys.path.insert(0, "benchmarks")
import render_bench
from stdgen.render import _triton, rasterize, visibility

BIG_CONFIGS = [(4096, 128, 32), (2048, 128, 32), (8192, 128, 32), (4096, 256, 16)]  # medium / huge grids
CONFIGS = [  # (triangles per program, S, MAXS, warps); the first is the default
    (128, 2, 8, 4), (64, 2, 8, 2), (128, 1, 16, 4),
]


def _time(fn, reps=20):
    for _ in range(3):
        fn()
    ts = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        s.record()
        fn()
        e.record()
        torch.cuda.synchronize()
        ts.append(s.elapsed_time(e))
    return statistics.median(ts)


def tune_case(case: str) -> None:
    faces, views, res = render_bench.CASES[case]
    sc = render_bench._scene(faces, views, res, "cuda")
    pos, tri = sc["pos"], sc["tri"]
    ref = visibility(pos, tri, (res, res), backend="triton")
    print(f"\n{case}: {faces} faces, {views} views, {res}^2")
    print("| BLOCK | S | MAXS | warps | visibility ms | rasterize ms | agree |")
    for block, s, maxs, warps in CONFIGS:
        _triton._BLOCK_TRI, _triton._S, _triton._MAXS, _triton._WARPS_TRI = block, s, maxs, warps
        f = visibility(pos, tri, (res, res), backend="triton")
        agree = float((f == ref).float().mean())
        tv = _time(lambda: visibility(pos, tri, (res, res), backend="triton"))
        tr = _time(lambda: rasterize(pos, tri, (res, res)))
        print(f"| {block} | {s} | {maxs} | {warps} | {tv:.3f} | {tr:.3f} | {agree:.5f} |")
    _triton._BLOCK_TRI, _triton._S, _triton._MAXS, _triton._WARPS_TRI = CONFIGS[0]
    print("| medium programs | huge programs | huge split | visibility ms | agree |")
    default = (_triton._BIG_PROGRAMS, _triton._HUGE_PROGRAMS, _triton._SPLIT)
    for programs, huge, split in BIG_CONFIGS:
        _triton._BIG_PROGRAMS, _triton._HUGE_PROGRAMS, _triton._SPLIT = programs, huge, split
        f = visibility(pos, tri, (res, res), backend="triton")
        agree = float((f == ref).float().mean())
        tv = _time(lambda: visibility(pos, tri, (res, res), backend="triton"))
        print(f"| {programs} | {huge} | {split} | {tv:.3f} | {agree:.5f} |")
    _triton._BIG_PROGRAMS, _triton._HUGE_PROGRAMS, _triton._SPLIT = default
    _, fwd = render_bench._ours(sc, "auto")
    leaf = pos.detach().clone().requires_grad_(True)

    def step():
        leaf.grad = None
        out, _ = fwd(leaf)
        out.backward(sc["cot"])

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            step()
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=14))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="100k,1M,5k")
    args = ap.parse_args()
    for case in args.cases.split(","):
        tune_case(case)
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
