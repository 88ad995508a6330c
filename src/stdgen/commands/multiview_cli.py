"""``stdgen multiview IMAGE -o OUT_DIR``: six views (RGB + alpha, normals) from one A-pose picture."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "multiview",
        help="generate six views (colour and normals) of a character from one A-pose picture",
        description="Generate the six orthographic views (azimuths -90, -45, 0, 45, 90, 180 at elevation 0) of "
        "the character in IMAGE (an RGBA A-pose front picture; without alpha, non-white pixels count as the "
        "character) with the multi-view diffusion model, and write OUT_DIR/rgb.png (RGBA: unlit colour, the six "
        "views side by side), OUT_DIR/normal.png (world normals as (n + 1) / 2, 0 off the silhouette) and "
        "OUT_DIR/views.png (a 2 x 6 grid to look at). OUT_DIR is replaced whole.",
    )
    p.add_argument("image", metavar="IMAGE", help="input picture (PNG/JPEG/WebP), ideally RGBA")
    p.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="output directory")
    p.add_argument("--steps", type=int, default=None, help="sampler steps (default: the model's)")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (default: the model's)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--resolution", type=int, default=None, help="output view side (default: the model's)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--weights", metavar="DIR", default=None,
                   help="weights directory holding mvdiff/ (default: $STDGEN_WEIGHTS, then the bundled weights)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an output folder this command did not make (the input is never written over)")
    p.set_defaults(func=_multiview)


def _multiview(args: argparse.Namespace) -> int:
    import time

    from stdgen.commands.sampler_args import check_picture_and_sampler
    from stdgen.errors import StdgenError

    src = check_picture_and_sampler(args)
    if args.resolution is not None and not 16 <= args.resolution <= 2048:
        raise StdgenError(f"--resolution must be between 16 and 2048, got {args.resolution}")
    from PIL import Image

    from stdgen.io.images import cap_resolution, read_image
    from stdgen.io.outputs import claim_output_dir
    from stdgen.utils.device import check_device

    check_device(args.device)
    claim_output_dir(args.output, "multiview", overwrite=args.overwrite, inputs=[src])
    image = Image.fromarray(cap_resolution(read_image(src, "auto")))  # one reader for every picture

    from stdgen.models.mvdiffusion.model import MultiViewDiffusion
    from stdgen.utils.device import resolve_device
    from stdgen.weights import find_weights

    device = resolve_device(args.device)
    model = MultiViewDiffusion.from_pretrained(find_weights("mvdiff", args.weights), device=device)
    res = args.resolution or model.config.resolution
    step = model.config.patch_size * 2 ** (len(model.config.channels) - 1)
    if res % step:
        raise StdgenError(f"--resolution must be a multiple of {step} for this model, got {res}")
    bar = None
    on_step = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=args.steps or model.config.default_steps, desc="multiview", unit="step")
        on_step = lambda i, n: bar.update(1)
    t0 = time.perf_counter()
    try:
        rgba, normal = model.generate(image, seed=args.seed, steps=args.steps, guidance=args.guidance,
                                      resolution=res, on_step=on_step)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    write_views(args.output, rgba, normal)
    print(f"wrote {args.output} ({rgba.shape[-1]} px views, {seconds:.1f} s on {device})")
    return 0


def write_views(out_dir, rgba, normal) -> None:
    """Write ``rgb.png`` (``(6, 4, R, R)`` RGBA side by side), ``normal.png`` (``(6, 3, R, R)``
    side by side) and ``views.png`` (colour over white above normals) into ``out_dir``, atomically
    (the folder appears whole or not at all)."""
    import numpy as np

    from stdgen.io.outputs import write_output_dir
    from stdgen.utils.io import image_grid, save_png

    row = lambda x: np.concatenate(list(x.permute(0, 2, 3, 1).float().numpy()), axis=1)
    rgb_row, normal_row = row(rgba), row(normal)
    over = rgb_row[..., :3] * rgb_row[..., 3:] + (1 - rgb_row[..., 3:])
    views = [list(np.split(over, 6, axis=1)), list(np.split(normal_row, 6, axis=1))]
    with write_output_dir(out_dir, "multiview") as tmp:
        save_png(tmp / "rgb.png", rgb_row)
        save_png(tmp / "normal.png", normal_row)
        save_png(tmp / "views.png", image_grid(views))
