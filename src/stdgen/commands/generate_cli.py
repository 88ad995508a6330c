"""``stdgen generate IMAGE [IMAGE ...] -o OUT_DIR``: pictures in, layered textured 3D characters out.

Each picture (a folder of pictures works as a batch) becomes ``OUT_DIR/<picture stem>/`` holding
``character.glb`` (nodes body, clothes, hair), ``body.glb``, ``clothes.glb``, ``hair.glb`` (or OBJ with
``--format obj``), ``canonical.png``, ``views.png``, ``turntable.gif``, ``preview.png`` and
``report.json`` (:func:`stdgen.pipeline.save_output`). Everything that can be checked is checked
before any model is loaded: every picture is read (missing, unreadable, non-image, tiny, too large,
fully transparent), every output folder claimed; each folder appears whole or not at all.
"""

from __future__ import annotations

import argparse
from pathlib import Path

#: Picture file types a folder given as input is searched for.
PICTURE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
#: The smallest picture side accepted (a figure needs some pixels to be seen).
MIN_SIDE = 16


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="one picture in, a layered (body / clothes / hair) textured 3D character out",
        description="Generate a layered 3D character (body, clothes, hair; textured; A-pose) from each picture: "
        "background removal and framing, pose canonicalisation (skipped for an A-pose picture), six generated "
        "views, S-LRM reconstruction, multi-layer refinement and texturing. IMAGE is a picture (PNG, JPEG, WebP; "
        "RGBA ideally, else the background is removed) or a folder of pictures (a batch). Each result goes to "
        "OUT_DIR/<picture stem>/: character.glb (nodes body, clothes, hair), body.glb, clothes.glb, hair.glb, "
        "canonical.png, views.png, turntable.gif, preview.png, report.json.",
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="picture file, or a folder of pictures")
    p.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="output folder (one subfolder per picture)")
    p.add_argument("--pose", choices=("auto", "apose"), default="auto",
                   help="auto: an A-pose check decides whether to redraw the picture in A-pose (default); apose: the "
                   "picture is in A-pose already")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0): same picture, seed and settings, "
                   "same files")
    p.add_argument("--steps", type=int, default=None,
                   help="sampler steps of both diffusion models (default: canonicaliser 2, multi-view 5)")
    p.add_argument("--no-refine", action="store_true",
                   help="skip refinement and texturing (faster; vertex colours from the S-LRM)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--mask", metavar="FILE", default=None,
                   help="the figure's mask (white = figure, same size as the picture; one picture only) instead of "
                   "the picture's alpha or the background removal")
    p.add_argument("--format", choices=("glb", "obj"), default="glb", help="3D file format (default glb)")
    p.add_argument("--weights", metavar="DIR", default=None,
                   help="weights folder holding segment/, canon/, mvdiff/, slrm/ (default: $STDGEN_WEIGHTS, then "
                   "the bundled weights)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace output folders this command did not make (inputs are never written over)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_generate)


def collect_images(inputs: list[str]) -> list[Path]:
    """The pictures named by ``inputs`` (files, and the pictures inside folders, sorted), in order;
    a missing path, an empty folder or two pictures with one stem are one-line errors."""
    from stdgen.errors import StdgenError

    found: list[Path] = []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            pics = sorted(p for p in path.iterdir()
                          if p.is_file() and p.suffix.lower() in PICTURE_SUFFIXES and not p.name.startswith("."))
            if not pics:
                raise StdgenError(f"{path}: a folder with no pictures in it ({', '.join(PICTURE_SUFFIXES)})")
            found += pics
        elif path.is_file():
            found.append(path)
        else:
            raise StdgenError(f"{path}: no such file or folder")
    stems: dict[str, Path] = {}
    for p in found:
        if p.stem in stems:
            raise StdgenError(f"{p}: two pictures named {p.stem!r} ({stems[p.stem]} and {p}); each result goes to "
                              "OUT_DIR/<stem>/, so rename one")
        stems[p.stem] = p
    return found


def check_picture(path: Path) -> None:
    """Read ``path`` once (cheap next to generation): unreadable, non-image, too large (decompression
    bombs: refused from the header), tiny, or fully transparent pictures are one-line errors."""
    import numpy as np

    from stdgen.errors import StdgenError
    from stdgen.io.images import read_image

    arr = read_image(path, "auto")
    h, w = arr.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise StdgenError(f"{path}: {w}x{h} pixels is too small; give a picture at least {MIN_SIDE} pixels on each "
                          "side (a few hundred is best)")
    if arr.shape[2] == 4 and int(arr[..., 3].max()) == 0:
        raise StdgenError(f"{path}: fully transparent (every alpha is 0): there is no figure in it")
    if arr.shape[2] == 3 and int(np.ptp(arr.reshape(-1, 3), axis=0).max()) == 0:
        raise StdgenError(f"{path}: every pixel has one colour: there is no figure in it")


class StageBars:
    """``progress(stage, fraction)`` -> one tqdm bar per stage (in percent), closed as the next opens."""

    def __init__(self, label: str, quiet: bool = False):
        self.label, self.quiet = label, quiet
        self.bar = None
        self.stage = None

    def __call__(self, stage: str, fraction: float) -> None:
        if self.quiet:
            return
        from tqdm import tqdm

        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = tqdm(total=100, desc=f"{self.label}: {stage}", unit="%", leave=False,
                            bar_format="{desc:<32} {percentage:3.0f}%|{bar}| {elapsed}")
        n = int(round(100 * min(1.0, max(0.0, fraction))))
        if n > self.bar.n:
            self.bar.update(n - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> StageBars:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _generate(args: argparse.Namespace) -> int:
    from stdgen.errors import StdgenError
    from stdgen.utils.device import check_device

    check_device(args.device)
    if args.steps is not None and not 1 <= args.steps <= 1000:
        raise StdgenError(f"--steps must be between 1 and 1000, got {args.steps}")
    if args.seed < 0:
        raise StdgenError(f"--seed must be 0 or more, got {args.seed}")
    if args.weights is not None and not Path(args.weights).is_dir():
        raise StdgenError(f"--weights {args.weights}: no such folder (it holds segment/, canon/, mvdiff/, slrm/)")
    images = collect_images(args.images)
    if args.mask is not None:
        if len(images) != 1:
            raise StdgenError(f"--mask goes with one picture, got {len(images)}")
        if not Path(args.mask).is_file():
            raise StdgenError(f"--mask {args.mask}: no such file")
    for path in images:
        check_picture(path)
    if args.mask is not None:
        from stdgen.io.images import read_image

        m = read_image(args.mask, "auto", what=f"--mask {args.mask}")
        pic = read_image(images[0], "auto")
        if m.shape[:2] != pic.shape[:2]:
            raise StdgenError(f"--mask {args.mask}: {m.shape[1]}x{m.shape[0]} pixels, but the picture is "
                              f"{pic.shape[1]}x{pic.shape[0]}; give a mask of the picture's size")

    from stdgen.io.outputs import claim_output_dir

    out_root = Path(args.output)
    if out_root.exists() and not out_root.is_dir():
        raise StdgenError(f"-o {out_root}: exists and is a file, not a folder; give a folder")
    inputs = list(images) + ([Path(args.mask)] if args.mask else [])
    targets = [claim_output_dir(out_root / p.stem, "generate", overwrite=args.overwrite, inputs=inputs,
                                option=f"-o {out_root} (its subfolder {p.stem}/)") for p in images]

    from stdgen.pipeline import StdGENPipeline, save_output
    from stdgen.utils.device import resolve_device

    device = resolve_device(args.device)
    pipe = StdGENPipeline.from_pretrained(args.weights, device=device)
    for k, (path, target) in enumerate(zip(images, targets)):
        label = path.stem if len(images) == 1 else f"[{k + 1}/{len(images)}] {path.stem}"
        with StageBars(label, quiet=args.quiet) as bars:
            out = pipe(path, pose=args.pose, seed=args.seed, steps=args.steps, refine=not args.no_refine,
                       mask=args.mask, progress=bars)
        try:
            save_output(out, target, fmt=args.format, overwrite=args.overwrite)
        except MemoryError:
            raise StdgenError(f"out of memory writing {target}; try --no-refine") from None
        total = sum(out.seconds.values())
        iou = out.checks.get("front_silhouette_iou")
        print(f"wrote {target}/ ({'A-pose input' if out.pose == 'apose' else 'posed input, canonicalised'}; "
              f"{total:.0f} s on {device}; front silhouette IoU {iou:.2f})")
    return 0
