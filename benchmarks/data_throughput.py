"""Dataset throughput: characters rendered per second.

Two modes, each printing the median of several runs (re-run it on a quiet machine; timings on a
shared one are noisy):

``disk``   the full per-character render set of ``stdgen data render`` (8 evaluation views, top and
           bottom, 5 face close-ups, R random views, all three layer sets, every map, and the posed
           canonicalisation pairs), one character at a time: making the character, rendering it,
           and writing its folder (PNG encoding + character.glb) are timed separately.
``render`` the batched renderer alone (``render_jobs`` through ``RenderStream.render_batch``): one
           pre-made batch of characters rendered repeatedly, the ceiling the GPU sets.
``stream`` the on-the-fly training stream (:class:`stdgen.data.stream.RenderStream`): characters
           per second through the 8 evaluation views (which hold the 6 generation views), all
           three layer sets, every map, made by ``--workers`` CPU processes and rendered in batches
           on ``--device``. ``--pool N`` re-poses and re-colours a pool of N characters per worker
           instead of making new ones (state the pool size with such a figure).

On the GPU machine (16 cores + GPU), from the repository root, with the wheels it lacks in
``.whl/`` (``bash benchmarks/gpu_session.sh data`` installs them and runs these)::

    python benchmarks/data_throughput.py stream --device cuda --resolution 256 --workers 15 --batch-size 32
    python benchmarks/data_throughput.py disk --device cuda --resolution 256 512 --count 6

``--generator standin`` uses the small primitive test character of ``tests/data`` (to measure the
renderer alone, or before the procedural generator exists); the default is the procedural one.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _generator(name: str):
    if name == "standin":
        sys.path.insert(0, str(ROOT / "tests" / "data"))
        from dataset_standin import standin_a_posed

        return standin_a_posed
    from stdgen.data.render_dataset import procedural_character

    return procedural_character


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def _describe(device) -> str:
    import os

    import torch

    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} + {os.cpu_count()} CPU cores, torch {torch.__version__}"
    return f"CPU, {torch.get_num_threads()} torch threads, {os.cpu_count()} cores, torch {torch.__version__}"


def bench_disk(args) -> None:
    from stdgen.data.render_dataset import RenderConfig, default_poses, render_character, write_character_folder
    from stdgen.utils.device import resolve_device

    device = resolve_device(args.device)
    make = _generator(args.generator)
    print(f"disk mode on {_describe(device)}; generator {args.generator}; backend {args.backend}")
    seeds = list(range(args.seed, args.seed + args.count))
    make(args.seed + args.count)  # warm-up: numba compilation, caches
    make_t = []
    chars = []
    for s in seeds:
        t0 = time.perf_counter()
        chars.append(make(s))
        make_t.append(time.perf_counter() - t0)
    make_s = statistics.median(make_t)
    print(f"make: {make_s * 1000:.0f} ms per character (median of {len(seeds)}, one process)")
    for res in args.resolution:
        cfg = RenderConfig(resolution=res, random_views=args.random_views, posed_views=2, device=str(device),
                           backend=args.backend)
        poses = [default_poses(c, cfg.posed_views, s) for c, s in zip(chars, seeds)]
        render_character(chars[0], cfg, seed=seeds[0], poses=poses[0])  # warm-up (JIT, caches)
        render_t, write_t = [], []
        with tempfile.TemporaryDirectory() as tmp:
            for run in range(args.runs):
                for c, s, p in zip(chars, seeds, poses):
                    _sync(device)
                    t = time.perf_counter()
                    r = render_character(c, cfg, seed=s, poses=p)
                    _sync(device)
                    t1 = time.perf_counter()
                    r.meta.update(id=f"{s:07d}", split="train", source=args.generator)
                    write_character_folder(Path(tmp) / f"{run}_{s:07d}", r, c)
                    write_t.append(time.perf_counter() - t1)
                    render_t.append(t1 - t)
        views = len(r.views)
        r_med, w_med = statistics.median(render_t), statistics.median(write_t)
        total = make_s + r_med + w_med
        print(f"{res:4d}^2: {views} views x 3 layer sets + {cfg.posed_views} posed | render {r_med * 1000:7.0f} ms"
              f" ({1 / r_med:6.2f} char/s) | write {w_med * 1000:6.0f} ms | make+render+write"
              f" {1 / total:6.2f} char/s in one process  [median of {len(render_t)}]")


def bench_stream(args) -> None:
    from stdgen.data.stream import RenderStream, StreamConfig
    from stdgen.utils.device import resolve_device

    device = resolve_device(args.device)
    make = _generator(args.generator) if args.generator == "standin" else None
    for res in args.resolution:
        cfg = StreamConfig(batch_size=args.batch_size, resolution=res, views="eval", workers=args.workers,
                           pool_size=args.pool, device=str(device), backend=args.backend, background="random",
                           start=args.seed, prefetch_thread=not args.no_prefetch_thread)
        print(f"stream mode on {_describe(device)}; {res}^2, 8 eval views (6 gen included) x 3 layer sets, "
              f"all maps; batch {args.batch_size}, workers {args.workers}, "
              + (f"pool {args.pool} per worker (re-posed, re-coloured)" if args.pool else "fresh characters")
              + ("" if not args.workers else ", no prefetch thread" if args.no_prefetch_thread else ", prefetch thread")
              + f"; generator {args.generator}")
        rates = []
        # One stream: its workers start (and JIT-compile the generator) once; each run times the next
        # ``--batches`` batches after ``--warmup`` untimed ones.
        it = iter(RenderStream(cfg, make=make))
        for _ in range(args.warmup):
            next(it)
        for run in range(args.runs):
            _sync(device)
            t = time.perf_counter()
            n = 0
            for _ in range(args.batches):
                n += len(next(it)["seed"])
            _sync(device)
            rates.append(n / (time.perf_counter() - t))
            print(f"  run {run}: {rates[-1]:.2f} characters/s ({n} characters)", flush=True)
        del it
        print(f"{res:4d}^2: median {statistics.median(rates):.2f} characters/s over {len(rates)} runs")


def bench_render(args) -> None:
    """The batched renderer alone: the same pre-made batch of characters rendered again and again."""
    import torch

    from stdgen.data.stream import CharacterSource, RenderStream, StreamConfig
    from stdgen.utils.device import resolve_device

    device = resolve_device(args.device)
    make = _generator(args.generator) if args.generator == "standin" else None
    for res in args.resolution:
        cfg = StreamConfig(batch_size=args.batch_size, resolution=res, views="eval", device=str(device),
                           backend=args.backend, background="random", start=args.seed, count=args.batch_size)
        items = list(CharacterSource(cfg, make))
        stream = RenderStream(cfg, make=make)
        gen = torch.Generator().manual_seed(0)
        faces = sum(it.scene.num_faces for it in items) / len(items)
        print(f"render mode on {_describe(device)}; {res}^2, 8 eval views x 3 layer sets, all maps; batch "
              f"{len(items)} characters of {faces / 1000:.0f}k faces on average; generator {args.generator}")
        stream.render_batch(items, device, gen)  # warm-up: kernel compilation
        rates = []
        for run in range(args.runs):
            _sync(device)
            t = time.perf_counter()
            for _ in range(args.batches):
                stream.render_batch(items, device, gen)
            _sync(device)
            rates.append(len(items) * args.batches / (time.perf_counter() - t))
            print(f"  run {run}: {rates[-1]:.2f} characters/s", flush=True)
        print(f"{res:4d}^2: median {statistics.median(rates):.2f} characters/s rendered over {len(rates)} runs")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=("disk", "stream", "render"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--backend", default="auto")
    p.add_argument("--resolution", type=int, nargs="+", default=[256, 512])
    p.add_argument("--generator", choices=("procedural", "standin"), default="procedural")
    p.add_argument("--seed", type=int, default=0, help="first seed / split index")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--count", type=int, default=3, help="disk: characters per run")
    p.add_argument("--random-views", type=int, default=4, help="disk: random views per character")
    p.add_argument("--workers", type=int, default=0, help="stream: character-making processes")
    p.add_argument("--pool", type=int, default=0, help="stream: pool size per worker (0: fresh characters)")
    p.add_argument("--batch-size", type=int, default=8, help="stream: characters per batch")
    p.add_argument("--batches", type=int, default=4, help="stream: timed batches per run")
    p.add_argument("--no-prefetch-thread", action="store_true",
                   help="stream: receive items on the main thread (default: a background thread)")
    p.add_argument("--warmup", type=int, default=2, help="stream: untimed batches before the runs")
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    {"disk": bench_disk, "stream": bench_stream, "render": bench_render}[args.mode](args)


if __name__ == "__main__":
    main()
