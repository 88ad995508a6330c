"""Commands of the geometry stage: ``stdgen layers-demo``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "layers-demo",
        help="voxelise a procedural character and extract its body / clothes / hair layers",
        description="Voxelise procedural character SEED into one SDF grid with class probabilities, "
        "extract the layers with the semantic-equivalent SDF and FlexiCubes, and write DIR/body.glb, "
        "clothes.glb, hair.glb, character.glb, layers.png and section.png. Prints each part's Chamfer "
        "distance and F-score@0.01 against the true part (in units of the character's height).",
    )
    p.add_argument("--seed", type=int, default=0, help="procedural character seed (default 0)")
    p.add_argument("--res", type=int, nargs="+", default=[128], metavar="N",
                   help="grid vertices per axis: one number, or three (X Y Z; Y is up), default 128")
    p.add_argument("--method", choices=("flexicubes", "marching"), default="flexicubes",
                   help="surface extractor (default flexicubes)")
    p.add_argument("--face-budget", type=int, default=None, help="decimate each part to this many faces")
    p.add_argument("--image-size", type=int, default=384, help="pixels per panel of layers.png (default 384)")
    p.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="output directory: new, or one this command wrote before (then replaced)")
    p.add_argument("--overwrite", action="store_true", help="replace DIR even if it holds files this command "
                   "did not make")
    p.set_defaults(func=_layers_demo)


def _layers_demo(args: argparse.Namespace) -> int:
    from stdgen.errors import StdgenError

    if len(args.res) not in (1, 3):
        raise StdgenError(f"--res takes one or three numbers, got {len(args.res)}")
    if any(not 8 <= r <= 512 for r in args.res):
        raise StdgenError(f"--res values must lie between 8 and 512, got {' '.join(map(str, args.res))}")
    if args.face_budget is not None and args.face_budget < 100:
        raise StdgenError(f"--face-budget must be at least 100, got {args.face_budget}")
    if not 32 <= args.image_size <= 2048:
        raise StdgenError(f"--image-size must lie between 32 and 2048, got {args.image_size}")
    if args.seed < 0:
        raise StdgenError(f"--seed must be non-negative, got {args.seed}")
    from stdgen.io.outputs import claim_output_dir

    demo_files = {"body.glb", "clothes.glb", "hair.glb", "character.glb", "layers.png", "section.png"}
    claim_output_dir(args.output, "layers-demo", overwrite=args.overwrite,
                     recognise=lambda f: {p.name for p in f.iterdir()} <= demo_files)
    from stdgen.commands.layers_demo import layers_demo, write_demo
    from stdgen.data.procedural import make_character
    from stdgen.geometry.layers import LayerConfig

    res = args.res[0] if len(args.res) == 1 else tuple(args.res)
    character = make_character(args.seed)  # voxelised in its own pose (A-pose for procedural ones)
    result = layers_demo(character, resolution=res, config=LayerConfig(method=args.method,
                                                                        face_budget=args.face_budget))
    paths = write_demo(result, character, args.output, image_size=args.image_size)
    shape = "x".join(str(s) for s in result.field.grid.shape)
    print(f"grid {shape}, voxelise {result.timings['voxelize']:.1f} s, extract {result.timings['extract']:.1f} s")
    print(f"{'part':8s} {'faces':>8s} {'chamfer':>9s} {'F@0.01':>7s}")
    for part, m in result.metrics.items():
        faces = result.meshes.parts[part].num_faces
        print(f"{part.key:8s} {faces:8d} {m['chamfer']:9.5f} {m['fscore@0.01']:7.4f}")
    print(f"wrote {len(paths)} files to {args.output}")
    return 0
