"""A sheet of what the picture transfer does to posed pictures: per picture, its head and shoulders in
five columns — the framed posed picture, the canonicaliser's redrawing, the redrawing with the
picture's pixels pulled on per pixel (``picture_transfer_head=0``), with the head moved in one piece
as well (the pipeline's default), and the true A-pose front when a folder of them is given.

    python benchmarks/transfer_sheet.py POSED_DIR [--truth APOSE_DIR] [--weights DIR] [--ids A,B,...]
        [--crop 0.42] -o docs/img/head-transfer.png

Pictures are matched by file stem; the canonicaliser runs as the pipeline runs it (seed 0, the
pipeline's steps).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def _over_white(rgba: np.ndarray) -> np.ndarray:
    a = rgba.astype(np.float32) / 255
    return (np.clip(a[..., :3] * a[..., 3:] + 1 - a[..., 3:], 0, 1) * 255 + 0.5).astype(np.uint8)


def columns(pipe, posed: Path, truth: Path | None) -> list[np.ndarray]:
    """The five (or four) ``(S, S, 3)`` uint8 pictures of one posed picture, over white."""
    import torch

    from stdgen.pipeline.detail import TransferConfig, transfer_picture
    from stdgen.pipeline.pipeline import _chw, _to_uint8

    cfg = pipe.config
    framed = pipe.preprocess(str(posed))
    with torch.no_grad():
        out = pipe.canonicalizer.canonicalize(_chw(framed), seed=0, steps=cfg.canonicalize_steps or None)
    redrawn = _to_uint8(out.permute(1, 2, 0).numpy())
    side = framed.shape[0]
    up = np.asarray(Image.fromarray(redrawn).resize((side, side), Image.BICUBIC))
    flat, _ = transfer_picture(framed, redrawn, TransferConfig(tolerance=cfg.picture_transfer_tolerance,
                                                                head_fraction=0.0))
    head, _ = transfer_picture(framed, redrawn, TransferConfig(tolerance=cfg.picture_transfer_tolerance,
                                                                head_fraction=cfg.picture_transfer_head or 0.19))
    cols = [framed, up, flat, head]
    if truth is not None:
        cols.append(pipe.preprocess(str(truth)))
    return [_over_white(c) for c in cols]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("posed", type=Path)
    ap.add_argument("--truth", type=Path, default=None, help="a folder of the true A-pose fronts (same stems)")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--ids", default=None, help="comma-separated stems (default: all)")
    ap.add_argument("--crop", type=float, default=0.42, help="the top share of each picture shown")
    ap.add_argument("--tile", type=int, default=220, help="tile width in pixels")
    ap.add_argument("-o", "--output", type=Path, required=True)
    args = ap.parse_args(argv)

    from stdgen.pipeline import StdGENPipeline

    pipe = StdGENPipeline.from_pretrained(args.weights)
    stems = args.ids.split(",") if args.ids else sorted(p.stem for p in args.posed.glob("*.png"))
    titles = ["posed picture", "redrawing", "+ pixels", "+ head", "true A-pose"]
    rows = []
    for stem in stems:
        truth = args.truth / f"{stem}.png" if args.truth else None
        cols = columns(pipe, args.posed / f"{stem}.png", truth)
        side = cols[0].shape[0]
        x0, x1, y1 = round(side * 0.25), round(side * 0.75), round(side * args.crop)
        tiles = [Image.fromarray(c[:y1, x0:x1]).resize((args.tile, round(args.tile * y1 / (x1 - x0))),
                                                       Image.LANCZOS) for c in cols]
        row = Image.new("RGB", (args.tile * len(tiles), tiles[0].height), "white")
        for i, t in enumerate(tiles):
            row.paste(t, (i * args.tile, 0))
        rows.append(row)
        print(stem, flush=True)
    head = 18
    sheet = Image.new("RGB", (rows[0].width, head + sum(r.height for r in rows)), "white")
    draw = ImageDraw.Draw(sheet)
    for i in range(rows[0].width // args.tile):
        draw.text((i * args.tile + 6, 3), titles[i], fill=(0, 0, 0))
    y = head
    for r in rows:
        sheet.paste(r, (0, y))
        y += r.height
    args.output.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
