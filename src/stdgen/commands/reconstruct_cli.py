"""``stdgen reconstruct``: six views in, body / clothes / hair meshes out (the S-LRM, one forward pass)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reconstruct",
        help="six views -> layered character (S-LRM)",
        description="Reconstruct body, clothes and hair from six views with the S-LRM (no optimisation). INPUT is "
        "a dataset character folder, a dataset folder (every character in it, each to OUT_DIR/<name>/) or a "
        "folder of six pictures named by azimuth (-90, -45, 0, 45, 90, 180). OUT_DIR is a prediction folder "
        "that `stdgen eval` reads: character.glb, body.glb, clothes.glb, hair.glb, preview.png, report.json.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="character folder, dataset folder or six-view folder")
    p.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="prediction folder")
    p.add_argument("--refine", action="store_true",
                   help="refine and texture the parts against the folder's views and normal maps (stdgen refine's "
                   "optimisation; dataset character folders only)")
    p.add_argument("--grid", type=int, default=128, help="extraction grid resolution (default 128)")
    p.add_argument("--weights", metavar="DIR", default=None, help="weights folder holding slrm/ (default: bundled)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an output folder this command did not make (inputs are never written over)")
    p.set_defaults(func=_reconstruct)


def _reconstruct(args: argparse.Namespace) -> int:
    from functools import partial

    from tqdm import tqdm

    from stdgen.commands.reconstruct import run
    from stdgen.errors import StdgenError
    from stdgen.utils.device import check_device, resolve_device
    from stdgen.utils.progress import LazyBar

    check_device(args.device)
    if not 16 <= args.grid <= 512:
        raise StdgenError(f"--grid must be between 16 and 512, got {args.grid}")
    inputs = [Path(i) for i in args.inputs]
    for i in inputs:
        if not i.is_dir():
            raise StdgenError(f"{i}: not a folder")
    device = resolve_device(args.device)
    with LazyBar(partial(tqdm, desc="reconstruct", unit="character", leave=False)) as bar:
        reports = run(inputs, Path(args.output), weights_dir=args.weights, device=device, grid=args.grid,
                      overwrite=args.overwrite, refine=args.refine, progress=bar)
    for r in reports:
        s = r["seconds"]
        print(f"{r['input']}: faces {r['faces']}; forward {s['forward']:.2f} s, field {s['field']:.2f} s, "
              f"extract {s['extract']:.2f} s")
    print(f"wrote {args.output}")
    return 0
