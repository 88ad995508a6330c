"""Commands of the render stage: ``stdgen render-demo``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "render-demo",
        help="render a test figure made by code in the six generation views",
        description="Render a capsule figure made by code in the six generation views and write "
        "DIR/views.png: one row each of colour, normal, depth and mask.",
    )
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory")
    p.add_argument("--resolution", type=int, default=256, help="image size in pixels (default 256)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--backend", default="auto", help="visibility backend: auto, torch, numba, triton")
    p.add_argument("--overwrite", action="store_true", help="replace DIR even if it holds files this command "
                   "did not make")
    p.set_defaults(func=_render_demo)


def _render_demo(args: argparse.Namespace) -> int:
    from stdgen.errors import StdgenError
    from stdgen.io.outputs import claim_output_dir, write_output_dir
    from stdgen.utils.device import check_device

    if not 16 <= args.resolution <= 4096:
        raise StdgenError(f"--resolution must be between 16 and 4096, got {args.resolution}")
    check_device(args.device)
    out = claim_output_dir(args.output, "render-demo", overwrite=args.overwrite,
                           recognise=lambda f: {p.name for p in f.iterdir()} == {"views.png"})
    from stdgen.commands.render_demo import render_demo

    try:
        with write_output_dir(out, "render-demo") as tmp:
            path = render_demo(tmp, resolution=args.resolution, device=args.device, backend=args.backend)
    except ValueError as exc:
        raise StdgenError(str(exc)) from None
    print(f"wrote {out / path.name}")
    return 0
