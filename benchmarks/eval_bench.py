"""Time ``stdgen eval``'s per-character protocol on the CPU (or a GPU): full protocol at 512^2.

    python benchmarks/eval_bench.py [--resolution 512] [--repeats 5] [--seed 900000] [--device cpu]
    python benchmarks/eval_bench.py --coarse-baseline 6 -o out/eval-baseline

The second form makes a reference run instead: the first N held-out procedural characters rendered
as ground truth, "predictions" that are their layers extracted from a 64^3 voxelisation
(``stdgen.commands.layers_demo.layers_demo``, colours from the nearest true vertex: roughly what a coarse
reconstruction gives), then ``stdgen eval`` on them; the report lands in ``-o``.

Makes one ground-truth character folder (the procedural character of ``--seed`` when
``stdgen.data.procedural.make_character`` exists, else the test stand-in of ``tests/eval``,
said in the output) and a prediction (the true parts with the clothes inflated by 1 %, the hair
moved 1 cm and the whole thing 2 pixels to the side, so every metric has work to do), then times
``evaluate_character`` (render the eight views, register, image metrics, per-part IoU, geometry
with 100k samples, hollowness, penetration) and each stage alone. Prints medians over
``--repeats`` runs after one warm-up run (numba compilation and caches are not counted).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _character(seed: int):
    from stdgen.data.render_dataset import procedural_character

    return procedural_character(seed), "procedural"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resolution", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=900000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--coarse-baseline", type=int, default=0, metavar="N",
                    help="instead of timing: evaluate coarse 64^3 extractions of N held-out characters")
    ap.add_argument("-o", "--output", default="out/eval-baseline", help="report folder of --coarse-baseline")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.coarse_baseline:
        coarse_baseline(args.coarse_baseline, args.resolution, Path(args.output), args.device)
        return

    from stdgen.data.render_dataset import RenderConfig, render_to_folder
    from stdgen.eval import decomposition as dec
    from stdgen.eval import protocol as pr
    from stdgen.geometry.metrics import character_geometry_metrics
    from stdgen.io.dataset import read_renders
    from stdgen.io.glb import write_glb
    from stdgen.structures.semantics import Part

    character, source = _character(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="eval-bench-"))
    cfg = RenderConfig(resolution=args.resolution, random_views=4, posed_views=0, device=args.device)
    render_to_folder(character, tmp / "gt", cfg, seed=args.seed, source=source)
    true_parts = pr.load_parts(tmp / "gt" / "character.glb")
    half = __import__("json").loads((tmp / "gt" / "meta.json").read_text())["framing"]["half_size"]
    shift = np.array([2 * 2 * half / args.resolution, 0, 0], np.float32)
    pred = {}
    for p, m in true_parts.items():
        v = m.vertices + shift
        if p == Part.CLOTHES and m.num_vertices:
            c = v.mean(0)
            v = (v - c) * 1.01 + c
        if p == Part.HAIR:
            v = v + np.array([0, 0.01, 0], np.float32)
        pred[p.key] = m.replace(vertices=v.astype(np.float32), normals=None)
    (tmp / "pred").mkdir()
    write_glb(pred, tmp / "pred" / "character.glb")
    faces = {p.key: m.num_faces for p, m in true_parts.items()}
    print(f"character: {source}, seed {args.seed}, faces {faces}, {args.resolution}^2, device {args.device}, "
          f"torch threads {torch.get_num_threads()}")

    config = pr.EvalConfig(device=args.device)
    pred_parts = pr.load_parts(tmp / "pred" / "character.glb")
    renders = read_renders(tmp / "gt", layers=("full",), maps=("rgb", "normal", "sem"))
    idx = renders.view_index("eval")
    true = pr._true_viewset(renders, idx, 1.0)
    cams = renders.cameras(idx)

    stages = {
        "read truth renders": lambda: read_renders(tmp / "gt", layers=("full",), maps=("rgb", "normal", "sem")),
        "read both GLBs": lambda: (pr.load_parts(tmp / "pred" / "character.glb"),
                                   pr.load_parts(tmp / "gt" / "character.glb")),
        "render 8 views": lambda: pr.render_parts(pred_parts, cams, args.resolution, device=args.device),
        "register + image metrics": lambda: pr.compare_views(
            pr.render_parts(pred_parts, cams, args.resolution, device=args.device), true, register=True,
            max_shift=0.25, background=1.0, device=args.device),
        "geometry (100k samples)": lambda: character_geometry_metrics(pred_parts, true_parts),
        "hollowness + penetration": lambda: (dec.clothes_hollowness(pred_parts[Part.BODY], pred_parts[Part.CLOTHES]),
                                             dec.layer_penetration(pred_parts)),
        "TOTAL evaluate_character": lambda: pr.evaluate_character(tmp / "pred", tmp / "gt", config),
    }
    rows = []
    for name, fn in stages.items():
        fn()  # warm-up: numba compilation, caches
        times, cpu = [], []
        for _ in range(args.repeats):
            t, c = time.perf_counter(), time.process_time()
            fn()
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        rows.append((name, statistics.median(times), min(times), statistics.median(cpu)))
    # CPU time is the process's (all threads); on a busy machine wall time inflates, CPU time less so.
    print(f"{'stage':28s} {'median s':>9s} {'min s':>7s} {'cpu s':>7s}   ({args.repeats} runs, wall clock)")
    for name, med, lo, c in rows:
        print(f"{name:28s} {med:9.3f} {lo:7.3f} {c:7.3f}")
    m = pr.evaluate_character(tmp / "pred", tmp / "gt", config).metrics
    print("metrics of the perturbed prediction: " + ", ".join(
        f"{k} {m[k]:.4f}" for k in ("ssim", "psnr", "mask_iou", "iou_hair", "chamfer", "fscore@0.01",
                                     "clothes/fscore@0.01", "hair/fscore@0.01", "shift_px")))
    note = " (note: includes the 'render 8 views' stage, re-run inside 'register + image metrics')"
    print(f"per-character total (median): {rows[-1][1]:.2f} s; goal < 5 s{note}")


def coarse_baseline(count: int, resolution: int, out: Path, device: str) -> None:
    from stdgen.cli import main as stdgen_main
    from stdgen.commands.layers_demo import layers_demo
    from stdgen.data.render_dataset import RenderConfig, procedural_character, render_to_folder
    from stdgen.data.splits import held_out_seeds
    from stdgen.io.glb import write_glb
    from stdgen.structures.semantics import PARTS

    work = out.with_name(out.name + "-inputs")
    cfg = RenderConfig(resolution=resolution, random_views=0, face_views=False, top_bottom=False, posed_views=0,
                       device=device)
    for seed in held_out_seeds(count):
        name = f"{seed:07d}"
        if (work / "pred" / name / "character.glb").is_file():
            continue
        character = procedural_character(seed)
        render_to_folder(character, work / "gt" / name, cfg, seed=seed, source="procedural")
        res = layers_demo(character, resolution=64, count=20_000)
        (work / "pred" / name).mkdir(parents=True, exist_ok=True)
        write_glb({p.key: res.meshes.parts[p] for p in PARTS}, work / "pred" / name / "character.glb")
        print(f"made {name}", flush=True)
    t = time.perf_counter()
    stdgen_main(["eval", str(work / "pred"), str(work / "gt"), "-o", str(out), "--device", device])
    print(f"stdgen eval of {count} characters: {time.perf_counter() - t:.1f} s wall")


if __name__ == "__main__":
    main()
