"""Geometry benchmarks: FlexiCubes extraction, semantic volume rendering, the extraction ceiling.

Every timing is the median of ``--repeat`` runs after one warm-up run (re-run on a quiet machine:
timings on a shared one are noisy). Three parts, each selectable with ``--only``:

``flexicubes``  extraction of a bumpy sphere's SDF (about 40 % of the grid across) at 64^3,
                128^3 and 256^3: forward (inference split, no gradients), forward in training mode
                (four triangles per quad, autograd graph) and its backward pass (loss = sum of
                vertex coordinates + L_dev, gradients to SDF values, deformations and all weights).
                scikit-image marching cubes on the same field is the reference.
``volume``      semantic volume rendering rays per second: a triplane field (3 x 32 x 64 x 64
                features, a 2-layer MLP of width 64 giving density, colour and three class logits),
                64 samples per ray, the kept-set rendering P = {body, clothes} (Eqs. 6-8); forward
                alone and forward + backward.
``ceiling``     the extraction ceiling: held-out procedural characters voxelised at each resolution
                (64^3, 100x150x100 -- the paper's 100x100x150 with 150 along the height -- 128^3,
                256^3), parts extracted with the semantic-equivalent SDF and FlexiCubes, per-part
                F-score@0.01 and Chamfer distance against the true parts in units of the
                character's height (``stdgen.geometry.metrics``, 100 000 samples per mesh).

Run from the repository root::

    python benchmarks/geometry_bench.py                        # CPU, everything
    python benchmarks/geometry_bench.py --device cuda --only flexicubes volume
    python benchmarks/geometry_bench.py --only ceiling --characters 20 --res 64 100x150x100 128 256
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _median_time(fn, repeat: int, device: torch.device) -> float:
    fn()  # warm-up (lazy initialisation, caches)
    _sync(device)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_flexicubes(device: torch.device, resolutions, repeat: int) -> None:
    print(f"\n## FlexiCubes extraction ({device}, median of {repeat})")
    print("| grid | faces | forward (inference) | forward (training) | backward | marching cubes (skimage, CPU) |")
    print("|---|---|---|---|---|---|")
    for res in resolutions:
        print(_flexicubes_row(device, res, repeat))


def _flexicubes_row(device: torch.device, res: int, repeat: int) -> str:
    from stdgen.geometry.flexicubes import flexicubes
    from stdgen.geometry.grid import Grid
    from stdgen.geometry.marching import marching_cubes

    grid = Grid.cube(res, 1.0)
    p = grid.points(device)
    r = p.norm(dim=-1)
    bumps = 0.03 * torch.sin(12 * p[..., 0]) * torch.sin(10 * p[..., 1]) * torch.sin(11 * p[..., 2])
    sdf = (r - 0.8 + bumps).contiguous()
    cells = grid.cells
    leaves = {
        "sdf": sdf.clone(),
        "deform": torch.zeros(*grid.shape, 3, device=device),
        "alpha": torch.zeros(*cells, 8, device=device),
        "beta": torch.zeros(*cells, 12, device=device),
        "gamma": torch.zeros(*cells, device=device),
    }
    leaves = {k: v.requires_grad_() for k, v in leaves.items()}

    def fwd():
        with torch.no_grad():
            return flexicubes(sdf, grid)

    def fwd_train():
        return flexicubes(leaves["sdf"], grid, deform=leaves["deform"], alpha=leaves["alpha"],
                          beta=leaves["beta"], gamma=leaves["gamma"], training=True)

    faces = fwd().faces.shape[0]
    t_fwd = _median_time(fwd, repeat, device)
    t_train = _median_time(fwd_train, repeat, device)
    bwd_times = []
    for _ in range(repeat + 1):
        out = fwd_train()
        loss = out.vertices.sum() + out.l_dev
        _sync(device)
        t0 = time.perf_counter()
        loss.backward()
        _sync(device)
        bwd_times.append(time.perf_counter() - t0)
        for v in leaves.values():
            v.grad = None
    t_bwd = statistics.median(bwd_times[1:])  # the first is the warm-up
    sdf_cpu = sdf.cpu()
    try:
        mc = f"{_median_time(lambda: marching_cubes(sdf_cpu, grid), repeat, torch.device('cpu')) * 1e3:.0f} ms"
    except ImportError:  # scikit-image missing (e.g. on a bare GPU machine)
        mc = "n/a"
    return (f"| {res}^3 | {faces} | {t_fwd * 1e3:.0f} ms | {t_train * 1e3:.0f} ms | {t_bwd * 1e3:.0f} ms "
            f"| {mc} |")


class _TriplaneField(torch.nn.Module):
    """A small S-LRM-like field: triplane features -> MLP -> (density, colour, class logits)."""

    def __init__(self, channels: int = 32, size: int = 64, width: int = 64):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.planes = torch.nn.Parameter(torch.randn(1, 3, channels, size, size, generator=g) * 0.5)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(3 * channels, width), torch.nn.SiLU(),
                                       torch.nn.Linear(width, width), torch.nn.SiLU(),
                                       torch.nn.Linear(width, 1 + 3 + 3))

    def forward(self, pts: torch.Tensor):
        from stdgen.geometry.triplane import sample_triplane

        f = sample_triplane(self.planes, pts[None], 1.0)[0]
        out = self.mlp(f)
        return torch.nn.functional.softplus(out[:, 0]), torch.sigmoid(out[:, 1:4]), out[:, 4:]


def bench_volume(device: torch.device, rays: int, samples: int, repeat: int) -> None:
    from stdgen.geometry.volume import render_rays
    from stdgen.structures.semantics import LAYER_SETS

    field = _TriplaneField().to(device)
    g = torch.Generator(device="cpu").manual_seed(1)
    origins = (torch.rand(rays, 3, generator=g) * 1.6 - 0.8).to(device)
    origins[:, 2] = 2.0
    dirs = torch.tensor([0.0, 0.0, -1.0], device=device).expand(rays, 3).contiguous()

    def fwd():
        with torch.no_grad():
            return render_rays(field, origins, dirs, 1.0, 3.0, samples, kept=LAYER_SETS["body_clothes"],
                               chunk=8192)

    def fwd_bwd():
        out = render_rays(field, origins, dirs, 1.0, 3.0, samples, kept=LAYER_SETS["body_clothes"], chunk=8192)
        (out.color.sum() + out.semantics.sum()).backward()
        field.zero_grad(set_to_none=True)

    t_f = _median_time(fwd, repeat, device)
    t_fb = _median_time(fwd_bwd, repeat, device)
    print(f"\n## Semantic volume rendering ({device}, {rays} rays x {samples} samples, triplane 3x32x64x64 + "
          f"MLP 64, kept set body+clothes, median of {repeat})")
    print("| pass | time | rays/s |")
    print("|---|---|---|")
    print(f"| forward | {t_f * 1e3:.0f} ms | {rays / t_f:,.0f} |")
    print(f"| forward + backward | {t_fb * 1e3:.0f} ms | {rays / t_fb:,.0f} |")


def _parse_res(text: str):
    parts = [int(x) for x in text.lower().split("x")]
    return parts[0] if len(parts) == 1 else tuple(parts)


def bench_ceiling(resolutions, count: int, method: str, points: int) -> None:
    from tqdm import tqdm

    from stdgen.commands.layers_demo import part_metrics
    from stdgen.data.procedural import make_character
    from stdgen.data.splits import held_out_seeds
    from stdgen.geometry.layers import LayerConfig, extract_layers
    from stdgen.geometry.voxelize import voxelize_character
    from stdgen.structures.semantics import PARTS

    seeds = held_out_seeds(count)
    chars = {s: make_character(s) for s in seeds}
    print(f"\n## Extraction ceiling ({count} held-out characters, seeds {seeds[0]}-{seeds[-1]}, {method}, "
          f"F-score@0.01 / Chamfer in units of the height; mean over characters, [min])")
    print("| grid | body F | clothes F | hair F | body CD | clothes CD | hair CD | s per character |")
    print("|---|---|---|---|---|---|---|---|")
    for res in resolutions:
        fs = {p: [] for p in PARTS}
        cds = {p: [] for p in PARTS}
        t0 = time.perf_counter()
        for ch in tqdm(chars.values(), desc=f"ceiling {res}", leave=False):
            fld = voxelize_character(ch, res)
            lay = extract_layers(fld.sdf, fld.probs, fld.grid, LayerConfig(method=method, layers=False))
            m = part_metrics(lay.parts, {p: ch.part(p) for p in PARTS}, count=points)
            for p, v in m.items():
                fs[p].append(v["fscore@0.01"])
                cds[p].append(v["chamfer"])
        per = (time.perf_counter() - t0) / len(chars)
        name = "x".join(map(str, res)) if isinstance(res, tuple) else f"{res}^3"
        cell = lambda v, f: f"{np.mean(v):{f}} [{np.min(v):{f}}]" if v else "-"
        cdc = lambda v: f"{np.nanmean(v):.4f}" if v else "-"
        print(f"| {name} | {cell(fs[PARTS[0]], '.3f')} | {cell(fs[PARTS[1]], '.3f')} | {cell(fs[PARTS[2]], '.3f')} "
              f"| {cdc(cds[PARTS[0]])} | {cdc(cds[PARTS[1]])} | {cdc(cds[PARTS[2]])} | {per:.1f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", nargs="+", choices=("flexicubes", "volume", "ceiling"),
                    default=["flexicubes", "volume", "ceiling"])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--fc-res", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--rays", type=int, default=16384)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--characters", type=int, default=20)
    ap.add_argument("--res", type=_parse_res, nargs="+", default=[64, (100, 150, 100), 128, 256])
    ap.add_argument("--method", choices=("flexicubes", "marching"), default="flexicubes")
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (1 is far faster than 2 on a machine shared with other jobs)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    if "flexicubes" in args.only:
        bench_flexicubes(device, args.fc_res, args.repeat)
    if "volume" in args.only:
        bench_volume(device, args.rays, args.samples, args.repeat)
    if "ceiling" in args.only:
        bench_ceiling(args.res, args.characters, args.method, args.points)


if __name__ == "__main__":
    main()
