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
    p.set_defaults(func=_render_demo)


def _render_demo(args: argparse.Namespace) -> int:
    from stdgen.commands.render_demo import render_demo
    from stdgen.errors import StdgenError

    if not 16 <= args.resolution <= 4096:
        raise StdgenError(f"--resolution must be between 16 and 4096, got {args.resolution}")
    try:
        path = render_demo(args.output, resolution=args.resolution, device=args.device, backend=args.backend)
    except ValueError as exc:
        raise StdgenError(str(exc)) from None
    print(f"wrote {path}")
    return 0
