"""Where the refinement's time goes: seconds per phase of each layer's stage, for one folder.

    python benchmarks/refine_profile.py CHARACTER_DIR [--device cuda] [--runs 2] [--trace]
        [--set clothes.remesh_every=4 ...]

Phases (``StageResult.timings``): setup, forward (render + losses), collision (the collision
loss's nearest-neighbour lookup, part of forward), backward, update (the optimiser step), remesh,
explicit_target, dilation; then the texture bake per part (atlas = xatlas, bake = the rest).
The first run includes compilation and start-up; the last run is printed. ``--trace`` adds a
torch.profiler table (operators by self host time) of the last run. ``--set`` overrides
``RefineConfig`` fields (``stage.field=value``, ``*.field=value`` for all three stages,
``texture.field=value`` ...).
"""

from __future__ import annotations

import argparse
import ast
import time
from pathlib import Path

import torch


def override_config(cfg, assignments: list[str]) -> None:
    """Set ``RefineConfig`` fields from ``path=value`` strings: ``body.steps=40`` (a stage of
    ``cfg.schedule``; ``*`` = every stage), ``texture.atlas_in_background=False``, ``schedule.dilate=False``."""
    for item in assignments:
        key, value = item.split("=", 1)
        value = ast.literal_eval(value)
        head, *path = key.split(".")
        if head in ("body", "clothes", "hair", "*"):
            roots = [getattr(cfg.schedule, s) for s in (["body", "clothes", "hair"] if head == "*" else [head])]
        else:
            roots = [getattr(cfg, head)]
        for obj in roots:
            for name in path[:-1]:
                obj = getattr(obj, name)
            if not hasattr(obj, path[-1]):
                raise SystemExit(f"--set: {key}: no field {path[-1]!r}")
            setattr(obj, path[-1], value)
    cfg.validate()  # setattr skips the configs' checks


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--trace", action="store_true")
    ap.add_argument("--set", nargs="*", default=[], help="RefineConfig overrides, stage.field=value")
    args = ap.parse_args(argv)
    from stdgen.io.dataset import read_renders
    from stdgen.refine.coarse import coarse_layers
    from stdgen.refine.core import RefineConfig
    from stdgen.refine.folder import STAGE_LAYER_SET, read_true_parts
    from stdgen.refine.schedule import refine_character
    from stdgen.refine.targets import targets_from_renders
    from stdgen.refine.texture import texture_part, uv_atlas
    from stdgen.structures.mesh import Mesh, merge_meshes
    from stdgen.structures.semantics import PARTS

    dev = torch.device(args.device)
    cfg = RefineConfig()
    override_config(cfg, args.set)
    folder = Path(args.folder)
    renders = read_renders(folder, layers=tuple(sorted(set(STAGE_LAYER_SET.values()))), maps=("rgb", "normal", "sem"))
    coarse = coarse_layers(read_true_parts(folder), cfg.coarse)
    targets = {p: targets_from_renders(renders, p, device=dev) for p in PARTS if not coarse[p].is_empty}
    gen = renders.view_index("gen")

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def run():
        sync()
        t0 = time.perf_counter()
        res = refine_character(coarse, targets, cfg.schedule, device=dev)
        sync()
        t_refine = time.perf_counter() - t0
        tex = {}
        for p, r in res.stages.items():
            scene = merge_meshes([Mesh(res.stages[q].vertices, res.stages[q].faces) for q in res.stages if q <= p])
            images = torch.as_tensor(renders.layers[STAGE_LAYER_SET[p]].rgb[gen]).float() / 255.0
            t1 = time.perf_counter()
            uv_atlas(r.vertices, r.faces, cfg.texture.size, cfg.texture.padding, cfg.texture.atlas_charts_hint)
            t2 = time.perf_counter()
            texture_part(Mesh(r.vertices, r.faces), images, renders.cameras(gen), scene.vertices, scene.faces,
                         cfg.texture, device=dev)
            sync()
            t3 = time.perf_counter()
            tex[p] = (t2 - t1, t3 - t2 - (t2 - t1))
        return res, t_refine, tex

    prof = None
    for i in range(args.runs):
        if args.trace and i == args.runs - 1:
            from torch.profiler import ProfilerActivity, profile

            acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
            with profile(activities=acts) as prof:
                res, t_refine, tex = run()
        else:
            res, t_refine, tex = run()
    print(f"device {dev}, torch threads {torch.get_num_threads()}, run {args.runs} of {args.runs}, "
          f"overrides {args.set or 'none'}")
    keys = ["setup", "forward", "collision", "backward", "update", "remesh", "explicit_target", "dilation"]
    print("| part | steps | vertices | total s | " + " | ".join(keys) + " | atlas | bake |")
    print("|---|---|---|---|" + "---|" * (len(keys) + 2))
    for p, r in res.stages.items():
        print(f"| {p.key} | {len(r.history)} | {len(r.vertices)} | {r.seconds:.2f} | "
              + " | ".join(f"{r.timings.get(k, 0.0):.2f}" for k in keys)
              + f" | {tex[p][0]:.2f} | {tex[p][1]:.2f} |")
    print(f"refine {t_refine:.2f} s, texture (atlas + bake) {sum(a + b for a, b in tex.values()):.2f} s, "
          f"total {t_refine + sum(a + b for a, b in tex.values()):.2f} s")
    if prof is not None:
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))
        if dev.type == "cuda":
            print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=20))


if __name__ == "__main__":
    main()
