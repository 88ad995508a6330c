"""``stdgen canonicalize IMAGE -o apose.png``: a character picture in any pose -> the same character in
A-pose from the front (RGBA, framed as the dataset frames its A-pose front), plus a before/after picture."""

from __future__ import annotations

import argparse

#: PNG text key marking a file as this command's (so a rerun may replace it without --overwrite).
PNG_MARK = ("stdgen", "canonicalize")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "canonicalize",
        help="redraw a character picture in any pose in A-pose (pose canonicalisation)",
        description="Redraw the character in IMAGE (any pose, any framing; RGBA ideally, else non-white pixels "
        "count as the character) in A-pose seen from the front, with the canonicalisation model, and write OUTPUT "
        "(an RGBA PNG, alpha = the figure, the character's height 91%% of the image, centred: the framing the "
        "multi-view model expects) and OUTPUT_before_after.png beside it. With --pose auto (the default) a "
        "picture the A-pose check finds already in A-pose is only re-framed; --pose apose says so up front, "
        "--pose any always redraws.",
    )
    p.add_argument("image", metavar="IMAGE", help="input picture (PNG/JPEG/WebP)")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT", help="output PNG file (e.g. apose.png)")
    p.add_argument("--pose", choices=("auto", "apose", "any"), default="auto",
                   help="auto: skip when the A-pose check says so (default); apose: the input is in A-pose, "
                   "only re-frame it; any: always redraw")
    p.add_argument("--steps", type=int, default=None, help="sampler steps (default: the model's)")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (default: the model's)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--weights", metavar="DIR", default=None,
                   help="weights directory holding canon/ (default: $STDGEN_WEIGHTS, then the bundled weights)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true",
                   help="replace output files this command did not write (the input is never written over)")
    p.set_defaults(func=_canonicalize)


def companion_path(output):
    """``apose.png`` -> ``apose_before_after.png`` beside it."""
    from pathlib import Path

    out = Path(output)
    return out.with_name(f"{out.stem}_before_after.png")


def _written_here(path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.format == "PNG" and im.info.get(PNG_MARK[0]) == PNG_MARK[1]
    except (OSError, ValueError):
        return False


def _save(path, image) -> None:
    """Write a float ``(H, W, C)`` image in [0, 1] as PNG atomically, marked as this command's."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    from stdgen.utils.io import atomic_path, to_uint8

    info = PngInfo()
    info.add_text(*PNG_MARK)
    with atomic_path(path) as tmp:
        Image.fromarray(to_uint8(image)).save(tmp, format="PNG", pnginfo=info)


def _canonicalize(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from stdgen.commands.sampler_args import check_picture_and_sampler
    from stdgen.errors import StdgenError

    src = check_picture_and_sampler(args)
    if Path(args.output).suffix.lower() != ".png":
        raise StdgenError(f"-o {args.output}: the output is a PNG file; give a name ending in .png")
    from stdgen.io.images import cap_resolution, read_image
    from stdgen.io.outputs import claim_output_file
    from stdgen.utils.device import check_device

    check_device(args.device)
    out = claim_output_file(args.output, "canonicalize", overwrite=args.overwrite, inputs=[src],
                            recognise=_written_here)
    pair = claim_output_file(companion_path(out), "canonicalize", overwrite=args.overwrite, inputs=[src],
                             option="-o (its before/after picture)", recognise=_written_here)
    arr = cap_resolution(read_image(src, "auto"))  # one reader for every picture

    import numpy as np
    import torch

    from stdgen.models.canonical.model import Canonicalizer, frame_like_dataset, prepare_picture
    from stdgen.utils.device import resolve_device
    from stdgen.weights import find_weights

    device = resolve_device(args.device)
    model = Canonicalizer.from_pretrained(find_weights("canon", args.weights), device=device)
    res = model.config.resolution
    image = torch.from_numpy(arr.astype(np.float32) / 255.0).permute(2, 0, 1)
    t0 = time.perf_counter()
    skipped, score = args.pose == "apose", None
    if args.pose == "auto":
        skipped, score = model.is_a_pose(image)
    if skipped:
        rgba = image if image.shape[0] == 4 else prepare_picture(image, max(image.shape[1:]))
        result = frame_like_dataset(rgba, res)
    else:
        bar = on_step = None
        if not args.quiet:
            from tqdm import tqdm

            bar = tqdm(total=args.steps or model.config.default_steps, desc="canonicalize", unit="step")
            on_step = lambda i, n: bar.update(1)
        try:
            result = model.canonicalize(image, seed=args.seed, steps=args.steps, guidance=args.guidance,
                                        on_step=on_step)
        finally:
            if bar is not None:
                bar.close()
    seconds = time.perf_counter() - t0
    before = prepare_picture(image, res)[:3]
    after = result[:3] * result[3:4] + (1 - result[3:4])
    gap = torch.ones(3, res, max(2, res // 64))
    side_by_side = torch.cat([before, gap, after], dim=2)
    _save(out, result.permute(1, 2, 0).numpy())
    _save(pair, side_by_side.permute(1, 2, 0).numpy())
    how = "already in A-pose: re-framed only" if skipped else f"canonicalised in {seconds:.1f} s on {device}"
    check = "" if score is None else f", A-pose check {score:.2f}"
    print(f"wrote {out} and {pair.name} ({res} px, {how}{check})")
    return 0
