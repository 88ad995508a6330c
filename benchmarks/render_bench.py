"""Rasteriser benchmark: the issue's workload on the CPU or on CUDA, medians of several runs.

Work (as in the issue's reference figures): a torus-knot mesh of F faces seen from V perspective
views at R x R; forward = rasterize + interpolate a 3-channel vertex attribute + antialias;
backward = the gradient of a fixed random linear loss to the clip-space vertex positions.

    python benchmarks/render_bench.py                       # CPU: numba fast path vs the PyTorch reference
    python benchmarks/render_bench.py --device cuda --nvdiffrast   # GPU: Triton fast path vs nvdiffrast

On CUDA every run is bracketed by CUDA events and followed by a synchronize, so a figure includes
the host's launch overhead, the same way for every implementation. On the CPU the table gives wall
time and, separately, the process's CPU time (which other jobs on a shared machine disturb less).
nvdiffrast is timed here only (evaluation; stdgen never imports it) when ``--nvdiffrast`` is given
and it is importable.
Prints a table; ``--json PATH`` also writes the figures.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import torch

CASES = {
    "100k": (100_000, 6, 512),  # the reference workload
    "1M": (1_000_000, 8, 1024),  # the large workload
    "5k": (5_000, 8, 1024),  # few, large triangles: the GPU path's big-triangle kernel
}


def _scene(faces: int, views: int, res: int, device: str):
    from stdgen.commands.render_demo import torus_knot
    from stdgen.render import antialias_topology, perspective_cameras

    mesh = torus_knot(faces)
    az = torch.linspace(0, 360, views + 1)[:-1]
    cams = perspective_cameras(az, 20.0, 2.6, device=device)
    verts = torch.from_numpy(mesh.vertices).to(device)
    tri = torch.from_numpy(mesh.faces).to(device)
    attr = torch.from_numpy(mesh.colors).to(device)
    pos = cams.clip(verts).contiguous()
    g = torch.Generator(device="cpu").manual_seed(0)
    cot = torch.randn(views, res, res, 3, generator=g).to(device)
    return {"pos": pos, "tri": tri, "attr": attr, "topo": antialias_topology(tri, verts), "cot": cot,
            "res": res, "faces": tri.shape[0], "mesh": mesh}


def _ours(sc, backend: str):
    from stdgen.render import antialias, interpolate, rasterize

    tri, attr, topo, res = sc["tri"], sc["attr"], sc["topo"], sc["res"]

    def vis():
        return rasterize(sc["pos"], tri, (res, res), backend=backend)

    def fwd(pos):
        rast = rasterize(pos, tri, (res, res), backend=backend)
        col = interpolate(attr, rast, tri, backend=backend)
        return antialias(col, rast, pos, tri, topo, backend=backend), rast

    return vis, fwd


def _nvdiffrast(sc):
    """nvdiffrast's equivalent of the work (its images are bottom row first: flip for comparisons)."""
    import os

    import torch.utils.cpp_extension as ext

    # torch >= 2.11: the JIT-built plugin is found by importlib only once it is in sys.modules (when
    # built in this process) or on sys.path (when an earlier process built it).
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or ext.get_default_build_root()
    if os.path.isdir(root):
        for sub in sorted(os.listdir(root)):
            for name in (os.listdir(os.path.join(root, sub)) if os.path.isdir(os.path.join(root, sub)) else []):
                if name.startswith("nvdiffrast_plugin") and os.path.join(root, sub, name) not in sys.path:
                    sys.path.append(os.path.join(root, sub, name))
    if not getattr(ext.load, "_stdgen_wrapped", False):
        orig = ext.load

        def load(*a, **kw):
            mod = orig(*a, **kw)
            name = kw.get("name", a[0] if a else None)
            if name and mod is not None:
                sys.modules[name] = mod
            return mod

        load._stdgen_wrapped = True
        ext.load = load
    import nvdiffrast.torch as dr

    ctx = dr.RasterizeCudaContext(device=sc["pos"].device)
    tri = sc["tri"].int().contiguous()
    attr = sc["attr"].contiguous()
    res = sc["res"]
    topo = dr.antialias_construct_topology_hash(tri)

    def vis():
        return dr.rasterize(ctx, sc["pos"], tri, resolution=[res, res])[0]

    def fwd(pos):
        rast, _ = dr.rasterize(ctx, pos, tri, resolution=[res, res])
        col, _ = dr.interpolate(attr, rast, tri)
        return dr.antialias(col, rast, pos, tri, topology_hash=topo), rast

    return vis, fwd


def _timer(device: str):
    if device == "cuda":

        def run(fn):
            torch.cuda.synchronize()
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            fn()
            e.record()
            torch.cuda.synchronize()
            return s.elapsed_time(e) / 1000.0

    else:

        def run(fn):
            t0 = time.perf_counter()
            c0 = time.process_time()
            fn()
            _CPU_TIMES.append(time.process_time() - c0)  # this process's CPU seconds, all its threads
            return time.perf_counter() - t0

    return run


_CPU_TIMES: list[float] = []


def measure(sc, impl, device: str, repeats: int, warmup: int, graph: bool = False) -> dict[str, float]:
    vis, fwd = impl
    cot = sc["cot"]
    leaf = sc["pos"].detach().clone().requires_grad_(True)

    def forward():
        with torch.no_grad():
            fwd(sc["pos"])

    def forward_backward():
        leaf.grad = None
        out, _ = fwd(leaf)
        out.backward(cot)

    run = _timer(device)
    res = {}
    for name, fn in (("rasterize", lambda: vis()), ("forward", forward), ("forward+backward", forward_backward)):
        for _ in range(warmup):
            fn()
        _CPU_TIMES.clear()
        res[name] = statistics.median(run(fn) for _ in range(repeats))
        if device == "cpu":
            res[name + " (cpu time)"] = statistics.median(_CPU_TIMES)
    if device == "cuda" and graph:
        # The forward captured once in a CUDA graph and replayed: the launch overhead gone.
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            forward()
        torch.cuda.current_stream().wait_stream(stream)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            forward()
        for _ in range(warmup):
            g.replay()
        res["forward (graph)"] = statistics.median(run(g.replay) for _ in range(repeats))
    return res


def agreement(sc, fwd_a, fwd_b, flip_b: bool) -> float:
    """Fraction of pixels where two implementations pick the same face (or both none)."""
    with torch.no_grad():
        fa = fwd_a(sc["pos"])[1][..., 3]
        fb = fwd_b(sc["pos"])[1][..., 3]
    if flip_b:
        fb = fb.flip(1)
    return float((fa.round() == fb.round()).float().mean())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--cases", default=None, help="comma-separated of " + ", ".join(CASES) + " (default: 100k on "
                    "the CPU, all on CUDA)")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per figure (median)")
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--reference", action="store_true", help="also time the plain PyTorch reference")
    ap.add_argument("--nvdiffrast", action="store_true", help="also time nvdiffrast (CUDA only)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for torch and numba")
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args(argv)
    dev = args.device
    if dev == "cuda" and not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    if args.threads:
        import numba

        torch.set_num_threads(args.threads)
        numba.set_num_threads(args.threads)
    cases = (args.cases or ("100k" if dev == "cpu" else "100k,1M,5k")).split(",")
    repeats = args.repeats or (5 if dev == "cpu" else 30)
    warmup = args.warmup if args.warmup is not None else (2 if dev == "cpu" else 5)
    if dev == "cuda":
        machine = torch.cuda.get_device_name()
    else:
        import numba

        machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch / " \
                  f"{numba.get_num_threads()} numba threads"
    fast = "triton" if dev == "cuda" else "numba"
    rows = []
    for case in cases:
        faces, views, res = CASES[case]
        sc = _scene(faces, views, res, dev)
        impls = {f"stdgen ({fast})": _ours(sc, "auto")}
        if args.reference or (dev == "cpu" and case == "100k"):
            impls["stdgen (torch reference)"] = _ours(sc, "torch")
        if args.nvdiffrast and dev == "cuda":
            try:
                impls["nvdiffrast"] = _nvdiffrast(sc)
            except Exception as exc:  # evaluation aid only: report and go on
                print(f"nvdiffrast unavailable: {type(exc).__name__}: {exc}", file=sys.stderr)
        base = None
        for name, impl in impls.items():
            reps = repeats if "reference" not in name else max(3, min(repeats, 5))
            ours_fast = name == f"stdgen ({fast})"
            fig = measure(sc, impl, dev, reps, warmup if "reference" not in name else 1, graph=ours_fast)
            row = {"case": case, "faces": sc["faces"], "views": views, "res": res, "impl": name, **fig}
            if name == "nvdiffrast":
                row["agreement_with_stdgen"] = agreement(sc, impls[f"stdgen ({fast})"][1], impl[1], flip_b=True)
            rows.append(row)
            if base is None:
                base = row
        ref = next((r for r in rows if r["case"] == case and r["impl"] == "nvdiffrast"), None)
        if ref is not None:
            for r in rows:
                if r["case"] == case:
                    r["ratio_to_nvdiffrast"] = r["forward+backward"] / ref["forward+backward"]
        del sc
        if dev == "cuda":
            torch.cuda.empty_cache()
    unit, scale = ("ms", 1000.0) if dev == "cuda" else ("s", 1.0)
    print(f"\nmachine: {machine}; torch {torch.__version__}; medians of {repeats} runs ({unit})")
    print("| case | impl | rasterize | forward | forward+backward | fwd+bwd / nvdiffrast | forward, CUDA graph |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['ratio_to_nvdiffrast']:.2f}" if "ratio_to_nvdiffrast" in r else ""
        graph = f"{r['forward (graph)'] * scale:.3f}" if "forward (graph)" in r else ""
        print(f"| {r['faces']} faces, {r['views']} views, {r['res']}² | {r['impl']} | {r['rasterize'] * scale:.3f} | "
              f"{r['forward'] * scale:.3f} | {r['forward+backward'] * scale:.3f} | {ratio} | {graph} |")
    if dev == "cpu":
        print("\nCPU time of the process (all its threads; with one thread, about the wall time on an idle core):")
        print("| impl | rasterize | forward | forward+backward |")
        print("|---|---|---|---|")
        for r in rows:
            print(f"| {r['impl']} | {r['rasterize (cpu time)']:.3f} | {r['forward (cpu time)']:.3f} | "
                  f"{r['forward+backward (cpu time)']:.3f} |")
    for r in rows:
        if "agreement_with_stdgen" in r:
            share = 100 * r["agreement_with_stdgen"]
            print(f"face ids, stdgen vs nvdiffrast ({r['case']}): {share:.3f}% of pixels agree")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine, "torch": torch.__version__, "repeats": repeats, "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
