"""``stdgen refine``: multi-layer refinement and texturing of one character folder."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "refine",
        help="refine a character's coarse layer meshes against its views and texture them",
        description="Refine the coarse body, clothes and hair meshes of a character folder (the dataset "
        "format) against its six generation-view normal maps and masks - body first, then clothes with the "
        "body fixed, then hair with both fixed - texture them from its colour views, and write "
        "OUT_DIR/character.glb (nodes body, clothes, hair), OUT_DIR/before_after.png and OUT_DIR/report.json. "
        "Without --coarse, the coarse meshes are made by voxelising the folder's character.glb at 64^3 and "
        "extracting the three layers.",
    )
    p.add_argument("character_dir", metavar="CHARACTER_DIR", help="a character folder (meta.json, renders)")
    p.add_argument("-o", "--output", required=True, metavar="OUT_DIR",
                   help="output directory: new, or one refine wrote before (then replaced whole); never an input")
    p.add_argument("--overwrite", action="store_true", help="replace OUT_DIR even if it holds files refine did "
                   "not write (inputs are still refused)")
    p.add_argument("--coarse", metavar="MESH_DIR", default=None,
                   help="coarse meshes to refine: body.obj / clothes.obj / hair.obj (or .ply, .glb), or one .glb "
                   "with nodes body, clothes, hair")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.add_argument("--steps", type=int, default=None, help="optimisation steps per layer (default: the schedule's)")
    p.add_argument("--resolution", type=int, default=None,
                   help="render resolution of the optimisation (default: the schedule's)")
    p.add_argument("--fine-steps", type=int, default=None,
                   help="final steps per layer at the views' own resolution (default: the schedule's)")
    p.add_argument("--vertex-colors", action="store_true", help="vertex colours instead of a baked UV texture")
    p.add_argument("--texture-size", type=int, default=None, help="texture atlas side per part (default 1024)")
    p.add_argument("--metric-points", type=int, default=None,
                   help="surface points per mesh for the report's Chamfer / F-score (default 300000)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_refine)


def _refine(args: argparse.Namespace) -> int:
    from pathlib import Path

    from stdgen.errors import StdgenError
    from stdgen.refine.pipeline import PipelineConfig, refine_folder
    from stdgen.structures.semantics import PARTS
    from stdgen.utils.device import resolve_device

    folder = Path(args.character_dir)
    if not folder.is_dir():
        raise StdgenError(f"{folder}: no such directory")
    if args.steps is not None and not 1 <= args.steps <= 10000:
        raise StdgenError(f"--steps must be between 1 and 10000, got {args.steps}")
    if args.resolution is not None and not 32 <= args.resolution <= 4096:
        raise StdgenError(f"--resolution must be between 32 and 4096, got {args.resolution}")
    if args.fine_steps is not None and not 0 <= args.fine_steps <= 10000:
        raise StdgenError(f"--fine-steps must be between 0 and 10000, got {args.fine_steps}")
    from stdgen.io.outputs import claim_output_dir
    from stdgen.utils.device import check_device

    check_device(args.device)
    claim_output_dir(args.output, "refine", overwrite=args.overwrite, inputs=[folder, args.coarse],
                     recognise=lambda f: {p.name for p in f.iterdir()} <= {"before_after.png", "character.glb",
                                                                              "report.json"})
    device = resolve_device(args.device)
    cfg = PipelineConfig()
    for part in PARTS:
        stage = cfg.refine.stage(part)
        if args.steps is not None:
            stage.steps = args.steps
        if args.resolution is not None:
            stage.resolution = args.resolution
        if args.fine_steps is not None:
            stage.fine_steps = args.fine_steps
    if args.vertex_colors:
        cfg.texture.mode = "vertex"
    if args.texture_size is not None:
        if not 16 <= args.texture_size <= 8192:
            raise StdgenError(f"--texture-size must be between 16 and 8192, got {args.texture_size}")
        cfg.texture.size = args.texture_size
    if args.metric_points is not None:
        if not 1000 <= args.metric_points <= 10_000_000:
            raise StdgenError(f"--metric-points must be between 1000 and 10000000, got {args.metric_points}")
        cfg.metric_points = args.metric_points
    report = refine_folder(folder, args.output, coarse_dir=args.coarse, device=device, config=cfg,
                           progress=not args.quiet)
    s = report["seconds"]
    print(f"wrote {args.output} in {s['total']:.1f} s (body {s['body']:.1f}, clothes {s['clothes']:.1f}, "
          f"hair {s['hair']:.1f}, texture {s['texture']:.1f})")
    for key, entry in report["parts"].items():
        if entry.get("chamfer_before") is not None:
            print(f"  {key}: Chamfer {entry['chamfer_before']:.5f} -> {entry['chamfer_after']:.5f}, "
                  f"F@0.01 {entry['fscore_before']:.3f} -> {entry['fscore_after']:.3f}, "
                  f"penetrating vertices {entry['penetrating_vertices']}")
    return 0
