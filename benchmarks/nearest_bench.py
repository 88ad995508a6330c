"""Nearest-point search (``stdgen.geometry.nearest.NearestPoints``): each backend, one query batch.

    python benchmarks/nearest_bench.py [--device cuda] [--queries 27000] [--points 11000] [--repeats 20]

The sizes are those of the refinement's clothes stage (refined clothes vertices against the body's).
Points are samples of an ellipsoid shell around a character-sized box, queries a slightly larger
shell, so neighbours are millimetres apart as on real meshes. Prints the median seconds per query
batch (k = 1, and k = 8 as the dilation asks) of: scipy's k-d tree (host; tree built once, not
timed), the float64 matrix-product tiles, and on CUDA the Triton kernel; on the GPU the clock
includes a synchronisation, and each query batch starts on the device.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def shell(n: int, scale: float, rng) -> np.ndarray:
    d = rng.normal(size=(n, 3))
    return d / np.linalg.norm(d, axis=1, keepdims=True) * np.array([0.25, 0.8, 0.15]) * scale + [0, 0.8, 0]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--queries", type=int, default=27000)
    ap.add_argument("--points", type=int, default=11000)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args(argv)
    from stdgen.geometry.nearest import NearestPoints

    dev = torch.device(args.device)
    rng = np.random.default_rng(0)
    pts = shell(args.points, 1.0, rng)
    q = torch.as_tensor(shell(args.queries, 1.05, rng), dtype=torch.float32, device=dev)
    backends = ["kdtree", "brute"] + (["triton"] if dev.type == "cuda" else [])

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    print(f"{args.queries} queries x {args.points} points, device {dev}, torch threads {torch.get_num_threads()}")
    print("| backend | k = 1 (ms) | k = 8 (ms) | k = 1 indices equal to the k-d tree's |")
    print("|---|---|---|---|")
    ref = None
    for b in backends:
        nn = NearestPoints(pts, dev, backend=b)
        row = []
        for k in (1, 8):
            nn.query(q, k=k)  # warm-up (compilation)
            times = []
            for _ in range(args.repeats):
                sync()
                t0 = time.perf_counter()
                _, idx = nn.query(q, k=k)
                sync()
                times.append(time.perf_counter() - t0)
            row.append(statistics.median(times) * 1e3)
            if k == 1:
                idx = idx[:, 0].cpu().numpy()
                ref = idx if ref is None else ref
                agree = float((idx == ref).mean())
        print(f"| {b} | {row[0]:.3f} | {row[1]:.3f} | {agree:.4%} |")


if __name__ == "__main__":
    main()
